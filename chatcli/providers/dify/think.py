"""Fold a leading `<think>…</think>` block of a streamed answer into reasoning (pure).

Model plugins built on dify_plugin's OpenAI-compatible base put `reasoning_content` inline
in the answer as `<think>\\n…\\n</think>` followed by the answer proper (spec §3.1,
`_wrap_thinking_by_reasoning_content`). The contract wants reasoning never mixed into
`delta`, so only a block that opens the answer is folded: the tags and the newline
inside each tag are dropped, the reasoning goes to `reasoning` and everything after
`</think>` is answer text, unchanged. Text split anywhere, even inside a tag, works.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"
_TAIL = "\n" + CLOSE


class ThinkFolder:
    def __init__(self) -> None:
        self.state = "start"  # start -> (inside ->) done
        self.buf = ""
        self._lead = True  # drop one newline right after <think>

    @property
    def done(self) -> bool:
        return self.state == "done"

    def settle(self) -> None:
        """No folding from now on (the answer was replaced)."""
        self.state, self.buf = "done", ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """(is_reasoning, text) pieces that are certain so far."""
        if self.state == "done":
            return [(False, text)] if text else []
        self.buf += text
        if self.state == "start":
            if self.buf.startswith(OPEN):
                self.state = "inside"
                self.buf = self.buf[len(OPEN):]
            elif OPEN.startswith(self.buf):
                return []  # could still become <think>
            else:
                self.state, rest, self.buf = "done", self.buf, ""
                return [(False, rest)]
        return self._inside()

    def _inside(self) -> list[tuple[bool, str]]:
        if self._lead:
            if not self.buf:
                return []
            if self.buf[0] == "\n":
                self.buf = self.buf[1:]
            self._lead = False
        out: list[tuple[bool, str]] = []
        end = self.buf.find(CLOSE)
        if end >= 0:
            thought, after = self.buf[:end], self.buf[end + len(CLOSE):]
            if thought.endswith("\n"):
                thought = thought[:-1]
            self.state, self.buf = "done", ""
            if thought:
                out.append((True, thought))
            if after:
                out.append((False, after))
            return out
        # Hold back what could be the start of "\n</think>".
        hold = 0
        for n in range(min(len(self.buf), len(_TAIL)), 0, -1):
            tail = self.buf[-n:]
            if _TAIL.startswith(tail) or CLOSE.startswith(tail):
                hold = n
                break
        ready, self.buf = self.buf[: len(self.buf) - hold], self.buf[len(self.buf) - hold:]
        if ready:
            out.append((True, ready))
        return out

    def flush(self) -> list[tuple[bool, str]]:
        """The end of the answer: whatever is held back."""
        buf, state = self.buf, self.state
        self.state, self.buf = "done", ""
        if not buf:
            return []
        return [(state == "inside", buf)]
