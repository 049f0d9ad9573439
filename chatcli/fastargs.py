"""A Typer-free reading of plain `ask` / `continue` command lines (start-up speed).

Importing Typer and building the app costs ~40 ms, a third of the time to the first answer
byte. Most command lines are plain: `chatcli ask -p dify --jsonl "question"`. `parse()`
reads exactly those and returns the keyword arguments of `cli.run_ask`; for anything it is
not sure of -- help, an unknown or abbreviated option, `--`, a joined short option (`-t0`),
a value that looks like an option, a number Typer might read differently -- it returns
None and Typer handles the command line as before, errors and all. tests/test_fastargs.py
checks that the option table matches the Typer commands and that every command line it
accepts gives what Typer gives.
"""

from __future__ import annotations

import re
from typing import Any

_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")

# option name -> (run_ask keyword, kind); kinds: str, int, float, flag, multi (repeatable str)
COMMON: dict[str, tuple[str, str]] = {
    "--provider": ("provider", "str"), "-p": ("provider", "str"),
    "--base-url": ("base_url", "str"),
    "--model": ("model", "str"), "-m": ("model", "str"),
    "--profile": ("profile", "str"),
    "--bot-id": ("bot_id", "str"),
    "--system": ("system", "str"), "-s": ("system", "str"),
    "--jsonl": ("jsonl", "flag"),
    "--raw": ("raw", "flag"),
    "--render": ("render", "flag"),
    "--timeout": ("timeout", "float"),
    "--retries": ("retries", "int"),
    "--api-version": ("api_version", "str"),
    "--temperature": ("temperature", "float"), "-t": ("temperature", "float"),
    "--max-tokens": ("max_tokens", "int"),
    "--option": ("opts", "multi"), "-o": ("opts", "multi"),
}
CONTINUE_ONLY: dict[str, tuple[str, str]] = {
    "--cid": ("cid", "str"),
    "--parent": ("parent", "str"),
}


def options_for(command: str) -> dict[str, tuple[str, str]]:
    return {**COMMON, **CONTINUE_ONLY} if command == "continue" else dict(COMMON)


def _value(kind: str, text: str) -> Any:
    """The converted value, or raise ValueError when Typer should judge it."""
    if kind == "int":
        if not _INT.match(text):
            raise ValueError(text)
        return int(text)
    if kind == "float":
        if not _FLOAT.match(text):
            raise ValueError(text)
        return float(text)
    return text


def parse(argv: list[str]) -> dict[str, Any] | None:
    """run_ask's keyword arguments for `argv` (["ask", ...]), or None to let Typer decide."""
    if not argv or argv[0] not in ("ask", "continue"):
        return None
    command = argv[0]
    table = options_for(command)
    out: dict[str, Any] = {
        "words": None, "continue_": command == "continue", "cid": None, "parent": None,
        "provider": None, "base_url": None, "model": None, "profile": None, "bot_id": None,
        "system": None, "jsonl": False, "raw": False, "timeout": None, "retries": None,
        "api_version": None, "temperature": None, "max_tokens": None, "opts": None, "render": False,
    }
    words: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "-" or not arg.startswith("-"):
            words.append(arg)
            continue
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        spec = table.get(name)
        if spec is None:
            return None  # help, --, unknown, abbreviated or joined options: Typer's call
        dest, kind = spec
        if kind == "flag":
            if eq:
                return None
            out[dest] = True
            continue
        if eq:
            text = inline
        else:
            if i >= len(args):
                return None  # a missing value: Typer says so
            text = args[i]
            i += 1
            if text.startswith("-") and text != "-":
                return None
        try:
            value = _value(kind, text)
        except ValueError:
            return None
        if kind == "multi":
            out[dest] = [*(out[dest] or []), value]
        else:
            out[dest] = value
    out["words"] = words or None
    return out
