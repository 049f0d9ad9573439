"""What the benchmark sets up: stored conversations, streaming handlers, tools to compare."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


# ----- state ------------------------------------------------------------------------------


def make_home(path: Path, n: int, base_url: str) -> Path:
    """A CHATCLI_HOME with n stored openai conversations (written with chatcli.store)."""
    import orjson

    from chatcli import store as st

    s = st.Store(path)
    s._ensure_dirs()
    index = {}
    cid = ""
    for i in range(n):
        cid = str(uuid.uuid4())
        conv = st.new_conversation(cid, {"provider": "openai", "model": "bench-model", "base_url": base_url})
        conv["title"] = f"benchmark conversation {i}"
        u, a = str(uuid.uuid4()), str(uuid.uuid4())
        conv["messages"] = [
            {"message_id": u, "parent_id": None, "role": "user", "text": "hello there " * 4,
             "created_at": conv["created_at"], "status": "complete"},
            {"message_id": a, "parent_id": u, "role": "assistant", "text": "an answer of some length " * 8,
             "created_at": conv["created_at"], "status": "complete"},
        ]
        conv["current"] = a
        s.path_for(cid).write_bytes(orjson.dumps(conv, option=orjson.OPT_INDENT_2))
        index[cid] = st.summary(conv)
    with s.locked():
        s._write(s.index_path, {"version": st.VERSION, "conversations": index})
        if cid:
            s._write(s.last_path, {"version": st.VERSION, "conversation_id": cid})
    return path


# ----- servers ----------------------------------------------------------------------------


def streamer(body: bytes, pause: float = 0.0, first: bytes = b"") -> Callable[[Any], None]:
    def handler(ex: Any) -> None:
        ex.start(200, content_type="text/event-stream; charset=utf-8")
        if first:
            ex.write(first)
            if pause and ex.sleep_or_gone(pause):
                return
        for i in range(0, len(body), 1 << 16):
            ex.write(body[i : i + (1 << 16)])

    return handler


def find_llm(explicit: str | None) -> str | None:
    for cand in (explicit, shutil.which("llm"),
                 str(Path.home() / ".cache" / "chatcli-bench" / "llm-venv" / "bin" / "llm")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def find_console_script() -> str | None:
    for cand in (shutil.which("chatcli"), str(Path(sys.executable).parent / "chatcli")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None
