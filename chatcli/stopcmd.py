"""`chatcli stop`: stop an answer being generated, from any shell.

It finds the in-flight record (the newest, or the one whose conversation matches --cid)
and signals its owning process with SIGTERM. The owner asks the provider to stop where
the service has an endpoint (it holds the credentials and the stop handle), saves the
partial answer as `stopped` and exits 130. A record whose process is gone is removed and
reported. No network library is imported here.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from chatcli import store as st
from chatcli.config import state_dir
from chatcli.errors import ConversationNotFound, UsageError
from chatcli.output import make_writer

WAIT_SECONDS = 10.0


class NothingInFlight(UsageError):
    code = "not_found"


def _pick(records: list[dict[str, Any]], ref: str | None) -> list[dict[str, Any]]:
    if not ref:
        return records
    exact = [r for r in records if r.get("conversation_id") == ref]
    if exact:
        return exact
    matches = [r for r in records if str(r.get("conversation_id", "")).startswith(ref)]
    ids = {r.get("conversation_id") for r in matches}
    if len(ids) > 1:
        raise ConversationNotFound(f"{ref!r} is ambiguous: it matches {len(ids)} answers in flight")
    return matches


def stop(ref: str | None, *, wait: float = WAIT_SECONDS) -> int:
    writer = make_writer("text")
    store = st.Store(state_dir())
    records = _pick(store.inflight(), ref)
    stale = [r for r in records if not r["alive"]]
    for r in stale:
        store.remove_inflight(int(r["pid"]))
    live = [r for r in records if r["alive"]]
    if not live:
        if stale:
            r = stale[0]
            raise NothingInFlight(
                f"nothing in flight: the answer for conversation {r.get('conversation_id')} belonged to "
                f"process {r['pid']}, which no longer exists; its stale record was cleaned up"
            )
        what = f" for conversation {ref!r}" if ref else ""
        raise NothingInFlight(f"nothing in flight{what}")
    target = live[0]
    pid = int(target["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        store.remove_inflight(pid)
        raise NothingInFlight(f"process {pid} ended before it could be stopped") from None
    except PermissionError:
        raise UsageError(f"not allowed to signal process {pid}") from None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and st.process_alive(pid, target.get("proc_start")):
        if not os.path.exists(store.inflight_dir / f"{pid}.json"):
            break
        time.sleep(0.02)
    cid = target.get("conversation_id")
    if st.process_alive(pid, target.get("proc_start")) and os.path.exists(store.inflight_dir / f"{pid}.json"):
        writer.warn(f"asked process {pid} to stop conversation {cid}; it has not finished yet")
    else:
        writer.note(f"stopped the answer in conversation {cid} (process {pid})")
    return 0
