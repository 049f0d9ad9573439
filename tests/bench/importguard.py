"""The modules the fast commands must not import, and the hook that lists what they did.

Shared by tests/test_imports.py (the guard; it explains why each module is forbidden)
and tests/bench/run.py (which reports the same check next to its start-up figures).
"""

from __future__ import annotations

FORBIDDEN = frozenset({
    "httpx", "httpcore", "httpx_sse", "h11", "h2", "anyio", "sniffio", "certifi", "idna",
    "ssl", "_ssl", "socket", "websocket", "websockets", "llama_cpp", "rich", "pydantic", "pydantic_core",
})
FORBIDDEN_CHATCLI = frozenset({"chatcli.providers._http", "chatcli.providers.openai", "chatcli.providers.dify",
                               "chatcli.providers.coze", "chatcli.providers.chatgpt", "chatcli.providers.local"})

# A sitecustomize.py for PYTHONPATH: at exit, writes sorted(sys.modules) to $CHATCLI_MODULES_OUT.
SITECUSTOMIZE = """\
import atexit, os, sys
_out = os.environ.get("CHATCLI_MODULES_OUT")
if _out:
    def _dump():
        with open(_out, "w") as f:
            f.write("\\n".join(sorted(sys.modules)))
    atexit.register(_dump)
"""


def forbidden(mods: set[str]) -> list[str]:
    """The forbidden modules among `mods` (a package counts with all its submodules)."""
    return sorted(m for m in mods if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN_CHATCLI)
