"""Figure, not a test: decoding a 2,000-frame legacy ChatGPT answer (cumulative snapshots)
(and, for comparison, the same answer as 2,000 delta-v1 frames).

In-process: wall time and tracemalloc peak of SSE framing + `SSEDecoder` over the bytes.
End to end: wall time and peak RSS of `chatcli ask --jsonl` against the loopback server.
Run: CHATCLI_SHARED=/work/shared python tests/bench/chatgpt_legacy_2000.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from chatcli import events as ev  # noqa: E402
from chatcli.providers.chatgpt.legacy import SSEDecoder  # noqa: E402
from chatcli.sse import iter_sse, iter_text  # noqa: E402
from loopback import LoopbackServer  # noqa: E402
from loopback.chatgpt import TOKEN, ChatGPTBackend, sse  # noqa: E402

CID = "0d5c3e71-2a4b-4c8d-9e1f-3a5b7c9d1e2f"


def stream(frames: int = 2000) -> bytes:
    so_far, out = "", []
    msg = {"id": "a1", "author": {"role": "assistant", "name": None, "metadata": {}}, "create_time": 1.0,
           "update_time": None, "content": {"content_type": "text", "parts": [""]}, "status": "in_progress",
           "end_turn": None, "weight": 1.0, "metadata": {"message_type": "next", "model_slug": "gpt-4o"},
           "recipient": "all"}
    for i in range(frames):
        so_far += f"t{i:04d} "
        msg["content"]["parts"] = [so_far]
        out.append(sse({"message": msg, "conversation_id": CID, "error": None}))
    out.append(sse("[DONE]"))
    return "".join(out).encode()


def stream_v1(frames: int = 2000) -> bytes:
    doc = {"message": {"id": "a1", "author": {"role": "assistant"}, "recipient": "all", "status": "in_progress",
                       "content": {"content_type": "text", "parts": [""]}}, "conversation_id": CID, "error": None}
    out = [sse('"v1"', "delta_encoding"), sse({"v": doc, "c": 0}, "delta")]
    for i in range(frames):
        f = {"p": "/message/content/parts/0", "o": "append", "v": f"t{i:04d} "} if i == 0 else {"v": f"t{i:04d} "}
        out.append(sse(f, "delta"))
    out += [sse({"type": "message_stream_complete", "conversation_id": CID}), sse("[DONE]")]
    return "".join(out).encode()


def _decode(chunks: list[bytes]) -> int:
    dec = SSEDecoder()
    n = 0
    for s in iter_sse(iter_text(chunks)):
        for e in dec.feed(s.event if s.event != "message" else None, s.data):
            n += isinstance(e, ev.Delta)
    return n


def in_process(data: bytes, label: str = "legacy") -> None:
    """Wall time without tracing (best of 3), then the tracemalloc peak of one more run."""
    chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        n = _decode(chunks)
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    _decode(chunks)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"in-process {label}: {len(data) / 1e6:.2f} MB of SSE, {n} deltas, {best * 1000:.0f} ms, "
          f"tracemalloc peak {peak / 1e6:.2f} MB")


def end_to_end(data: bytes) -> None:
    with LoopbackServer() as srv:
        backend = ChatGPTBackend(srv, websockets=False)
        backend.raw_sse = data
        backend.split = [4096]
        with tempfile.TemporaryDirectory() as home:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATCLI_", "CHATGPT_"))}
            env.update(CHATCLI_HOME=home, CHATGPT_ACCESS_TOKEN=TOKEN, PYTHONPATH=str(ROOT))
            cmd = [sys.executable, "-m", "chatcli", "ask", "-p", "chatgpt", "--base-url", backend.base_url,
                   "--jsonl", "count"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True)
            elapsed = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        lines = proc.stdout.decode().splitlines()
        assert proc.returncode == 0, proc.stderr
        assert json.loads(lines[-1])["type"] == "done"
        print(f"chatcli ask --jsonl: exit {proc.returncode}, {len(lines)} lines, {elapsed * 1000:.0f} ms wall, "
              f"peak RSS {rss / 1024:.1f} MB")


if __name__ == "__main__":
    payload = stream()
    in_process(payload)
    in_process(stream_v1(), "v1")
    end_to_end(payload)
