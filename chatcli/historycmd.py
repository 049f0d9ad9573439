"""`chatcli history`: list conversations, or show one conversation's messages.

Local by default (no network import); `--remote` asks the conversation's provider.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import orjson

from chatcli import store as st
from chatcli.config import Options, resolve, state_dir
from chatcli.output import Style, use_color

MESSAGE_KEYS = ("message_id", "parent_id", "role", "text", "created_at", "status")


def _line(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return iso
    return dt.strftime("%Y-%m-%d %H:%M")


def list_conversations(*, jsonl: bool, limit: int | None = None, provider: str | None = None,
                       search: str | None = None) -> int:
    store = st.Store(state_dir())
    convs = store.list()
    if provider:
        convs = [c for c in convs if c.get("provider") == provider]
    if search:
        needle = search.lower()
        convs = [c for c in convs if needle in (c.get("title") or "").lower()]
    if limit is not None:
        convs = convs[:limit]
    if jsonl:
        for c in convs:
            _line({k: c.get(k) for k in ("conversation_id", "provider", "title", "model", "created_at",
                                          "updated_at", "messages", "profile")})
        sys.stdout.flush()
        return 0
    if not convs:
        print("no conversations yet", file=sys.stderr)
        return 0
    style = Style(use_color(sys.stdout))
    rows = [(c["conversation_id"], c.get("provider") or "-", _when(c.get("updated_at")),
             str(c.get("messages", 0)), c.get("title") or "") for c in convs]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for r in rows:
        out.append("  ".join([style.bold(r[0].ljust(widths[0])), r[1].ljust(widths[1]),
                              style.dim(r[2].ljust(widths[2])), r[3].rjust(widths[3]), r[4]]).rstrip())
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def show_conversation(ref: str, *, jsonl: bool, remote: bool) -> int:
    store = st.Store(state_dir())
    cid = store.resolve(ref)
    conv = store.load(cid)
    if remote:
        messages = _remote_messages(conv)
    else:
        messages = [{k: m.get(k) for k in MESSAGE_KEYS} for m in st.thread(conv)]
    if jsonl:
        for m in messages:
            _line({k: m.get(k) for k in MESSAGE_KEYS} | {k: v for k, v in m.items() if k not in MESSAGE_KEYS})
        sys.stdout.flush()
        return 0
    style = Style(use_color(sys.stdout))
    head = f"{conv.get('title') or cid}  ({conv.get('provider')}, {cid})"
    sys.stdout.write(style.bold(head) + "\n")
    for m in messages:
        status = "" if m.get("status") in (None, "complete") else f" [{m['status']}]"
        sys.stdout.write(f"\n{style.bold(str(m.get('role')))} {style.dim(_when(m.get('created_at')))}{status}\n")
        sys.stdout.write((m.get("text") or "") + "\n")
    return 0


def _remote_messages(conv: dict[str, Any]) -> list[dict[str, Any]]:
    from chatcli import providers
    from chatcli.errors import UsageError

    remote_id = conv.get("remote_id")
    if not remote_id:
        raise UsageError(f"conversation {conv['conversation_id']} exists only locally ({conv.get('provider')})")
    settings, _ = resolve(Options(), stored=conv)
    provider = providers.load(settings.provider)(settings)
    try:
        return provider.remote_messages(remote_id)
    finally:
        provider.close()
