"""Writers: text for people, JSONL events for scripts, raw wire events for debugging.

Each writer takes events one by one and flushes every write. Text mode puts only the
answer on stdout; everything else goes to stderr, styled only when stderr is a terminal
(NO_COLOR, FORCE_COLOR and TERM=dumb honoured). The mode is chosen by option, never by
isatty, so `--jsonl` gives the same bytes to a pipe and a terminal.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from typing import IO, Any

import orjson

from chatcli import events as ev
from chatcli.errors import redact


def use_color(stream: IO[str], env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress_allowed(stream: IO[str], env: dict[str, str] | None = None) -> bool:
    """Progress indicators: only on a terminal, never with NO_COLOR or TERM=dumb (CONTRACT: Output).

    FORCE_COLOR forces colour, not a spinner: a spinner on a pipe or a log file is noise.
    """
    env = os.environ if env is None else env
    if env.get("NO_COLOR") or env.get("TERM") in ("dumb", None, ""):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Spinner:
    """An elapsed-time line on stderr while nothing has arrived yet.

    A daemon thread draws a frame every `interval` seconds after `delay` (quick answers
    show nothing). Every write happens under `lock`, and the writer erases the line and
    stops the thread (under the same lock) before the first byte of answer text goes to
    stdout, so a frame can never land in the middle of the answer. After that the hot
    path pays one `is None` check per delta.
    """

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, stream: IO[str], style: Style, *, delay: float = 0.3, interval: float = 0.1) -> None:
        self.stream = stream
        self.style = style
        self.delay = delay
        self.interval = interval
        self.label = "waiting for the answer"
        self.lock = threading.Lock()
        self.shown = False
        self._stopped = threading.Event()
        self._t0 = time.monotonic()
        self._thread: threading.Thread | None = None

    def start(self) -> Spinner:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chatcli-spinner", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        return self

    def _run(self) -> None:
        if self._stopped.wait(self.delay):
            return
        i = 0
        while True:
            with self.lock:
                if self._stopped.is_set():
                    return
                elapsed = time.monotonic() - self._t0
                frame = f"{self.FRAMES[i % len(self.FRAMES)]} {self.label} {elapsed:.0f}s"
                try:
                    self.stream.write("\r" + self.style.dim(frame) + "\x1b[K")
                    self.stream.flush()
                except (OSError, ValueError):
                    return
                self.shown = True
            i += 1
            if self._stopped.wait(self.interval):
                return

    def clear(self) -> None:
        """Erase the frame (the caller holds `lock`)."""
        if self.shown:
            self.shown = False
            try:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def stop(self) -> None:
        with self.lock:
            self._stopped.set()
            self.clear()


class Style:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)


def error_line(message: str, hint: str | None, style: Style) -> str:
    line = f"chatcli: error: {message}"
    if hint:
        line += f" ({hint})"
    return style.red(line) if style.enabled else line


class Writer:
    """Base writer: notices and errors to stderr."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        self.style = Style(use_color(self.err))
        self.spinner: Spinner | None = None

    def waiting(self) -> None:
        """The request is about to be sent: show progress until something arrives (text mode)."""

    def _err(self, text: str) -> None:
        spinner = self.spinner
        if spinner is None:
            self.err.write(text)
            self.err.flush()
            return
        with spinner.lock:
            spinner.clear()
            self.err.write(text)
            self.err.flush()

    def _stop_spinner(self) -> None:
        spinner, self.spinner = self.spinner, None
        if spinner is not None:
            spinner.stop()

    def note(self, text: str) -> None:
        self._err(self.style.dim(f"chatcli: {text}") + "\n")

    def warn(self, text: str) -> None:
        self._err(self.style.yellow(f"chatcli: warning: {text}") + "\n")

    def event(self, event: ev.Event) -> None:
        raise NotImplementedError

    def error(self, event: ev.Error, hint: str | None = None) -> None:
        self._stop_spinner()
        self._err(error_line(event.message, hint, self.style) + "\n")

    def wire(self, name: str | None, data: Any) -> None:
        """Raw wire events are shown only by RawWriter."""


