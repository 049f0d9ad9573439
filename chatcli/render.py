"""`--render`: the answer as Markdown on a terminal, via rich (imported only here).

Only chosen by `make_writer` when stdout is a terminal and the mode is text, so pipes,
`--jsonl` and `--raw` never see it. While the answer streams, finished blocks (up to the
last blank line outside a code fence) are printed once, for good, and only the block
being written is redrawn with rich.live (cut to the screen while it grows). So an answer
longer than the screen is never redrawn (and duplicated) in the scrollback, and each redraw
parses one block, at most every REFRESH seconds.
"""

from __future__ import annotations

import time
from typing import IO, Any

from chatcli.output import TextWriter

REFRESH = 0.15


def split_point(text: str, start: int) -> int:
    """The end of the last complete block in text[start:] (-1 if none): a blank line outside ``` fences."""
    pos = text.rfind("\n\n", start)
    while pos != -1:
        head = text[:pos]
        fences = head.count("\n```") + (1 if head.startswith("```") else 0)
        if fences % 2 == 0:
            return pos
        pos = text.rfind("\n\n", start, pos)
    return -1


class RenderWriter(TextWriter):
    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        super().__init__(stdout, stderr)
        self.parts: list[str] = []
        self.done_upto = 0  # text before this index is printed for good
        self.live: Any = None
        self.last_draw = 0.0

    @staticmethod
    def _markdown(text: str) -> Any:
        from rich.markdown import Markdown

        return Markdown(text)

    def _draw(self) -> None:
        text = "".join(self.parts)
        cut = split_point(text, self.done_upto)
        if cut != -1:
            self.live.console.print(self._markdown(text[self.done_upto:cut]))
            self.done_upto = cut + 2
        self.live.update(self._markdown(text[self.done_upto:]), refresh=True)

    def _text(self, text: str) -> None:
        if not text:
            return
        self._before_text()
        self.parts.append(text)
        self.wrote_text = True
        if self.live is None:
            from rich.console import Console
            from rich.live import Live

            # "ellipsis": a block taller than the screen is cut while it grows (Live cannot
            # redraw what has scrolled away); it is printed whole once it is complete.
            self.live = Live(console=Console(file=self.out), auto_refresh=False, vertical_overflow="ellipsis",
                             redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        now = time.monotonic()
        if now - self.last_draw >= REFRESH:
            self.last_draw = now
            self._draw()

    def event(self, event: Any) -> None:
        if event.type == "replace":
            if self.spinner is not None:
                self._stop_spinner()
            if self.live is not None:
                self._close()
                self.note("the provider replaced the answer above with:")
            self.parts, self.done_upto = [], 0
            self._text(event.text)
            return
        super().event(event)

    def _close(self) -> None:
        """Print the rest for good: clear the live part, then print it like the finished blocks."""
        from rich.text import Text

        rest = "".join(self.parts)[self.done_upto:]
        self.live.update(Text(""), refresh=True)
        self.live.stop()
        self.live.console.print(self._markdown(rest))
        self.live = None
        self.out.flush()

    def finish(self) -> None:
        if self.in_reasoning:
            self.err.write("\n")
            self.in_reasoning = False
        if self.live is not None:
            self._close()
        else:
            self.out.write("\n")
            self.out.flush()
