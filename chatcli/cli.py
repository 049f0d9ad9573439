"""The command line: argument parsing only; the work happens in run, stopcmd, historycmd, configcmd.

No network library is imported at module level: `--help`, `--version`, `history`,
`stop`, `config` and shell completion stay fast. `--version` is answered before Typer is
even imported. Completion callbacks live in chatcli.complete (local files only).
"""

import os
import sys
from typing import Annotated

from chatcli import __version__

# Click rewraps paragraphs; a paragraph that starts with \b is printed as written.
EPILOG_ASK = """\b
Examples:
  chatcli ask "What is the capital of France?"
  git diff | chatcli ask "Write a commit message for this diff"
  chatcli ask - < question.txt
  chatcli ask --jsonl "Hi" | jq -r 'select(.type=="delta").text'
  chatcli ask -p openai --base-url http://127.0.0.1:8080/v1 -m smollm2 "Hello"
  chatcli ask --profile work --render "Explain this regex: ^a+$"

\b
Provider settings come from options, then the environment (OPENAI_BASE_URL,
OPENAI_API_KEY, DIFY_API_KEY, COZE_API_TOKEN, COZE_BOT_ID, CHATGPT_ACCESS_TOKEN,
CHATCLI_PROVIDER, CHATCLI_PROFILE), then config.toml (see `chatcli config --init`).
"""

EPILOG_CONTINUE = """\b
Examples:
  chatcli continue "And of Germany?"
  chatcli continue --cid 3f2a "Tell me more"
  chatcli continue --parent MSG_ID "Answer that differently"
  printf '%s\\n' "one" "two" | while read -r q; do chatcli continue "$q"; done
"""

EPILOG_STOP = """\b
Examples:
  chatcli stop              # the newest answer in flight
  chatcli stop --cid 3f2a   # the answer of that conversation
"""

EPILOG_HISTORY = """\b
Examples:
  chatcli history                       # newest first
  chatcli history -n 5 -p openai        # the five latest openai conversations
  chatcli history --search "regex"      # title or message text contains "regex"
  chatcli history 3f2a                  # one conversation as a dialogue
  chatcli history 3f2a --rename "Regex help"
  chatcli history --delete 3f2a
  chatcli history --jsonl | jq -r '.conversation_id + "  " + (.title // "")'
"""

EPILOG_CONFIG = """\b
Examples:
  chatcli config                   # the settings `ask` would use, and their sources
  chatcli config --profile work    # the same for one profile
  chatcli config -p dify
  chatcli config --init            # write a starter config.toml (0600)
"""

EPILOG_PATHS = """\b
Examples:
  chatcli paths
  ls "$(chatcli paths --state)"
"""