class TextWriter(Writer):
    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        super().__init__(stdout, stderr)
        self.wrote_text = False
        self.ends_with_newline = True
        self.in_reasoning = False
        self.usage: ev.Usage | None = None
        self.suggestions: list[str] = []

    def waiting(self) -> None:
        if self.spinner is None and progress_allowed(self.err):
            self.spinner = Spinner(self.err, Style(True)).start()

    def _before_text(self) -> None:
        """The answer starts or goes on: erase the spinner, end a `thinking:` line on stderr."""
        if self.spinner is not None:
            self._stop_spinner()
        if self.in_reasoning:
            self.err.write("\n")
            self.err.flush()
            self.in_reasoning = False

    def _text(self, text: str) -> None:
        if not text:
            return
        self._before_text()
        self.out.write(text)
        self.out.flush()
        self.wrote_text = True
        self.ends_with_newline = text.endswith("\n")

    def event(self, event: ev.Event) -> None:
        kind = event.type
        if kind == "delta":
            self._text(event.text)  # type: ignore[union-attr]
            return
        if self.spinner is not None:
            if kind == "start":
                self.spinner.label = "connected, waiting for the first token"
                return
            if kind in ("reasoning", "replace", "tool", "done"):
                self._stop_spinner()
        if kind == "reasoning":
            if not self.in_reasoning:
                self.err.write(self.style.dim("thinking: "))
                self.in_reasoning = True
            self.err.write(self.style.dim(event.text))  # type: ignore[union-attr]
            self.err.flush()
        elif kind == "replace":
            if self.wrote_text:
                self.out.write("\n")
                self.note("the provider replaced the answer above with:")
            self.wrote_text = False
            self._text(event.text)  # type: ignore[union-attr]
        elif kind == "tool":
            assert isinstance(event, ev.Tool)
            parts = [f"tool {event.name or '?'}"]
            if event.input not in (None, "", {}):
                parts.append(f"input: {_short(event.input)}")
            if event.output not in (None, "", {}):
                parts.append(f"output: {_short(event.output)}")
            self.note(" | ".join(parts))
        elif kind == "suggestion":
            self.suggestions.append(event.text)  # type: ignore[union-attr]
        elif kind == "usage":
            self.usage = event  # type: ignore[assignment]
        elif kind == "done":
            assert isinstance(event, ev.Done)
            self.finish()
            if event.finish_reason == "length":
                self.warn("the answer was cut short at the token limit (finish_reason: length)")
            elif event.finish_reason == "stopped":
                self.note("stopped; the partial answer was saved")
            elif event.finish_reason not in ("stop", None):
                self.note(f"finish_reason: {event.finish_reason}")
            for s in self.suggestions:
                self.note(f"suggestion: {s}")
            tail = f"conversation {event.conversation_id}"
            if self.usage is not None:
                u = self.usage
                tail += f" · tokens in {u.input_tokens if u.input_tokens is not None else '?'}"
                tail += f", out {u.output_tokens if u.output_tokens is not None else '?'}"
                if u.cost not in (None, "", 0, "0"):
                    tail += f" · cost {u.cost} {u.currency or ''}".rstrip()
            self.note(tail)

    def finish(self) -> None:
        """End the answer with exactly one newline (also before an error line)."""
        if self.in_reasoning:
            self.err.write("\n")
            self.in_reasoning = False
        self.out.write("\n")
        self.out.flush()

    def _end_reasoning(self) -> None:
        """Close an open `thinking: ...` stderr line, so what follows starts its own line."""
        if self.in_reasoning:
            self.err.write("\n")
            self.in_reasoning = False

    def note(self, text: str) -> None:
        self._end_reasoning()
        super().note(text)

    def warn(self, text: str) -> None:
        self._end_reasoning()
        super().warn(text)

    def error(self, event: ev.Error, hint: str | None = None) -> None:
        if self.wrote_text:
            self.finish()
        self._end_reasoning()
        super().error(event, hint)


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Delta has only `text` (and `type`): its JSON object is built directly, not via to_dict.
_PLAIN_DELTA = tuple(ev.Delta.__dataclass_fields__) == ("text", "type")


class JsonlWriter(Writer):
    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        super().__init__(stdout, stderr)
        self.buffer = getattr(self.out, "buffer", None)

    def _line(self, obj: Any) -> None:
        data = orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
        if self.buffer is not None:
            self.buffer.write(data)
            self.buffer.flush()
        else:
            self.out.write(data.decode())
            self.out.flush()

    started = False

    def event(self, event: ev.Event) -> None:
        kind = event.type
        if kind == "delta" and _PLAIN_DELTA:  # the hot path: one per token
            self._line({"type": "delta", "text": event.text})  # type: ignore[union-attr]
        elif kind != "meta":
            if kind == "start":
                self.started = True
            self._line(ev.to_dict(event))

    def error(self, event: ev.Error, hint: str | None = None) -> None:
        super().error(event, hint)
        if not self.started:
            # CONTRACT.md: `start` is the first line, always -- also when the command fails
            # before a provider was chosen (empty prompt, bad config): its keys are null.
            self.event(ev.Start(provider=None))  # type: ignore[arg-type]
        self._line(ev.to_dict(event))


class RawWriter(JsonlWriter):
    def event(self, event: ev.Event) -> None:
        pass

    def error(self, event: ev.Error, hint: str | None = None) -> None:
        Writer.error(self, event, hint)

    def wire(self, name: str | None, data: Any) -> None:
        # Wire data can carry tokens (a wss_url's access_token): redact the whole line.
        line = redact(orjson.dumps({"event": name, "data": data}).decode()) + "\n"
        if self.buffer is not None:
            self.buffer.write(line.encode())
            self.buffer.flush()
        else:
            self.out.write(line)
            self.out.flush()


def make_writer(mode: str, *, render: bool = False) -> Writer:
    """The writer for a mode; `render` (Markdown via rich) applies to text mode on a terminal only."""
    if mode == "text" and render and _isatty(sys.stdout) and os.environ.get("TERM") != "dumb":
        import importlib.util

        if importlib.util.find_spec("rich") is not None:
            from chatcli.render import RenderWriter

            return RenderWriter()
        writer = TextWriter()
        writer.warn("--render needs the rich package (pip install rich); showing plain text")
        return writer
    return {"text": TextWriter, "jsonl": JsonlWriter, "raw": RawWriter}[mode]()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
