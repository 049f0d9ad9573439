"""Test isolation and helpers shared by every test.

Every test gets its own CHATCLI_HOME and an environment stripped of provider tokens and
proxy settings. `cli` runs the real chatcli in a subprocess (`python -m chatcli` from
this checkout) and returns its exit code, stdout, stderr and parsed JSONL events.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# Fails the session if a fake token (sk-SECRET-..., see the module) leaks into any output.
pytest_plugins = ["reliability.secrets_guard"]

SHARED = Path(os.environ.get("CHATCLI_SHARED", ROOT.parent / "shared"))
TRANSCRIPTS = SHARED / "transcripts"

_STRIP_PREFIXES = ("CHATCLI_", "OPENAI_", "DIFY_", "COZE_", "CHATGPT_", "LITELLM_")
_STRIP = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
          "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "XDG_CONFIG_HOME",
          "XDG_STATE_HOME", "NO_COLOR", "FORCE_COLOR"}


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _STRIP and not k.startswith(_STRIP_PREFIXES)}
    env["CHATCLI_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    # Keep the zero-config path deterministic unless a test asks for the local model.
    env.setdefault("CHATCLI_NO_LOCAL", "1")
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    args: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"Result(code={self.code}, stdout={self.stdout[-2000:]!r}, stderr={self.stderr[-2000:]!r})"


class CLI:
    """Runs the real chatcli in subprocesses with an isolated home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = clean_env(home)

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "chatcli", *args]

    def __call__(self, *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
                 timeout: float = 60, stdin: Any = subprocess.DEVNULL) -> Result:
        full_env = dict(self.env, **(env or {}))
        kwargs: dict[str, Any] = {}
        if input is not None:
            kwargs["input"] = input.encode() if isinstance(input, str) else input
        else:
            kwargs["stdin"] = stdin
        proc = subprocess.run(self.cmd(*args), env=full_env, capture_output=True, timeout=timeout, **kwargs)
        return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                      proc.stderr.decode("utf-8", "replace"), list(args))

    def spawn(self, *args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
        full_env = dict(self.env, **(env or {}))
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(self.cmd(*args), env=full_env, **kw)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "chatcli-home"
    return h


@pytest.fixture
def cli(home: Path) -> CLI:
    return CLI(home)


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for k in list(os.environ):
        if k in _STRIP or k.startswith(_STRIP_PREFIXES):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CHATCLI_HOME", str(home))
    monkeypatch.setenv("CHATCLI_NO_LOCAL", "1")


@pytest.fixture
def server():
    from loopback import LoopbackServer

    srv = LoopbackServer().start()
    yield srv
    srv.stop()


PEERS = Path(os.environ.get("CHATCLI_PEERS", Path.home() / ".cache" / "chatcli-peers"))


def require(available: bool, what: str) -> None:
    """Skip locally when a real peer or tool is missing; under CI, fail instead."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: tests/run.sh should have installed it")
    pytest.skip(f"{what} is not installed (bash tests/run.sh installs it)")


def transcript(provider: str, name: str) -> bytes:
    path = TRANSCRIPTS / provider / name
    require(path.exists(), f"shared transcript {path}")
    return path.read_bytes()
