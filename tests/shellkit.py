"""Helpers for the shell-experience tests: a small OpenAI-compatible loopback server, a
`chatcli` launcher on PATH, a tmux session, and a way to seed conversations.

The launcher is a two-line shell script in a temp dir that runs this checkout with the
interpreter running the tests (sys.executable), the way an installed console script would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from conftest import ROOT, clean_env
from loopback import LoopbackServer, sse_frame


def install_launcher(bindir: Path) -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / "chatcli"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m chatcli "$@"\n')
    path.chmod(0o755)
    return path


def shell_env(home: Path, bindir: Path, **extra: str) -> dict[str, str]:
    env = clean_env(home, **extra)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return env


def answer_for(body: Any) -> str:
    """The loopback model's deterministic answer: it echoes the last user message."""
    msgs = (body or {}).get("messages") or [{}]
    return f"echo: {msgs[-1].get('content', '')}"


def openai_routes(srv: LoopbackServer, *, first_delay: float = 0.0, answer: str | None = None,
                  chunk: int = 3, gate: Any = None, delay: float = 0.0) -> LoopbackServer:
    """POST /v1/chat/completions streams the answer in `chunk`-character deltas, after
    `first_delay` seconds and after `gate` (a threading.Event) is set, when given."""

    def models(ex: Any) -> None:
        ex.send_json(200, {"object": "list", "data": [{"id": "loop-1", "object": "model"}]})

    def chat(ex: Any) -> None:
        text = answer if answer is not None else answer_for(ex.json)
        ex.start(200)
        if first_delay and ex.sleep_or_gone(first_delay):
            return
        if gate is not None:
            while not gate.wait(0.05):
                if ex.sleep_or_gone(0.01):
                    return
        cid = "chatcmpl-" + uuid.uuid4().hex[:8]
        for i in range(0, len(text), chunk):
            ex.write(sse_frame({"id": cid, "object": "chat.completion.chunk", "model": "loop-1",
                                "choices": [{"index": 0, "delta": {"content": text[i:i + chunk]},
                                             "finish_reason": None}]}))
            if delay:
                time.sleep(delay)
        ex.write(sse_frame({"id": cid, "object": "chat.completion.chunk", "model": "loop-1",
                            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        ex.write(sse_frame({"id": cid, "object": "chat.completion.chunk", "model": "loop-1", "choices": [],
                            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}))
        ex.write(b"data: [DONE]\n\n")
        ex.end()

    srv.route("GET", r"/v1/models", models)
    srv.route("POST", r"/v1/chat/completions", chat)
    return srv


def seed(home: Path, n: int, *, provider: str = "openai", messages: int = 2) -> list[str]:
    """Write n conversations straight into the state directory (through chatcli.store)."""
    sys.path.insert(0, str(ROOT))
    from chatcli import store as st

    s = st.Store(home)
    ids = []
    index = {}
    with s.locked():
        for i in range(n):
            cid = f"c{i:07x}-{uuid.uuid4().hex[:6]}"
            conv = st.new_conversation(cid, {"provider": provider, "model": "loop-1"})
            conv["title"] = f"conversation number {i}"
            conv["updated_at"] = f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00.000000Z"
            parent = None
            for k in range(messages):
                mid = f"m{k}"
                conv["messages"].append({"message_id": mid, "parent_id": parent, "role": "user" if k % 2 == 0
                                         else "assistant", "text": f"text {i}.{k}", "created_at": conv["updated_at"],
                                         "status": "complete"})
                parent = mid
            conv["current"] = parent
            s.path_for(cid).write_bytes(orjson.dumps(conv))  # no fsync: test data
            index[cid] = st.summary(conv)
            ids.append(cid)
        s._write(s.index_path, {"version": st.VERSION, "conversations": index})
    return ids


class Tmux:
    """One tmux server (own socket) with one window running `bash --norc` in a fixed size."""

    def __init__(self, tmp: Path, env: dict[str, str], width: int = 100, height: int = 30) -> None:
        self.sock = str(tmp / "tmux.sock")
        self.env = dict(env, TERM="xterm-256color")
        self.env.pop("TMUX", None)
        self._run("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "t",
                  "env", "PS1=$ ", "bash", "--norc", "--noprofile")

    def _run(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", *args], env=self.env,
                             capture_output=True, text=True, timeout=20)
        return out.stdout

    def send(self, *keys: str) -> None:
        self._run("send-keys", "-t", "t", *keys)

    def line(self, text: str) -> None:
        self._run("send-keys", "-t", "t", "-l", text)
        self._run("send-keys", "-t", "t", "Enter")

    def capture(self, escapes: bool = False) -> str:
        return self._run("capture-pane", "-p", *(("-e",) if escapes else ()), "-t", "t")

    def wait_for(self, needle: str, timeout: float = 20.0, escapes: bool = False) -> str:
        end = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < end:
            screen = self.capture(escapes)
            if needle in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} did not appear on the screen:\n{screen}")

    def wait_until(self, pred: Any, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if pred(screen):
                return screen
            if time.monotonic() > end:
                raise AssertionError(f"the screen never matched:\n{screen}")
            time.sleep(0.05)

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], env=self.env, capture_output=True, timeout=10)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