def _app():  # type: ignore[no-untyped-def]
    import typer

    from chatcli import _typerfast, complete

    _typerfast.install()

    complete.patch_typer()
    _plain_argument_help()

    app = typer.Typer(
        name="chatcli",
        help="One command-line client for ChatGPT web, Dify, Coze, OpenAI-compatible servers and a local model.",
        epilog="\b\nStart with:  chatcli ask \"Hello\"      More:  chatcli COMMAND --help",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    def version_cb(value: bool) -> None:
        if value:
            print(f"chatcli {__version__}")
            raise typer.Exit()

    @app.callback()
    def root(
        version: Annotated[
            bool, typer.Option("--version", callback=version_cb, is_eager=True, help="Show the version and exit.")
        ] = False,
    ) -> None:
        """One command-line client for chat services."""

    def opt(*names: str, help: str, metavar: str | None = None, complete_with: object = None, **kw: object) -> object:
        """An option that takes a value (no default shown: None means "not given")."""
        return typer.Option(*names, help=help, metavar=metavar, autocompletion=complete_with,  # type: ignore[arg-type]
                            show_default=False, **kw)

    def flag(name: str, help: str) -> object:
        return typer.Option(name, help=help)

    S = str | None
    Prompt = Annotated[list[str] | None, typer.Argument(metavar="PROMPT", show_default=False,
                                                        help="The prompt (words are joined); `-` reads stdin.")]
    Provider = Annotated[S, opt("--provider", "-p", metavar="NAME", help="chatgpt, dify, coze, openai or local.",
                                complete_with=complete.providers)]
    BaseUrl = Annotated[S, opt("--base-url", metavar="URL", help="The provider's base URL.")]
    Model = Annotated[S, opt("--model", "-m", metavar="NAME", help="Model name (or a .gguf path for local).")]
    Profile = Annotated[S, opt("--profile", metavar="NAME", help="A profile from config.toml.",
                               complete_with=complete.profiles)]
    BotId = Annotated[S, opt("--bot-id", metavar="ID", help="Coze bot id.")]
    System = Annotated[S, opt("--system", "-s", metavar="TEXT", help="System prompt, where the provider takes one.")]
    Jsonl = Annotated[bool, flag("--jsonl", "Print events as JSON lines.")]
    Raw = Annotated[bool, flag("--raw", "Print the provider's wire events (debugging).")]
    Render = Annotated[bool, flag("--render", "Show the answer as Markdown (only when stdout is a terminal).")]
    Timeout = Annotated[float | None, opt("--timeout", metavar="SECONDS",
                                          help="Longest silence tolerated, in seconds.")]
    Retries = Annotated[int | None, opt("--retries", metavar="N",
                                        help="Retries before the first answer byte (default 2).")]
    ApiVersion = Annotated[S, opt("--api-version", metavar="VERSION", help="coze: v3 (default) or v2.")]
    Temperature = Annotated[float | None, opt("--temperature", "-t", metavar="FLOAT", help="Sampling temperature.")]
    MaxTokens = Annotated[int | None, opt("--max-tokens", metavar="N", help="Longest answer, in tokens.")]
    Opt = Annotated[list[str] | None, opt("--option", "-o", metavar="KEY=VALUE",
                                          help="A provider setting, e.g. -o n_ctx=4096 (repeatable).")]
    Cid = Annotated[S, opt("--cid", metavar="ID", help="Conversation id or unique prefix (default: the last used).",
                           complete_with=complete.conversations)]
    Parent = Annotated[S, opt("--parent", metavar="MSG_ID", help="Answer from this earlier message (a branch).")]
    StopCid = Annotated[S, opt("--cid", metavar="ID", help="Conversation id or prefix (default: the newest in flight).",
                               complete_with=complete.inflight)]
    HistoryId = Annotated[S, typer.Argument(metavar="ID", show_default=False, autocompletion=complete.conversations,
                                            help="Show this conversation (id or unique prefix).")]
    HistJsonl = Annotated[bool, flag("--jsonl", "One JSON object per conversation (or per message, with ID).")]
    Remote = Annotated[bool, flag("--remote", "Fetch the messages from the provider "
                                              "(with --delete/--rename: change it there too).")]
    Limit = Annotated[int | None, opt("--limit", "-n", min=0, metavar="N", help="Show at most N conversations.")]
    OnlyProvider = Annotated[S, opt("--provider", "-p", metavar="NAME", help="Only this provider's conversations.",
                                    complete_with=complete.providers)]
    Search = Annotated[S, opt("--search", metavar="TEXT",
                              help="Only conversations whose title or messages contain TEXT (any case).")]
    Delete = Annotated[bool, flag("--delete", "Delete conversation ID (locally; with --remote also on the provider).")]
    Rename = Annotated[S, opt("--rename", metavar="TITLE", help="Give conversation ID a new title.")]

    @app.command(epilog=EPILOG_ASK)
    def ask(words: Prompt = None, provider: Provider = None, base_url: BaseUrl = None, model: Model = None,
            profile: Profile = None, bot_id: BotId = None, system: System = None, jsonl: Jsonl = False,
            raw: Raw = False, render: Render = False, timeout: Timeout = None, retries: Retries = None,
            api_version: ApiVersion = None, temperature: Temperature = None, max_tokens: MaxTokens = None,
            option: Opt = None) -> None:
        """Start a new conversation and stream the answer.

        Only the answer goes to stdout; the conversation id, usage, notes and errors go to stderr.
        """
        raise typer.Exit(run_ask(words, False, None, None, provider, base_url, model, profile, bot_id, system, jsonl,
                                 raw, timeout, retries, api_version, temperature, max_tokens, option, render))

    @app.command("continue", epilog=EPILOG_CONTINUE)
    def continue_(words: Prompt = None, cid: Cid = None, parent: Parent = None,
                  provider: Provider = None, base_url: BaseUrl = None, model: Model = None, profile: Profile = None,
                  bot_id: BotId = None, system: System = None, jsonl: Jsonl = False, raw: Raw = False,
                  render: Render = False, timeout: Timeout = None, retries: Retries = None,
                  api_version: ApiVersion = None, temperature: Temperature = None, max_tokens: MaxTokens = None,
                  option: Opt = None) -> None:
        """Send the next message in a conversation (default: the last used one).

        The conversation's provider, profile, base URL, model and bot are reused.
        """
        raise typer.Exit(run_ask(words, True, cid, parent, provider, base_url, model, profile, bot_id, system, jsonl,
                                 raw, timeout, retries, api_version, temperature, max_tokens, option, render))

    @app.command(epilog=EPILOG_STOP)
    def stop(cid: StopCid = None) -> None:
        """Stop an answer that is being generated, from any shell.

        Exit 0 when an answer was stopped, 2 when nothing matching was in flight.
        """
        from chatcli.exits import guard
        from chatcli.stopcmd import stop as do_stop

        raise typer.Exit(guard(lambda: do_stop(cid)))

    @app.command(epilog=EPILOG_HISTORY)
    def history(cid: HistoryId = None, jsonl: HistJsonl = False, remote: Remote = False, limit: Limit = None,
                provider: OnlyProvider = None, search: Search = None, delete: Delete = False,
                rename: Rename = None) -> None:
        """List conversations, most recently used first; with an ID, show it as a dialogue."""
        from chatcli import historycmd
        from chatcli.errors import UsageError
        from chatcli.exits import guard

        def go() -> int:
            if delete or rename is not None:
                if not cid:
                    raise UsageError(("--delete" if delete else "--rename") + " needs a conversation ID")
                if delete and rename is not None:
                    raise UsageError("--delete and --rename exclude each other")
                if delete:
                    return historycmd.delete_conversation(cid, remote=remote)
                return historycmd.rename_conversation(cid, rename or "", remote=remote)
            if cid:
                return historycmd.show_conversation(cid, jsonl=jsonl, remote=remote)
            if remote:
                return historycmd.list_remote(jsonl=jsonl, provider=provider, limit=limit)
            return historycmd.list_conversations(jsonl=jsonl, limit=limit, provider=provider, search=search)

        raise typer.Exit(guard(go))

    @app.command("config", epilog=EPILOG_CONFIG)
    def config_(
        profile: Profile = None, provider: Provider = None,
        init: Annotated[bool, flag("--init", "Write a starter config.toml with example profiles.")] = False,
        force: Annotated[bool, flag("--force", "With --init: replace an existing config.toml.")] = False,
        jsonl: Annotated[bool, flag("--jsonl", "One JSON object per setting.")] = False,
    ) -> None:
        """Show the settings `ask` would use (secrets masked) and where each came from."""
        from chatcli import configcmd
        from chatcli.exits import guard

        if init:
            raise typer.Exit(guard(lambda: configcmd.init(force=force)))
        raise typer.Exit(guard(lambda: configcmd.show(profile=profile, provider=provider, jsonl=jsonl)))

    @app.command(epilog=EPILOG_PATHS)
    def paths(
        state: Annotated[bool, flag("--state", "Print only the state directory.")] = False,
        config: Annotated[bool, flag("--config", "Print only the config file.")] = False,
    ) -> None:
        """Show where chatcli keeps its state and looks for its config file."""
        from chatcli import configcmd
        from chatcli.exits import guard

        raise typer.Exit(guard(lambda: configcmd.paths(only="state" if state else "config" if config else None)))

    return app


def _plain_argument_help() -> None:
    """Typer prints `PROMPT <list[str]>` for arguments; the metavar and the help say enough."""
    try:
        import typer.core

        typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    except (ImportError, AttributeError):
        pass


def _option_value(value: str) -> object:
    """-o values: numbers and true/false become numbers and booleans; the rest stays text."""
    low = value.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def run_ask(words: list[str] | None, continue_: bool, cid: str | None, parent: str | None, provider: str | None,
            base_url: str | None, model: str | None, profile: str | None, bot_id: str | None,
            system: str | None, jsonl: bool, raw: bool, timeout: float | None, retries: int | None,
            api_version: str | None, temperature: float | None, max_tokens: int | None,
            opts: list[str] | None, render: bool = False) -> int:
    """`ask` and `continue` once their arguments are parsed (by Typer, or by chatcli.fastargs)."""
    from chatcli.config import Options
    from chatcli.errors import UsageError
    from chatcli.prompt import build_prompt
    from chatcli.exits import guard
    from chatcli.run import TurnRequest, run_turn

    mode = "raw" if raw else "jsonl" if jsonl else "text"
    for bad, msg in ((jsonl and raw, "--jsonl and --raw exclude each other"),
                     (render and mode != "text", "--render goes with text output, not --jsonl or --raw")):
        if bad:
            from chatcli.output import make_writer as _mw

            return guard(lambda: (_ for _ in ()).throw(UsageError(msg)), _mw(mode if mode != "raw" else "text"))
    prompt: list[str] = []

    extra: dict[str, object] = {"api_version": api_version, "temperature": temperature,
                                "max_tokens": max_tokens}

    def read() -> int:
        for item in opts or ():
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--option wants KEY=VALUE, not {item!r}")
            extra[key.strip()] = _option_value(value)
        prompt.append(build_prompt(list(words or [])))
        return 0

    from chatcli.output import make_writer

    writer = make_writer(mode)
    code = guard(read, writer)
    if code:
        return code
    options = Options(provider=provider, profile=profile, base_url=base_url, model=model, bot_id=bot_id,
                      system=system, timeout=timeout, retries=retries,
                      extra=extra)
    req = TurnRequest(prompt=prompt[0], mode=mode, options=options, continue_=continue_, cid=cid, parent=parent)
    return run_turn(req, make_writer(mode, render=render))


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:
        print(f"chatcli {__version__}")
        return
    if argv[:1] in (["ask"], ["continue"]) and "_CHATCLI_COMPLETE" not in os.environ:
        # The common case without Typer (~40 ms of start-up): a plain `ask`/`continue`
        # command line; anything unusual (help, unknown options, odd forms) goes to Typer.
        from chatcli import fastargs

        parsed = fastargs.parse(argv)
        if parsed is not None:
            try:
                sys.exit(run_ask(**parsed))
            except KeyboardInterrupt:
                sys.exit(130)
    app = _app()
    try:
        app(prog_name="chatcli")
    except KeyboardInterrupt:
        sys.exit(130)
