"""chatcli.fastargs reads plain `ask`/`continue` command lines exactly as Typer does, or declines.

The fast path skips importing Typer for the common case; these tests keep it honest:
its option table is the Typer commands' own, every command line it accepts gives the same
run_ask arguments as Typer, and what it declines (help, odd forms) still works via Typer.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcli import cli as cli_mod
from chatcli import fastargs
from conftest import clean_env

KINDS = {str: "str", int: "int", float: "float"}


def _typer_command(name: str) -> Any:
    import typer.main

    return typer.main.get_command(cli_mod._app()).commands[name]  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["ask", "continue"])
def test_option_table_is_the_typer_commands(command: str) -> None:
    expected: dict[str, tuple[str, str]] = {}
    for p in _typer_command(command).params:
        if p.param_type_name != "option":
            continue
        if p.is_flag:
            kind = "flag"
        elif p.multiple:
            kind = "multi"
        else:
            kind = KINDS[p.type_descriptor.annotation]
        dest = "opts" if p.name == "option" else p.name
        for name in p.opts + p.secondary_opts:
            expected[name] = (dest, kind)
    assert fastargs.options_for(command) == expected


def _via_typer(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | str:
    """run_ask's arguments as Typer passes them (or 'error' when Typer refuses the line)."""
    seen: list[dict[str, Any]] = []
    signature = inspect.signature(cli_mod.run_ask)

    def fake(*args: Any, **kwargs: Any) -> int:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        seen.append(dict(bound.arguments))
        return 0

    monkeypatch.setattr(cli_mod, "run_ask", fake)
    import typer.main

    command = typer.main.get_command(cli_mod._app())
    try:
        command.main(args=argv, prog_name="chatcli", standalone_mode=False)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - click's usage errors
        return "error"
    return seen[0] if seen else "error"


CASES = [
    ["ask", "hello", "world"],
    ["ask", "-p", "dify", "--jsonl", "hi"],
    ["ask", "--provider=openai", "--base-url", "http://127.0.0.1:1/v1", "-m", "x", "q"],
    ["ask", "q", "-t", "0", "--max-tokens", "12", "--timeout", "1.5", "--retries", "0"],
    ["ask", "-o", "a=1", "--option", "b=two", "-o", "c=", "words", "-"],
    ["ask", "-"],
    ["ask"],
    ["continue", "--cid", "3f2a", "--parent", "m1", "more"],
    ["continue", "--raw", "--render", "--jsonl", "x"],
    ["ask", "--system", "-", "x"],
    ["ask", "--system", "", "--profile", "p", "--bot-id", "7", "--api-version", "v2", "x"],
    ["ask", "-p", "a", "-p", "b", "x"],
    ["ask", "--temperature", "1e-3", "--timeout", ".5", "x"],
]
DECLINED = [
    ["ask", "--help"], ["ask", "-h"], ["ask", "--", "-x"], ["ask", "-t0", "x"], ["ask", "--prov", "dify"],
    ["ask", "--jsonl=1"], ["ask", "-p"], ["ask", "-p", "--jsonl"], ["ask", "--timeout", "soon", "x"],
    ["ask", "--max-tokens", "1.5"], ["ask", "-5", "degrees"], ["ask", "--cid", "x", "hi"], ["stop"],
    ["ask", "--timeout", " 3"], ["ask", "--retries", "1_000"],
]


@pytest.mark.parametrize("argv", CASES, ids=" ".join)
def test_accepted_lines_match_typer(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fast = fastargs.parse(argv)
    assert fast is not None, argv
    assert fast == _via_typer(argv, monkeypatch)


@pytest.mark.parametrize("argv", DECLINED, ids=" ".join)
def test_unusual_lines_go_to_typer(argv: list[str]) -> None:
    assert fastargs.parse(argv) is None


_word = st.text(alphabet=st.sampled_from("ab -=.1é"), max_size=5)
_opt = st.sampled_from(sorted(fastargs.options_for("continue"))) | st.sampled_from(["-", "--x", "-h", "--"])
_line = st.tuples(st.sampled_from(["ask", "continue"]), st.lists(_opt | _word, max_size=8))


@settings(max_examples=200, deadline=None)
@given(_line)
def test_any_line_is_typers_or_declined(line: tuple[str, list[str]]) -> None:
    argv = [line[0], *line[1]]
    fast = fastargs.parse(argv)
    if fast is None:
        return
    with pytest.MonkeyPatch.context() as mp:
        assert fast == _via_typer(argv, mp), argv


def test_a_plain_ask_does_not_import_typer(tmp_path: Any) -> None:
    """The point of the fast path: `ask` reaches the provider without Typer (here: a usage error)."""
    env = clean_env(tmp_path / "home")
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatcli", "ask", "--provider", "nope", "hi"],
                         env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and "unknown provider 'nope'" in out.stderr
    mods = {row.split("|")[-1].strip() for row in out.stderr.splitlines() if row.startswith("import time:")}
    assert "chatcli.fastargs" in mods and "typer" not in mods
    # ... and a line it declines still gets Typer's help.
    out = subprocess.run([sys.executable, "-m", "chatcli", "ask", "--help"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "Usage: chatcli ask" in out.stdout
