"""The command line: argument parsing only; the work happens in run, stopcmd, historycmd.

No network library is imported at module level: `--help`, `--version`, `history` and
`stop` stay fast. `--version` is answered before Typer is even imported.
"""

import sys
from typing import Annotated

from chatcli import __version__

EPILOG_ASK = """Examples:

  chatcli ask "What is the capital of France?"

  git diff | chatcli ask "Write a commit message for this diff"

  chatcli ask --jsonl "Hi" | jq -r 'select(.type=="delta").text'

  chatcli ask -p dify --base-url http://127.0.0.1/v1 "Hello"
"""

EPILOG_CONTINUE = """Examples:

  chatcli continue "And of Germany?"

  chatcli continue --cid 3f2a "Tell me more"

  chatcli continue --parent MSG_ID "Answer that differently"
"""


def _app():  # type: ignore[no-untyped-def]
    import typer

    from chatcli import _typerfast

    _typerfast.install()  # Typer without pydantic for plain options: see _typerfast.py

    app = typer.Typer(
        name="chatcli",
        help="One command-line client for ChatGPT web, Dify, Coze, OpenAI-compatible servers and a local model.",
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

    Prompt = Annotated[list[str] | None, typer.Argument(help="The prompt; `-` reads stdin.", show_default=False)]
    Provider = Annotated[str | None, typer.Option("--provider", "-p", help="chatgpt, dify, coze, openai or local.",
                                                  envvar=None, show_default=False)]
    BaseUrl = Annotated[str | None, typer.Option("--base-url", help="The provider's base URL.", show_default=False)]
    Model = Annotated[str | None, typer.Option("--model", "-m", help="Model name (or a .gguf path for local).",
                                               show_default=False)]
    Profile = Annotated[str | None, typer.Option("--profile", help="A profile from config.toml.", show_default=False)]
    BotId = Annotated[str | None, typer.Option("--bot-id", help="Coze bot id.", show_default=False)]
    System = Annotated[str | None, typer.Option("--system", "-s", help="System prompt, where the provider takes one.",
                                                show_default=False)]
    Jsonl = Annotated[bool, typer.Option("--jsonl", help="Print events as JSON lines.")]
    Raw = Annotated[bool, typer.Option("--raw", help="Print the provider's wire events (debugging).")]
    Timeout = Annotated[float | None, typer.Option("--timeout", help="Longest silence tolerated, in seconds.",
                                                   show_default=False)]
    Retries = Annotated[int | None, typer.Option("--retries", help="Retries before the first answer byte (default 2).",
                                                 show_default=False)]
    ApiVersion = Annotated[str | None, typer.Option("--api-version", help="coze: v3 (default) or v2.",
                                                    show_default=False)]
    Temperature = Annotated[float | None, typer.Option("--temperature", "-t", help="Sampling temperature.",
                                                       show_default=False)]
    MaxTokens = Annotated[int | None, typer.Option("--max-tokens", help="Longest answer, in tokens.",
                                                   show_default=False)]
    Opt = Annotated[list[str] | None, typer.Option("--option", "-o", metavar="KEY=VALUE",
                                                   help="A provider setting, e.g. -o n_ctx=4096 (repeatable).",
                                                   show_default=False)]

    def _turn(words: list[str] | None, continue_: bool, cid: str | None, parent: str | None, provider: str | None,
              base_url: str | None, model: str | None, profile: str | None, bot_id: str | None,
              system: str | None, jsonl: bool, raw: bool, timeout: float | None, retries: int | None,
              api_version: str | None, temperature: float | None, max_tokens: int | None,
              opts: list[str] | None) -> None:
        from chatcli.config import Options
        from chatcli.errors import UsageError
        from chatcli.prompt import build_prompt
        from chatcli.run import TurnRequest, guard, run_turn

        mode = "raw" if raw else "jsonl" if jsonl else "text"
        if jsonl and raw:
            code = guard(lambda: (_ for _ in ()).throw(UsageError("--jsonl and --raw exclude each other")))
            raise typer.Exit(code)
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
            if mode == "jsonl":
                pass  # the error event was written by guard's writer
            raise typer.Exit(code)
        options = Options(provider=provider, profile=profile, base_url=base_url, model=model, bot_id=bot_id,
                          system=system, timeout=timeout, retries=retries,
                          extra=extra)
        raise typer.Exit(run_turn(TurnRequest(prompt=prompt[0], mode=mode, options=options, continue_=continue_,
                                              cid=cid, parent=parent)))

    @app.command(epilog=EPILOG_ASK)
    def ask(words: Prompt = None, provider: Provider = None, base_url: BaseUrl = None, model: Model = None,
            profile: Profile = None, bot_id: BotId = None, system: System = None, jsonl: Jsonl = False,
            raw: Raw = False, timeout: Timeout = None, retries: Retries = None,
            api_version: ApiVersion = None, temperature: Temperature = None, max_tokens: MaxTokens = None,
            option: Opt = None) -> None:
        """Start a new conversation and stream the answer."""
        _turn(words, False, None, None, provider, base_url, model, profile, bot_id, system, jsonl, raw, timeout,
              retries, api_version, temperature, max_tokens, option)

    @app.command("continue", epilog=EPILOG_CONTINUE)
    def continue_(words: Prompt = None,
                  cid: Annotated[str | None, typer.Option("--cid", help="Conversation id or unique prefix (default: the last used).", show_default=False)] = None,
                  parent: Annotated[str | None, typer.Option("--parent", help="Answer from this earlier message (a branch).", show_default=False)] = None,
                  provider: Provider = None, base_url: BaseUrl = None, model: Model = None, profile: Profile = None,
                  bot_id: BotId = None, system: System = None, jsonl: Jsonl = False, raw: Raw = False,
                  timeout: Timeout = None, retries: Retries = None, api_version: ApiVersion = None,
                  temperature: Temperature = None, max_tokens: MaxTokens = None, option: Opt = None) -> None:
        """Send the next message in a conversation (default: the last used one)."""
        _turn(words, True, cid, parent, provider, base_url, model, profile, bot_id, system, jsonl, raw, timeout,
              retries, api_version, temperature, max_tokens, option)

    @app.command(epilog="Examples:\n\n  chatcli stop\n\n  chatcli stop --cid 3f2a")
    def stop(cid: Annotated[str | None, typer.Option("--cid", help="Conversation id or prefix (default: the newest in flight).", show_default=False)] = None) -> None:
        """Stop an answer that is being generated, from any shell."""
        from chatcli.run import guard
        from chatcli.stopcmd import stop as do_stop

        raise typer.Exit(guard(lambda: do_stop(cid)))

    @app.command(epilog="Examples:\n\n  chatcli history\n\n  chatcli history 3f2a\n\n  chatcli history --jsonl | jq -r .title")
    def history(
        cid: Annotated[str | None, typer.Argument(help="Show this conversation (id or unique prefix).", show_default=False)] = None,
        jsonl: Jsonl = False,
        remote: Annotated[bool, typer.Option("--remote", help="Fetch the messages from the provider.")] = False,
        limit: Annotated[int | None, typer.Option("--limit", "-n", help="Show at most N conversations.", show_default=False)] = None,
        provider: Annotated[str | None, typer.Option("--provider", "-p", help="Only this provider's conversations.", show_default=False)] = None,
        search: Annotated[str | None, typer.Option("--search", help="Only conversations whose title contains TEXT.", show_default=False)] = None,
    ) -> None:
        """List conversations, most recently used first; with an id, show its messages."""
        from chatcli import historycmd
        from chatcli.run import guard

        if cid:
            code = guard(lambda: historycmd.show_conversation(cid, jsonl=jsonl, remote=remote))
        else:
            code = guard(lambda: historycmd.list_conversations(jsonl=jsonl, limit=limit, provider=provider,
                                                               search=search))
        raise typer.Exit(code)

    return app


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


def main() -> None:
    argv = sys.argv[1:]
    if argv == ["--version"]:
        print(f"chatcli {__version__}")
        return
    app = _app()
    try:
        app(prog_name="chatcli")
    except KeyboardInterrupt:
        sys.exit(130)
