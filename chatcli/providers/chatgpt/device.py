"""The stable per-installation device id (`Oai-Device-Id`, spec §1.3).

Kept in `<state_dir>/chatgpt-device-id` (0600, directory 0700), created once with
O_EXCL so parallel first runs agree on one id. When the state directory cannot be
written, a fresh id is used for this run rather than failing the request.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

FILE_NAME = "chatgpt-device-id"


def _valid(text: str) -> str | None:
    text = text.strip()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def device_id(state: Path | None = None) -> str:
    from chatcli.config import state_dir

    directory = state or state_dir()
    path = directory / FILE_NAME
    try:
        existing = _valid(path.read_text())
        if existing:
            return existing
    except (OSError, UnicodeDecodeError):
        pass
    new = str(uuid.uuid4())
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = directory / f".{FILE_NAME}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces an id another process just wrote
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return _valid(path.read_text()) or new
    except OSError:
        return new
