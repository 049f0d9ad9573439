"""Running a command once and measuring it: wall time, peak RSS, first byte, output."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# GNU time reports the peak RSS of the command alone. (The rusage of a child forked from
# this big Python process would include the pages it inherited before exec.)
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

_STRIP_PREFIXES = ("CHATCLI_", "OPENAI_", "DIFY_", "COZE_", "CHATGPT_", "LITELLM_", "LLM_")
_STRIP = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
          "no_proxy", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "FORCE_COLOR", "PYTHONDONTWRITEBYTECODE",
          "PYTHONPATH", "PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME"}


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without provider settings, proxies or bytecode suppression.

    PYTHONDONTWRITEBYTECODE is dropped so chatcli runs from compiled bytecode, as an
    installed copy does (pip compiles at install time); the first run writes __pycache__.
    """
    env = {k: v for k, v in os.environ.items() if k not in _STRIP and not k.startswith(_STRIP_PREFIXES)}
    env["PYTHONPATH"] = str(ROOT)
    env["CHATCLI_HOME"] = str(home)
    env["CHATCLI_NO_LOCAL"] = "1"
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


@dataclass
class Run:
    wall: float  # seconds from spawn to exit
    rss_mb: float  # peak resident set of the command (GNU time %M; nan without it)
    cpu: float  # user + system CPU seconds of the command (GNU time; nan without it)
    code: int
    first: float | None = None  # seconds from spawn to the first stdout byte (capture only)
    last: float | None = None  # seconds from spawn to stdout EOF (capture only)
    out: bytes = b""
    err: bytes = b""
    lines: int = 0
    size: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def run(cmd: list[str], env: dict[str, str], *, capture: bool = False, keep: bool = False,
        timeout: float = 120.0) -> Run:
    """Run `cmd` once; with `capture`, read stdout as it arrives (first byte, lines, size)."""
    with tempfile.TemporaryFile() as errf, tempfile.NamedTemporaryFile("r") as rssf:
        if TIME:
            cmd = [TIME, "-f", "%M %U %S", "-o", rssf.name, *cmd]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=errf)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        first = last = None
        chunks: list[bytes] = []
        lines = size = 0
        try:
            if capture:
                assert proc.stdout is not None
                fd = proc.stdout.fileno()
                while True:
                    data = os.read(fd, 1 << 16)
                    if not data:
                        break
                    if first is None:
                        first = time.perf_counter() - t0
                    size += len(data)
                    lines += data.count(b"\n")
                    if keep:
                        chunks.append(data)
                last = time.perf_counter() - t0
                proc.stdout.close()
            _, status, _usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read()
        rss = cpu = float("nan")
        if TIME:
            lines = [line for line in rssf.read().split("\n") if line.strip()]
            fields = lines[-1].split() if lines else []
            if len(fields) == 3 and fields[0].isdigit():
                rss, cpu = int(fields[0]) / 1024, float(fields[1]) + float(fields[2])
    return Run(wall, rss, cpu, proc.returncode, first, last, b"".join(chunks), err, lines, size)
