"""Shell completion callbacks (Typer `autocompletion=`): provider names, profiles, ids.

Called on every TAB press, so they read only local files (the state index, config.toml)
and import nothing beyond the standard library, orjson and chatcli.config: never httpx,
never a provider. Any failure yields no candidates rather than an error in the shell.
"""

from __future__ import annotations

from typing import Any

import orjson

from chatcli.config import PROVIDER_NAMES, config_path, state_dir

PROVIDER_HELP = {
    "chatgpt": "ChatGPT web (backend-api)",
    "dify": "Dify app API",
    "coze": "Coze bot (v3 chat API)",
    "openai": "any OpenAI-compatible server",
    "local": "in-process llama.cpp model",
}


def providers(incomplete: str) -> list[tuple[str, str]]:
    return [(p, PROVIDER_HELP.get(p, "")) for p in PROVIDER_NAMES if p.startswith(incomplete)]


def profiles(incomplete: str) -> list[tuple[str, str]]:
    import tomllib

    try:
        data = tomllib.loads(config_path().read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return []
    table = data.get("profiles")
    if not isinstance(table, dict):
        return []
    out = []
    for name, prof in sorted(table.items()):
        if name.startswith(incomplete):
            prov = prof.get("provider") if isinstance(prof, dict) else None
            model = prof.get("model") if isinstance(prof, dict) else None
            out.append((name, " ".join(str(x) for x in (prov, model) if x)))
    return out


def _index() -> list[dict[str, Any]]:
    """The index entries, most recently used first (read-only: never rebuilt here)."""
    try:
        data = orjson.loads((state_dir() / "index.json").read_bytes())
        convs = data["conversations"]
        items = [c for c in convs.values() if isinstance(c, dict) and isinstance(c.get("conversation_id"), str)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    items.sort(key=lambda c: c.get("updated_at") or "", reverse=True)
    return items


def _describe(c: dict[str, Any]) -> str:
    title = " ".join(str(c.get("title") or "(untitled)").split())
    if len(title) > 50:
        title = title[:49] + "…"
    return f"{title} ({c.get('provider') or '?'})"


def conversations(incomplete: str) -> list[tuple[str, str]]:
    return [(c["conversation_id"], _describe(c)) for c in _index() if c["conversation_id"].startswith(incomplete)]


def inflight(incomplete: str) -> list[tuple[str, str]]:
    """Conversations with an answer in flight (for `stop --cid`), else every conversation."""
    try:
        names = [n for n in (state_dir() / "inflight").iterdir() if n.suffix == ".json"]
        cids = {orjson.loads(n.read_bytes()).get("conversation_id") for n in names}
    except (OSError, ValueError, AttributeError):
        cids = set()
    cids.discard(None)
    convs = _index()
    running = [c for c in convs if c["conversation_id"] in cids]
    return [(c["conversation_id"], _describe(c)) for c in (running or convs)
            if c["conversation_id"].startswith(incomplete)]


# Typer's zsh script only calls `compdef`, which works when the file is sourced but not
# when it is autoloaded from $fpath as `_chatcli` (the first TAB would only register the
# function). This one does both.
ZSH_SOURCE = """\
#compdef %(prog_name)s

%(complete_func)s() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" %(autocomplete_var)s=complete_zsh %(prog_name)s)
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  # autoloaded from $fpath (completions/_chatcli): register the function for the next
  # TAB presses, and complete this one now
  compdef %(complete_func)s %(prog_name)s
  %(complete_func)s "$@"
else
  # sourced, e.g. eval "$(_CHATCLI_COMPLETE=source_zsh chatcli)" after compinit
  compdef %(complete_func)s %(prog_name)s
fi
"""


def patch_typer() -> None:
    """Plain-text descriptions (Typer would import rich to strip markup we never use) and the zsh script."""
    try:
        import typer._completion_classes as cc

        import typer._completion_shared as shared

        cc._sanitize_help_text = lambda text: text
        cc.ZshComplete.source_template = ZSH_SOURCE
        # --show-completion / --install-completion use this table.
        shared._completion_scripts["zsh"] = ZSH_SOURCE
    except (ImportError, AttributeError, TypeError):
        pass
