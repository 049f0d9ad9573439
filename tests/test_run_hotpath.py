"""run.py's per-delta path: the answer is kept in pieces, and slow checkpoints do not repeat.

In-process, with a fake provider and the real Store in the test's CHATCLI_HOME.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

from chatcli import events as ev
from chatcli import run as run_mod
from chatcli import store as st
from chatcli.config import Settings, state_dir
from chatcli.output import JsonlWriter


class Fake:
    name = "openai"
    supports_remote_stop = False

    def __init__(self, pieces: list[str], pause: float = 0.0) -> None:
        self.pieces, self.pause = pieces, pause

    def check_turn(self, turn: Any) -> None:
        pass

    def stream(self, turn: Any) -> Iterator[ev.Event]:
        yield ev.Start(provider="openai", model="m")
        for p in self.pieces:
            if self.pause:
                time.sleep(self.pause)
            yield ev.Delta(p)
        yield ev.Replace("".join(self.pieces) + "!") if self.pieces == ["r"] else ev.Delta("")
        yield ev.Done(finish_reason="stop")

    def close(self) -> None:
        pass


def _turn(provider: Fake) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    out = io.StringIO()
    writer = JsonlWriter(stdout=out, stderr=io.StringIO())
    writer.buffer = None  # write text to the StringIO
    t = run_mod._Turn(run_mod.TurnRequest(prompt="hi", mode="jsonl"), writer)
    code = t._run(provider, Settings(provider="openai", model="m"), None)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    conv = st.Store(state_dir()).load(events[-1]["conversation_id"])
    return code, events, conv


def test_many_pieces_make_one_answer() -> None:
    pieces = [f"{i % 10}é" for i in range(5000)]
    code, events, conv = _turn(Fake(pieces))
    assert code == 0
    assert events[-1]["type"] == "done" and events[-1]["text"] == "".join(pieces)
    assert conv["messages"][-1]["text"] == "".join(pieces) and conv["messages"][-1]["status"] == "complete"


def test_replace_resets_the_pieces() -> None:
    _code, events, conv = _turn(Fake(["r"]))
    assert events[-1]["text"] == "r!" and conv["messages"][-1]["text"] == "r!"


def test_a_slow_checkpoint_does_not_trigger_the_next_at_once(monkeypatch: Any) -> None:
    """A checkpoint slower than CHECKPOINT_SECONDS used to make every later delta checkpoint."""
    saves: list[bool] = []
    real_save = st.Store.save

    def slow_save(self: st.Store, conv: dict[str, Any], **kw: Any) -> None:
        if conv["messages"] and conv["messages"][-1].get("_checkpoint"):
            saves.append(True)
            time.sleep(0.05)
        real_save(self, conv, **kw)

    monkeypatch.setattr(run_mod, "CHECKPOINT_SECONDS", 0.01)
    monkeypatch.setattr(st.Store, "save", slow_save)
    code, events, conv = _turn(Fake(["x"] * 150, pause=0.004))
    assert code == 0 and events[-1]["text"] == "x" * 150
    # Before the fix: one checkpoint per delta after the first slow one (~150). Now each is
    # followed by at least 9x its duration without one: a handful in this ~0.6 s stream.
    assert 1 <= len(saves) <= 20, len(saves)
