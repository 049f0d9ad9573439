"""A pytest plugin that fails the session if a fake token shows up in any chatcli output.

Naming convention for every fake secret in the test suite (tell your tests to follow it):
the literal `SECRET` right after the token's usual prefix, e.g.

    sk-SECRET-openai-123   app-SECRET-dify-123   pat_SECRET_coze_123   cztei_SECRET...
    eyJSECRET-header.eyJSECRET-payload.SECRET-sig   (JWT-like ChatGPT access tokens)
    tok-SECRET-...          (anything else: cookies, sentinel tokens, signed URLs)

The guard sees every Result of the `cli` fixture (`cli(...)` and `cli.spawn(...)`'s
communicate()), every run recorded by tests/reliability/harness.py, and after each test
every file in that test's CHATCLI_HOME except the user's own config.toml. Findings make
the test session fail at the end (exit status 1) with where each token was seen.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

TOKEN = re.compile(r"(?:sk-|app-|pat_|cztei_|eyJ|tok-)SECRET[A-Za-z0-9._-]*")
_findings: list[str] = []
_stats = {"outputs": 0, "files": 0}
USER_FILES = {"config.toml"}


def scan(where: str, text: str | bytes | None) -> list[str]:
    if not text:
        return []
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = sorted(set(TOKEN.findall(text)))
    for tok in found:
        _findings.append(f"{where}: {tok[:40]}")
    return found


def record(where: str, *texts: str | bytes | None) -> None:
    _stats["outputs"] += 1
    for text in texts:
        scan(where, text)


def scan_tree(root: Path, label: str) -> None:
    if not root.is_dir():
        return
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name in USER_FILES or name.endswith((".sh", ".toml")):
                continue
            path = Path(dirpath) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            _stats["files"] += 1
            scan(f"{label}/{path.relative_to(root)}", data)


def _wrap_cli() -> None:
    try:
        import conftest
    except ImportError:  # used outside chatcli's tests/
        return

    cls = conftest.CLI
    if getattr(cls, "_secrets_guarded", False):
        return
    call, spawn = cls.__call__, cls.spawn

    def guarded_call(self: Any, *args: str, **kw: Any) -> Any:
        result = call(self, *args, **kw)
        record(f"cli {' '.join(args[:3])}", result.stdout, result.stderr)
        return result

    def guarded_spawn(self: Any, *args: str, **kw: Any) -> Any:
        proc = spawn(self, *args, **kw)
        communicate = proc.communicate

        def guarded_communicate(*a: Any, **k: Any) -> Any:
            out = communicate(*a, **k)
            record(f"cli.spawn {' '.join(args[:3])}", *(x for x in out if isinstance(x, (bytes, str))))
            return out

        proc.communicate = guarded_communicate  # type: ignore[method-assign]
        return proc

    cls.__call__, cls.spawn = guarded_call, guarded_spawn  # type: ignore[method-assign]
    cls._secrets_guarded = True


def pytest_configure(config: pytest.Config) -> None:
    _wrap_cli()


@pytest.fixture(autouse=True)
def _secrets_scan_home(request: pytest.FixtureRequest) -> Any:
    home = request.getfixturevalue("home") if "home" in request.fixturenames else None
    yield
    if home is not None:
        scan_tree(Path(home), f"{request.node.nodeid} state")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"secrets guard: scanned {_stats['outputs']} chatcli outputs and {_stats['files']} state files; "
        f"{len(_findings)} fake-token leaks"
    )
    for f in _findings[:50]:
        terminalreporter.write_line(f"  LEAK {f}", red=True)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _findings and session.exitstatus == 0:
        session.exitstatus = 1
