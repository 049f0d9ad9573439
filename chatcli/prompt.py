"""The prompt from the command line and stdin (CONTRACT.md, "Commands").

Words are joined with spaces. `-` (alone or among the words) reads stdin to EOF at that
place. No words and stdin not a terminal: the prompt is stdin. Words plus piped stdin:
stdin is prepended as context, but only if it shows data (or EOF) within a short grace
period, so a prompt given on the command line never waits on a terminal or on a pipe
that nobody writes to.
"""

from __future__ import annotations

import os
import select
import stat
import sys
from typing import IO

from chatcli.errors import UsageError

# How long to wait for piped stdin to show data when a prompt was given as words.
STDIN_GRACE_SECONDS = 0.5


def _read_all(stream: IO[bytes]) -> str:
    return stream.read().decode("utf-8", errors="replace")


def _stdin_ready(fd: int, grace: float) -> bool:
    """Does stdin have data or EOF (not a terminal, not a silent pipe)?"""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if stat.S_ISREG(mode):
        return True
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        # /dev/null and other character devices: readable at once; a terminal: never.
        return not os.isatty(fd) and stat.S_ISCHR(mode)
    try:
        ready, _, _ = select.select([fd], [], [], grace)
    except (OSError, ValueError):
        return False
    return bool(ready)


def build_prompt(
    words: list[str],
    stdin: IO[bytes] | None = None,
    *,
    grace: float | None = None,
) -> str:
    stdin = stdin if stdin is not None else sys.stdin.buffer
    grace = STDIN_GRACE_SECONDS if grace is None else grace
    try:
        fd = stdin.fileno()
        is_tty = os.isatty(fd)
    except (AttributeError, OSError, ValueError):
        fd, is_tty = -1, False

    if "-" in words:
        if is_tty:
            print("chatcli: reading the prompt from the terminal; end it with Ctrl-D", file=sys.stderr)
        piped = _read_all(stdin)
        parts = [piped if w == "-" else w for w in words]
        # Only the first `-` reads stdin; later ones are empty.
        seen = False
        out = []
        for w, p in zip(words, parts, strict=True):
            if w == "-":
                if seen:
                    continue
                seen = True
            out.append(p)
        prompt = " ".join(out) if len(out) > 1 else out[0]
    elif not words:
        if is_tty:
            raise UsageError("no prompt given", hint='try: chatcli ask "your question"')
        prompt = _read_all(stdin)
    else:
        prompt = " ".join(words)
        if not is_tty and fd >= 0 and _stdin_ready(fd, grace):
            context = _read_all(stdin)
            if context.strip():
                prompt = context.rstrip("\n") + "\n\n" + prompt
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    return prompt
