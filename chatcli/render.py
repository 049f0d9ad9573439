"""`--render`: the answer as Markdown on a terminal, via rich (imported only here).

Only chosen by `make_writer` when stdout is a terminal and the mode is text, so pipes,
`--jsonl` and `--raw` never see it. The answer is redrawn with rich.live while it streams
(re-parsed at most every REFRESH seconds: a long answer costs O(n) parses, not one per
delta) and drawn once more, complete, at the end.
"""

from __future__ import annotations

import time
from typing import IO, Any

from chatcli.output import TextWriter

REFRESH = 0.15


class RenderWriter(TextWriter):
    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        super().__init__(stdout, stderr)
        self.parts: list[str] = []
        self.live: Any = None
        self.last_draw = 0.0

    def _markdown(self) -> Any:
        from rich.markdown import Markdown

        return Markdown("".join(self.parts))

    def _text(self, text: str) -> None:
        if not text:
            return
        if self.spinner is not None:
            self._stop_spinner()
        if self.in_reasoning:
            self.err.write("\n")
            self.err.flush()
            self.in_reasoning = False
        self.parts.append(text)
        self.wrote_text = True
        if self.live is None:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(file=self.out), auto_refresh=False, vertical_overflow="visible",
                             redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        now = time.monotonic()
        if now - self.last_draw >= REFRESH:
            self.last_draw = now
            self.live.update(self._markdown(), refresh=True)

    def event(self, event: Any) -> None:
        if event.type == "replace":
            if self.spinner is not None:
                self._stop_spinner()
            self.parts = []
            self._text(event.text)
            return
        super().event(event)

    def finish(self) -> None:
        if self.in_reasoning:
            self.err.write("\n")
            self.in_reasoning = False
        if self.live is not None:
            self.live.update(self._markdown(), refresh=True)
            self.live.stop()
            self.live = None
            self.out.flush()
        else:
            self.out.write("\n")
            self.out.flush()
