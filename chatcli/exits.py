"""The one place exceptions become exit codes, and signals become `Stopped`.

`guard` runs a command and maps every exception to one stderr line (plus the terminal
`error` event in --jsonl) and the contract's exit code; `Interrupts` turns SIGINT/SIGTERM
into `Stopped` while an answer streams. Imported by every command, so it stays small and
imports nothing of the network stack.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from chatcli import events as ev
from chatcli.errors import ChatCliError, Stopped, redact
from chatcli.output import Writer, make_writer

BUG_URL = "https://github.com/chatcli/chatcli/issues"


class Interrupts:
    """SIGTERM (and SIGINT) raise Stopped in the main thread while armed (streaming).

    Installed before the turn's first state write, so a `chatcli stop` (which only finds
    processes with an in-flight record) never meets the default action that would kill
    the process mid-turn: before streaming a signal is remembered and `arm()` raises it.
    After the end signals are ignored (SIG_IGN: a Python handler would be reset to the
    default action during interpreter shutdown), so a late or repeated signal cannot turn
    an outcome already saved and printed into a death by signal. The turn is the last
    thing a `chatcli ask/continue` process does.
    """

    def __init__(self) -> None:
        self.armed = False
        self.signum: int | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.signum = signum
        if self.armed:
            self.armed = False
            raise Stopped("interrupted" if signum == signal.SIGINT else "stopped")

    def arm(self) -> None:
        if self.signum is not None:
            raise Stopped("interrupted" if self.signum == signal.SIGINT else "stopped")
        self.armed = True

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.armed = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def error_event(exc: ChatCliError) -> ev.Error:
    return ev.Error(code=exc.code, message=exc.message, status=exc.status, retryable=exc.retryable)


def guard(fn: Callable[[], int], writer: Writer | None = None) -> int:
    """Run a command; map every exception to one stderr line and the contract's exit code."""
    writer = writer or make_writer("text")
    try:
        return fn()
    except ChatCliError as exc:
        writer.error(error_event(exc), exc.hint)
        return exc.exit_code
    except (Stopped, KeyboardInterrupt):
        return 130
    except BrokenPipeError:
        silence_stdout()
        return 141
    except Exception as exc:  # a bug: say so, never a traceback unless asked
        if os.environ.get("CHATCLI_DEBUG"):
            raise
        message = f"internal error: {type(exc).__name__}: {redact(str(exc))[:300]} (a bug: please report it at {BUG_URL}; CHATCLI_DEBUG=1 shows the traceback)"
        writer.error(ev.Error(code="internal", message=message))
        return 1


def silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
