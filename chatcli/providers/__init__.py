"""Provider registry: name -> implementing class, imported only when used.

Importing a provider module pulls in httpx (and websocket-client or llama_cpp), so
nothing here is imported by `--help`, `--version`, `history` or `stop` unless needed.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from chatcli.errors import ConfigError

if TYPE_CHECKING:
    from chatcli.providers.base import Provider

# name -> "module:Class"
PROVIDERS: dict[str, str] = {
    "chatgpt": "chatcli.providers.chatgpt:ChatGPT",
    "dify": "chatcli.providers.dify:Dify",
    "coze": "chatcli.providers.coze:Coze",
    "openai": "chatcli.providers.openai:OpenAICompatible",
    "local": "chatcli.providers.local:Local",
}

NAMES = tuple(PROVIDERS)

# httpx's __init__ imports its optional command-line tool, httpx._main, which imports rich
# (installed with typer) before it finds click missing: ~20 ms of every `ask` spent on a
# module chatcli never uses. A None entry makes that import fail at once, and httpx then
# defines its stub `main` (httpx/__init__.py: `except ImportError`). Provider modules are
# submodules of this package, so this runs before any of them imports httpx.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def load(name: str) -> type[Provider]:
    """The provider class registered under `name` (ConfigError when unknown)."""
    try:
        target = PROVIDERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown provider {name!r}",
            hint="choose one of: " + ", ".join(NAMES),
        ) from None
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    cls: type[Provider] = getattr(module, attr)
    return cls
