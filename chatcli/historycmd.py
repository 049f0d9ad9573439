"""`chatcli history`: list conversations, show one as a dialogue, rename or delete one.

Local by default (no network import); `--remote` asks the conversation's provider. The
provider hooks used here are optional methods a provider may define:

    remote_messages(conversation_id) -> list[dict]     (history ID --remote)
    delete_remote(conversation_id) -> None             (history ID --delete --remote)
    rename_remote(conversation_id, title) -> None      (history ID --rename TITLE --remote)
"""

from __future__ import annotations

import shutil
import sys
from datetime import datetime
from typing import Any

import orjson

from chatcli import store as st
from chatcli.config import Options, resolve, state_dir
from chatcli.errors import UsageError
from chatcli.output import Style, use_color

MESSAGE_KEYS = ("message_id", "parent_id", "role", "text", "created_at", "status")
LIST_KEYS = ("conversation_id", "provider", "title", "model", "created_at", "updated_at", "messages", "profile")
ID_MIN = 8  # the id column shows the shortest unique prefix, at least this long


def _line(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")


def _when(iso: str | None, now: datetime | None = None) -> str:
    """Local time: `14:03` today, `Mon 14:03` this week, else `2026-11-30 14:03`."""
    if not iso:
        return "-"
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return iso
    now = now or datetime.now().astimezone()
    age = (now - dt).total_seconds()
    if 0 <= age < 86400 and dt.date() == now.date():
        return dt.strftime("today %H:%M")
    if 0 <= age < 6 * 86400:
        return dt.strftime("%a %H:%M")
    return dt.strftime("%Y-%m-%d %H:%M")


def _prefixes(ids: list[str]) -> dict[str, str]:
    """Each id's shortest unique prefix (at least ID_MIN characters) among `ids`."""
    ordered = sorted(set(ids))
    # common[i]: length of the common prefix of ordered[i] and ordered[i + 1]
    common = []
    for a, b in zip(ordered, ordered[1:]):
        n = 0
        limit = min(len(a), len(b))
        while n < limit and a[n] == b[n]:
            n += 1
        common.append(n)
    out: dict[str, str] = {}
    for i, cid in enumerate(ordered):
        shared = max(common[i - 1] if i else 0, common[i] if i < len(common) else 0)
        out[cid] = cid[: max(ID_MIN, shared + 1)]
    return out


def _matches(store: st.Store, conv: dict[str, Any], needle: str) -> bool:
    if needle in (conv.get("title") or "").lower():
        return True
    try:
        full = store.load(conv["conversation_id"])
    except Exception:  # a missing or corrupt file is reported by `history ID`, not here
        return False
    return any(needle in (m.get("text") or "").lower() for m in full.get("messages", ()))


def list_conversations(*, jsonl: bool, limit: int | None = None, provider: str | None = None,
                       search: str | None = None) -> int:
    store = st.Store(state_dir())
    convs = store.list()
    if provider:
        convs = [c for c in convs if c.get("provider") == provider]
    if search:
        needle = search.lower()
        found = []
        for c in convs:
            if limit is not None and len(found) >= limit:
                break
            if _matches(store, c, needle):
                found.append(c)
        convs = found
    if limit is not None:
        convs = convs[:limit]
    if jsonl:
        for c in convs:
            _line({k: c.get(k) for k in LIST_KEYS})
        sys.stdout.flush()
        return 0
    if not convs:
        if limit != 0:
            what = "no conversations yet" if not (provider or search) else "no conversation matches"
            print(f"chatcli: {what}", file=sys.stderr)
        return 0
    style = Style(use_color(sys.stdout))
    short = _prefixes([c["conversation_id"] for c in store.list()])
    rows = [(short.get(c["conversation_id"], c["conversation_id"]), c.get("provider") or "-",
             _when(c.get("updated_at")), str(c.get("messages", 0)), " ".join((c.get("title") or "").split()))
            for c in convs]
    header = ("ID", "PROVIDER", "WHEN", "MSGS", "TITLE")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    tty = sys.stdout.isatty()
    room = (shutil.get_terminal_size().columns - sum(widths) - 8) if tty else 0

    def fmt(r: tuple[str, ...], head: bool = False) -> str:
        title = r[4]
        if tty and room > 10 and len(title) > room:
            title = title[: room - 1] + "…"
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]), r[3].rjust(widths[3]), title]
        if head:
            return style.dim("  ".join(cells).rstrip())
        return "  ".join([style.bold(cells[0]), cells[1], style.dim(cells[2]), cells[3], cells[4]]).rstrip()

    out = [fmt(header, head=True)] if tty else []
    out += [fmt(r) for r in rows]
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
    head = conv.get("title") or "(untitled)"
    meta = ", ".join(str(x) for x in (conv.get("provider"), conv.get("model"), cid) if x)
    sys.stdout.write(style.bold(head) + "  " + style.dim(f"({meta})") + "\n")
    for m in messages:
        role = str(m.get("role") or "?")
        status = "" if m.get("status") in (None, "complete") else f" [{m['status']}]"
        label = {"user": "you", "assistant": "assistant", "system": "system"}.get(role, role)
        sys.stdout.write(f"\n{style.bold(label)}  {style.dim(_when(m.get('created_at')))}"
                         f"{style.yellow(status) if status else ''}\n")
        text = m.get("text") or ""
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    return 0


