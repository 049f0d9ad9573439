"""Start-up guard (not timing-based): which modules the fast commands import.

`--help`, `--version`, `history`, `stop` with nothing in flight and a TAB completion must
stay cheap, so they must not import what only `ask`/`continue` need. Each command runs
in a real subprocess with a `sitecustomize` on PYTHONPATH whose atexit hook writes
`sorted(sys.modules)`; the test fails on any forbidden module and names it.

Forbidden, and why:
- httpx, httpcore, httpx_sse, h11, h2, anyio, sniffio, certifi, idna: the HTTP stack
  (~60-100 ms to import); only a provider talks to the network.
- ssl, _ssl: loading OpenSSL and (through httpx) the CA bundle is tens of ms; none of these
  commands opens a connection. (hashlib's _hashlib also links libcrypto, but it is cheap
  and store.py uses it for file names, so it is allowed.)
- socket: stdlib and cheap, but nothing here needs it; its presence means a network path
  was taken, which is the regression this guards against. (`stop` signals a pid; it never
  talks to the owning process over a socket.)
- websocket, websockets (ChatGPT's WebSocket mode), llama_cpp (the local model, hundreds
  of ms and a shared library).
- rich: Typer renders help with rich when rich_markup_mode asks for it; chatcli sets it
  to None and styles its own output, so nothing here renders with rich.
- pydantic, pydantic_core: Typer 0.29 coerces options through pydantic TypeAdapters;
  chatcli/_typerfast.py handles its plain options without them (~120 ms). Avoidable,
  so forbidden.
- chatcli.providers.* modules (and _http): a provider module means the network stack.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, clean_env

from bench.importguard import SITECUSTOMIZE, forbidden  # noqa: E402

COMPLETE = {"_CHATCLI_COMPLETE": "complete_bash", "COMP_WORDS": "chatcli hi", "COMP_CWORD": "1"}


def _store_one(home: Path) -> None:
    from chatcli import store as st

    s = st.Store(home)
    conv = st.new_conversation("conv-imports-1", {"provider": "openai", "model": "m"})
    conv["title"] = "hello"
    conv["messages"] = [{"message_id": "u1", "parent_id": None, "role": "user", "text": "hi",
                         "created_at": conv["created_at"], "status": "complete"}]
    conv["current"] = "u1"
    s.save(conv, last=True)


def imported(tmp_path: Path, home: Path, args: list[str], extra: dict[str, str] | None = None) -> tuple[
        subprocess.CompletedProcess[bytes], set[str]]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    out = tmp_path / "modules.txt"
    out.unlink(missing_ok=True)
    env = clean_env(home, **(extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), env.get("PYTHONPATH", "")])
    env["CHATCLI_MODULES_OUT"] = str(out)
    proc = subprocess.run([sys.executable, "-m", "chatcli", *args], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert out.exists(), f"the atexit hook did not run: {proc!r}"
    return proc, set(out.read_text().split())


def _bad(mods: set[str]) -> list[str]:
    return forbidden(mods)


CASES = {
    "--help": (["--help"], None, 0),
    "--version": (["--version"], None, 0),
    "ask --help": (["ask", "--help"], None, 0),
    "history": (["history"], None, 0),
    "history --jsonl": (["history", "--jsonl"], None, 0),
    "history ID": (["history", "conv-imports-1"], None, 0),
    "stop": (["stop"], None, 2),
    "completion": ([], COMPLETE, 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_commands_import_no_network_stack(case: str, tmp_path: Path, home: Path) -> None:
    args, extra, code = CASES[case]
    _store_one(home)
    proc, mods = imported(tmp_path, home, args, extra)
    assert proc.returncode == code, proc
    assert "chatcli" in mods and "chatcli.cli" in mods  # the hook saw chatcli run
    assert _bad(mods) == [], f"`chatcli {' '.join(args)}` imported {_bad(mods)}"
    if case == "completion":
        assert b"history" in proc.stdout.split(), proc.stdout
    if case == "--version":
        assert "typer" not in mods, "--version should be answered before Typer is imported"


def test_the_guard_sees_a_network_import(tmp_path: Path, home: Path, server: object) -> None:
    """The same hook on `ask` does see httpx: the guard can fail."""
    url = getattr(server, "url") + "/v1"
    _proc, mods = imported(tmp_path, home, ["ask", "-p", "openai", "--base-url", url, "-m", "m", "hi"])
    assert {"httpx", "chatcli.providers.openai"} <= set(mods)
    assert "rich" not in mods, "httpx._main (which imports rich) should be kept out: chatcli/providers/__init__.py"
    assert "pydantic" not in mods


def test_plain_option_values_and_errors_are_typers(tmp_path: Path, home: Path) -> None:
    """_typerfast converts plain values itself; an invalid one still gets Typer's own message."""
    _store_one(home)
    proc, mods = imported(tmp_path, home, ["history", "--limit", "1", "--jsonl"])
    assert proc.returncode == 0 and proc.stdout.count(b"\n") == 1, proc
    assert "pydantic" not in mods
    bad, mods = imported(tmp_path, home, ["history", "--limit", "many"])
    assert bad.returncode == 2
    assert b"Invalid value for '--limit'" in bad.stderr, bad.stderr
    assert "pydantic" in mods  # the fallback to Typer's adapter, for the error message


def test_typerfast_agrees_with_typer_on_every_option() -> None:
    """For each parameter of each command: the fast coercion gives Typer's value or error."""
    import math

    import typer.main
    from typer import _coercion

    from chatcli import _typerfast
    from chatcli.cli import _app

    _typerfast.install()
    cmd = typer.main.get_command(_app())
    values: list[object] = ["", "x", " 3", "3", "-3", "+3", "3.0", "1e3", ".5", "5.", "1_000", "abc", "inf", "nan",
                            "٣", "0x10", "00", "3 ", True, False, ("a", "b"), ["a"], ()]
    checked = 0
    for sub in [cmd, *cmd.commands.values()]:  # type: ignore[attr-defined]
        for param in sub.params:
            fast = param.get_runtime_param()
            full = _coercion.build_runtime_param(param.type_descriptor)
            for value in values:
                def outcome(rp: object) -> tuple[object, ...]:
                    try:
                        got = rp._coerce_value(value, param=param, ctx=None)  # type: ignore[attr-defined]
                    except Exception as exc:  # noqa: BLE001
                        return ("error", type(exc).__name__, str(exc))
                    if isinstance(got, float) and math.isnan(got):
                        return ("ok", float, "nan")
                    return ("ok", type(got), got)

                assert outcome(fast) == outcome(full), (sub.name, param.name, value)
                checked += 1
    assert checked > 300
