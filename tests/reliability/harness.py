"""Running chatcli for the reliability suite: exit code, output, peak memory, saved state.

`run(cli, args, env, timeout)` runs the real chatcli like the `cli` fixture and measures
the child's peak RSS by polling /proc/<pid>/status VmHWM (reset by exec) every 10 ms.
Neither RUSAGE_CHILDREN (the largest child so far) nor wait4's ru_maxrss works here: both
count the pytest parent's memory, which a vfork()ed child shares until it execs.
Outputs are recorded for the secrets guard.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from reliability import secrets_guard


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    maxrss_mb: float
    seconds: float

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"Run(code={self.code}, stdout={self.stdout[-1500:]!r}, stderr={self.stderr[-1500:]!r})"


def _reader(stream: Any, sink: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read(65536), b""):
        sink.append(chunk)


def _hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def reap(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """Wait for `proc` (SIGKILL after `timeout`); (exit code, peak RSS in MB)."""
    if proc.returncode is not None:  # already reaped by poll()
        return proc.returncode, 0.0
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _hwm_kb(proc.pid))
            done.wait(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    timer = threading.Timer(timeout, lambda: proc.kill())
    timer.start()
    try:
        _, status = os.waitpid(proc.pid, 0)
    finally:
        timer.cancel()
        done.set()
        poller.join()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    return code, peak[0] / 1024.0


def spawn(cli: Any, args: list[str], env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(cli.cmd(*args), env=dict(cli.env, **(env or {})), **kw)


def run(cli: Any, args: list[str], env: dict[str, str] | None = None, timeout: float = 30.0) -> Run:
    start = time.monotonic()
    proc = spawn(cli, args, env)
    out: list[bytes] = []
    err: list[bytes] = []
    threads = [threading.Thread(target=_reader, args=(proc.stdout, out)),
               threading.Thread(target=_reader, args=(proc.stderr, err))]
    for t in threads:
        t.start()
    code, rss = reap(proc, timeout)
    for t in threads:
        t.join(5)
    r = Run(code, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace"), rss,
            time.monotonic() - start)
    secrets_guard.record(f"chatcli {' '.join(args[:3])}", r.stdout, r.stderr)
    if code == -signal.SIGKILL:
        raise AssertionError(f"chatcli {args} did not end within {timeout}s: {r!r}")
    return r


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("chatcli: error:")]


def assert_designed_failure(r: Run, exit_code: int, code: str | None) -> None:
    """One `chatcli: error:` line, no traceback, a terminal `error` event (when --jsonl)."""
    assert r.code == exit_code, r
    assert "Traceback" not in r.stderr, r
    assert len(error_lines(r.stderr)) == 1, r
    if code is not None:
        events = r.events
        assert events and events[-1]["type"] == "error", r
        assert events[-1]["code"] == code, r
        assert sum(e["type"] in ("done", "error") for e in events) == 1, r
        assert events[0]["type"] == "start", r


def conversations(cli: Any) -> list[dict[str, Any]]:
    r = cli("history", "--jsonl")
    assert r.code == 0, r
    return r.events


def messages(cli: Any, cid: str | None = None) -> list[dict[str, Any]]:
    """`chatcli history <id> --jsonl` (the id of the home's only conversation by default,
    read from the index in-process to spare a subprocess)."""
    if cid is None:
        index = json.loads((cli.home / "index.json").read_bytes())["conversations"]
        assert len(index) == 1, sorted(index)
        cid = next(iter(index))
    r = cli("history", cid, "--jsonl")
    assert r.code == 0, r
    return r.events