def _provider_for(conv: dict[str, Any]) -> Any:
    from chatcli import providers

    settings, _ = resolve(Options(), stored=conv)
    return providers.load(settings.provider)(settings)


def list_remote(*, jsonl: bool, provider: str | None, limit: int | None = None) -> int:
    """`history --remote` without an ID: the provider's own conversation list."""
    from chatcli import providers

    settings, _ = resolve(Options(provider=provider))
    impl = providers.load(settings.provider)(settings)
    try:
        lister = getattr(impl, "remote_conversations", None)
        convs = lister() if lister is not None else []
    finally:
        impl.close()
    if limit is not None:
        convs = convs[:limit]
    store = st.Store(state_dir())
    known = {c["conversation_id"] for c in store.list()}
    if jsonl:
        for c in convs:
            _line({"conversation_id": c.get("conversation_id"), "provider": settings.provider,
                   "title": c.get("title"), "model": c.get("model"), "created_at": c.get("created_at"),
                   "updated_at": c.get("updated_at"), "messages": c.get("messages"),
                   "local": c.get("conversation_id") in known})
        sys.stdout.flush()
        return 0
    if not convs:
        print(f"chatcli: {settings.provider} lists no conversations", file=sys.stderr)
        return 0
    style = Style(use_color(sys.stdout))
    width = max(len(str(c.get("conversation_id"))) for c in convs)
    for c in convs:
        cid = str(c.get("conversation_id"))
        mark = " " if cid in known else "*"
        title = " ".join(str(c.get("title") or "").split())
        sys.stdout.write(f"{style.bold(cid.ljust(width))} {mark} {style.dim(_when(c.get('updated_at')).ljust(16))}  {title}".rstrip() + "\n")
    if any(str(c.get("conversation_id")) not in known for c in convs):
        print("chatcli: * = only on the provider, not in the local history", file=sys.stderr)
    return 0


def _remote_call(conv: dict[str, Any], hook: str, what: str, *args: Any) -> Any:
    """Call an optional provider hook on the conversation's remote id (UsageError when impossible)."""
    from chatcli import providers

    remote_id = conv.get("remote_id")
    name = conv.get("provider")
    if not remote_id:
        raise UsageError(f"conversation {conv['conversation_id']} exists only locally ({name})")
    cls = providers.load(str(name))
    if getattr(cls, hook, None) is None:
        raise UsageError(f"{name} does not support {what} in chatcli yet; nothing was changed",
                         hint="drop --remote to change only the local copy")
    provider = _provider_for(conv)
    try:
        return getattr(provider, hook)(remote_id, *args)
    finally:
        provider.close()


def _remote_messages(conv: dict[str, Any]) -> list[dict[str, Any]]:
    return _remote_call(conv, "remote_messages", "reading the remote history")  # type: ignore[no-any-return]


def delete_conversation(ref: str, *, remote: bool) -> int:
    store = st.Store(state_dir())
    cid = store.resolve(ref)
    conv = store.load(cid)
    if remote:
        _remote_call(conv, "delete_remote", "deleting remote conversations")
    store.delete(cid)
    where = " (locally and on the provider)" if remote else ""
    print(f"chatcli: deleted {cid}{where}", file=sys.stderr)
    return 0


def rename_title(store: st.Store, cid: str, title: str) -> dict[str, Any]:
    """Set a conversation's title (its file and index entry) under the lock; `updated_at` is kept."""
    with store.locked():
        conv = store.load(cid)
        conv["title"] = title
        store.save(conv)
    return conv


def rename_conversation(ref: str, title: str, *, remote: bool) -> int:
    title = " ".join(title.split())
    if not title:
        raise UsageError("the new title is empty")
    store = st.Store(state_dir())
    cid = store.resolve(ref)
    if remote:
        _remote_call(store.load(cid), "rename_remote", "renaming remote conversations", title)
    rename_title(store, cid, title)
    print(f"chatcli: renamed {cid} to {title!r}", file=sys.stderr)
    return 0
