"""Local state: conversations, the index that lists them, and in-flight records.

Layout under the state directory (0700; every file 0600, never a secret):

    conversations/<id>.json   one conversation: settings (no secrets), ids, messages
    index.json                one summary line per conversation, for `history` and --cid
    last.json                 the id of the last *used* conversation (for `continue`)
    inflight/<pid>.json       an answer being generated: who owns it and how to stop it
    .lock                     taken (flock) around every read-modify-write

Every write goes to a temporary file that is fsynced and renamed over the old one, with
SIGINT/SIGTERM held back, under the lock; a kill at any instant leaves either the old or
the new file. A file that cannot be parsed is moved aside (never emptied) and reported.
`continue` reads only last.json and one conversation file, so it costs the same with
10,000 stored conversations as with 10; only the index grows.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from chatcli.errors import ConversationNotFound, StateError

VERSION = 1
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _file_name(cid: str) -> str:
    if _SAFE_ID.match(cid) and not cid.endswith(".json"):
        return cid + ".json"
    return "x-" + hashlib.sha256(cid.encode()).hexdigest()[:32] + ".json"


class Store:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.conv_dir = home / "conversations"
        self.inflight_dir = home / "inflight"
        self.index_path = home / "index.json"
        self.last_path = home / "last.json"
        self._lock_depth = 0
        self._lock_fd: int | None = None
        # conversation id -> ids of messages this process created and wrote / only read (see _merge)
        self._written: dict[str, set[str]] = {}
        self._seen: dict[str, set[str]] = {}

    # ----- low level -------------------------------------------------------------

    def _ensure_dirs(self) -> None:
        for d in (self.home, self.conv_dir, self.inflight_dir):
            try:
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create the state directory {d}: {exc.strerror or exc}") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state lock, with SIGINT/SIGTERM deferred until it is released."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self._ensure_dirs()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            try:
                fd = os.open(self.home / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise StateError(f"cannot open the state lock in {self.home}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._lock_fd, self._lock_depth = fd, 1
                try:
                    yield
                finally:
                    self._lock_depth, self._lock_fd = 0, None
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _write(self, path: Path, data: Any, *, durable: bool = True) -> None:
        """Atomic replace: temporary file, fsync (unless not `durable`), rename (caller holds the lock)."""
        payload = orjson.dumps(data, option=orjson.OPT_INDENT_2 if path.name != "index.json" else 0)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(payload)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StateError(f"cannot write {path}: {exc.strerror or exc}") from None

    def _read(self, path: Path, what: str) -> Any:
        """Parsed JSON, None when missing; a corrupt file is moved aside and reported."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            version = data.get("version", VERSION)
            if not isinstance(version, int) or version > VERSION:
                raise StateError(
                    f"{path} was written by a newer chatcli (state version {version}); upgrade chatcli"
                )
            return data
        except (orjson.JSONDecodeError, ValueError):
            moved = self._move_aside(path)
            raise StateError(f"{what} {path} was corrupt; it was moved to {moved} and kept") from None

    def _move_aside(self, path: Path) -> Path:
        target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        try:
            os.replace(path, target)
        except OSError:
            return path
        return target

    # ----- conversations ---------------------------------------------------------

    def path_for(self, cid: str) -> Path:
        return self.conv_dir / _file_name(cid)

    def load(self, cid: str) -> dict[str, Any]:
        data = self._read(self.path_for(cid), "the conversation file")
        if data is None:
            raise ConversationNotFound(f"no conversation {cid!r} in {self.home}")
        self._seen[cid] = {m.get("message_id") for m in data.get("messages") or () if isinstance(m, dict)}
        return data

    def save(self, conv: dict[str, Any], *, index: bool = True, last: bool = False, durable: bool = True,
             derived_durable: bool | None = None) -> None:
        """Write a conversation (and its index entry, and last.json when asked).

        `durable=False` skips the fsyncs (still atomic; safe against a killed process, not
        against an OS crash): for a save that a durable one follows shortly.
        `derived_durable=False` fsyncs the conversation file but not the index and last.json
        (both derived or recoverable); `sync()` makes them durable later.
        """
        derived = durable if derived_durable is None else derived_durable
        conv["version"] = VERSION
        with self.locked():
            self._merge(conv)
            self._write(self.path_for(conv["conversation_id"]), conv, durable=durable)
            seen = self._seen.get(conv["conversation_id"], set())
            self._written.setdefault(conv["conversation_id"], set()).update(
                m["message_id"] for m in conv["messages"] if m["message_id"] not in seen)
            if index:
                self._update_index({conv["conversation_id"]: summary(conv)}, durable=derived)
            if last:
                self._write(self.last_path, {"version": VERSION, "conversation_id": conv["conversation_id"]},
                            durable=derived)

    def sync(self) -> None:
        """fsync the index and last.json as they are now (after a save with durable=False)."""
        for path in (self.index_path, self.last_path):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)

    def _merge(self, conv: dict[str, Any]) -> None:
        """Apply this process's changes on top of the file as it is now (caller holds the lock).

        Two `continue`s of one conversation each load it, add their turn and save: without
        this the last writer would drop the other's messages. The file is the base; the
        messages this process created replace or extend it, and one it wrote and has since
        removed (a replaced checkpoint) stays removed. Messages it only read are taken as
        the file has them now.
        """
        cid = conv["conversation_id"]
        try:
            disk = orjson.loads(self.path_for(cid).read_bytes())
            theirs = disk["messages"]
            assert isinstance(theirs, list)
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            return
        seen = self._seen.setdefault(cid, set())
        mine = {m["message_id"]: m for m in conv["messages"] if m["message_id"] not in seen}
        # Removed by us: written once, no longer in our copy at all (not only "not mine":
        # after a second load() our earlier messages count as read, yet they are kept).
        dropped = self._written.get(cid, set()) - {m["message_id"] for m in conv["messages"]}
        merged: list[dict[str, Any]] = []
        for m in theirs:
            mid = m.get("message_id") if isinstance(m, dict) else None
            if mid in mine:
                merged.append(mine.pop(mid))
            elif mid is not None and mid not in dropped:
                merged.append(m)
                seen.add(mid)
        merged.extend(mine.values())
        conv["messages"] = merged
        if (disk.get("updated_at") or "") > (conv.get("updated_at") or ""):
            conv["updated_at"] = disk["updated_at"]

    def rename(self, conv: dict[str, Any], new_id: str) -> None:
        """Give a conversation the provider's own id (learnt from the first answer)."""
        old_id = conv["conversation_id"]
        if old_id == new_id:
            return
        with self.locked():
            conv["conversation_id"] = new_id
            self._seen[new_id] = self._seen.pop(old_id, set())
            self._written[new_id] = self._written.pop(old_id, set())
            conv.setdefault("local_id", old_id)
            self.save(conv, index=False)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path_for(old_id))
            self._update_index({new_id: summary(conv)}, remove=(old_id,))
            last = self.last()
            if last == old_id:
                self._write(self.last_path, {"version": VERSION, "conversation_id": new_id})

    def delete(self, cid: str) -> None:
        with self.locked():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path_for(cid))
            self._update_index({}, remove=(cid,))
            if self.last() == cid:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.last_path)

    def last(self, *, strict: bool = False) -> str | None:
        """The last used conversation id; strict: a corrupt last.json raises StateError."""
        try:
            data = self._read(self.last_path, "the last-conversation file")
        except StateError:
            if strict:
                raise
            return None
        cid = (data or {}).get("conversation_id")
        return cid if isinstance(cid, str) else None

    def set_last(self, cid: str) -> None:
        with self.locked():
            self._write(self.last_path, {"version": VERSION, "conversation_id": cid})

    # ----- index -----------------------------------------------------------------

    def _load_index(self) -> dict[str, dict[str, Any]]:
        try:
            data = self._read(self.index_path, "the index")
        except StateError as exc:
            if "newer chatcli" in exc.message:
                raise
            # The index is derived data: rebuild it from the conversation files.
            print(f"chatcli: warning: {exc.message}; rebuilding it", file=sys.stderr)
            data = None
            return self._rebuild_index()
        if data is None:
            if self.conv_dir.is_dir() and any(self.conv_dir.glob("*.json")):
                return self._rebuild_index()
            return {}
        convs = data.get("conversations")
        return convs if isinstance(convs, dict) else {}

    def _rebuild_index(self) -> dict[str, dict[str, Any]]:
        convs: dict[str, dict[str, Any]] = {}
        for path in sorted(self.conv_dir.glob("*.json")):
            try:
                data = orjson.loads(path.read_bytes())
                convs[data["conversation_id"]] = summary(data)
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                continue
        with contextlib.suppress(StateError), self.locked():
            self._write(self.index_path, {"version": VERSION, "conversations": convs})
        return convs

    def _update_index(self, entries: dict[str, dict[str, Any]], remove: tuple[str, ...] = (), *,
                      durable: bool = True) -> None:
        with self.locked():
            convs = self._load_index()
            for cid in remove:
                convs.pop(cid, None)
            convs.update(entries)
            self._write(self.index_path, {"version": VERSION, "conversations": convs}, durable=durable)

    def list(self) -> list[dict[str, Any]]:
        """Summaries, most recently used first."""
        convs = list(self._load_index().values())
        convs.sort(key=lambda c: c.get("updated_at") or "", reverse=True)
        return convs

    def resolve(self, ref: str) -> str:
        """A full id or a unique prefix -> the full id (ConversationNotFound otherwise)."""
        ref = ref.strip()
        if not ref:
            raise ConversationNotFound("empty conversation id")
        if self.path_for(ref).exists():
            return ref
        ids = [cid for cid in self._load_index() if cid.startswith(ref)]
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise ConversationNotFound(f"no conversation matches {ref!r}", hint="see `chatcli history`")
        shown = ", ".join(sorted(ids)[:5]) + (" ..." if len(ids) > 5 else "")
        raise ConversationNotFound(f"{ref!r} is ambiguous: it matches {len(ids)} conversations ({shown})")

    # ----- in-flight records -------------------------------------------------------

    def add_inflight(self, record: dict[str, Any]) -> None:
        record["version"] = VERSION
        # Not fsynced (~10 ms before the first byte of every answer): the record describes a
        # live process, so after a crash that could lose it there is no process to stop, and
        # a torn record is skipped by inflight(). The rename still makes it atomic.
        with self.locked():
            self._write(self.inflight_dir / f"{record['pid']}.json", record, durable=False)

    def remove_inflight(self, pid: int) -> None:
        with self.locked(), contextlib.suppress(FileNotFoundError):
            os.unlink(self.inflight_dir / f"{pid}.json")

    def inflight(self) -> list[dict[str, Any]]:
        """In-flight records, newest first; each gets `alive` (is its process still there?)."""
        records = []
        try:
            names = os.listdir(self.inflight_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StateError(f"cannot read {self.inflight_dir}: {exc.strerror or exc}") from None
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                rec = orjson.loads((self.inflight_dir / name).read_bytes())
                int(rec["pid"])
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            rec["alive"] = process_alive(int(rec["pid"]), rec.get("proc_start"))
            records.append(rec)
        records.sort(key=lambda r: r.get("started_at") or "", reverse=True)
        return records


def summary(conv: dict[str, Any]) -> dict[str, Any]:
    return {
        "conversation_id": conv["conversation_id"],
        "provider": conv.get("provider"),
        "profile": conv.get("profile"),
        "title": conv.get("title"),
        "model": conv.get("model"),
        "created_at": conv.get("created_at"),
        "updated_at": conv.get("updated_at"),
        "messages": len(conv.get("messages", ())),
    }


def proc_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (to tell a reused pid from the original)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22 (starttime), counted after the ")" that ends the command name.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def process_alive(pid: int, start: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    if start is not None:
        now = proc_start_time(pid)
        if now is not None and now != start:
            return False
    # A zombie has exited already.
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state != b"Z"
    except (OSError, IndexError):
        return True


# ----- the conversation model (pure) ------------------------------------------------


def new_conversation(cid: str, settings: dict[str, Any]) -> dict[str, Any]:
    now = now_iso()
    return {
        "version": VERSION,
        "conversation_id": cid,
        "remote_id": None,
        "provider": settings.get("provider"),
        "profile": settings.get("profile"),
        "base_url": settings.get("base_url"),
        "model": settings.get("model"),
        "bot_id": settings.get("bot_id"),
        "user": settings.get("user"),
        "title": None,
        "created_at": now,
        "updated_at": now,
        "current": None,
        "cursor": {},
        "messages": [],
    }


def thread(conv: dict[str, Any], leaf: str | None = None) -> list[dict[str, Any]]:
    """Messages from the root to `leaf` (default: the conversation's current message)."""
    leaf = leaf if leaf is not None else conv.get("current")
    by_id = {m["message_id"]: m for m in conv.get("messages", ())}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while leaf is not None and leaf in by_id and leaf not in seen:
        seen.add(leaf)
        msg = by_id[leaf]
        out.append(msg)
        leaf = msg.get("parent_id")
    out.reverse()
    return out


def find_message(conv: dict[str, Any], ref: str) -> dict[str, Any]:
    """A message by full id or unique prefix."""
    msgs = conv.get("messages", ())
    exact = [m for m in msgs if m["message_id"] == ref]
    if exact:
        return exact[0]
    matches = [m for m in msgs if m["message_id"].startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConversationNotFound(f"no message {ref!r} in conversation {conv['conversation_id']}")
    raise ConversationNotFound(f"message id {ref!r} is ambiguous in conversation {conv['conversation_id']}")
