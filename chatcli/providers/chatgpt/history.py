"""Conversation endpoints (spec §9), pure: the visible thread of a `mapping` and the list.

`thread(detail)` walks parents from `current_node` (§9.1 "Rebuilding the visible thread"),
keeping user and assistant messages to `all` with text content that are not hidden
(system, tool, hidden context and reasoning nodes are left out); `parent_id` is the
previous visible message, so the list reads as a thread. Epoch-float times become ISO 8601
UTC. `conversations(page)` normalises a `GET /conversations` page (ISO times there).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chatcli.providers.chatgpt.answer import text_of


def iso(value: Any) -> str | None:
    """Epoch seconds or an ISO string (with or without offset) -> ISO 8601 UTC."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)):
            dt = datetime.fromtimestamp(float(value), UTC)
        else:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return None


def visible(msg: Any) -> bool:
    if not isinstance(msg, dict):
        return False
    role = (msg.get("author") or {}).get("role")
    if role not in ("user", "assistant"):
        return False
    meta = msg.get("metadata") or {}
    if meta.get("is_visually_hidden_from_conversation"):
        return False
    if (msg.get("recipient") or "all") != "all" or msg.get("channel") not in (None, "final"):
        return False
    ctype = (msg.get("content") or {}).get("content_type")
    return ctype in ("text", "multimodal_text")


def status_of(msg: dict[str, Any]) -> str:
    details = (msg.get("metadata") or {}).get("finish_details") or {}
    if isinstance(details, dict) and details.get("type") == "interrupted":
        return "stopped"
    if msg.get("status") in (None, "finished_successfully"):
        return "complete"
    if msg.get("status") == "in_progress":
        return "stopped"  # partial text: the answer never finished
    return "failed"


def thread(detail: dict[str, Any]) -> list[dict[str, Any]]:
    mapping = detail.get("mapping") or {}
    if not isinstance(mapping, dict):
        return []
    node_id = detail.get("current_node")
    chain: list[dict[str, Any]] = []
    seen: set[str] = set()
    while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        node = mapping[node_id] or {}
        msg = node.get("message")
        if visible(msg):
            chain.append(msg)
        node_id = node.get("parent")
    chain.reverse()
    out: list[dict[str, Any]] = []
    parent: str | None = None
    for msg in chain:
        mid = msg.get("id")
        out.append({
            "message_id": mid,
            "parent_id": parent,
            "role": msg["author"]["role"],
            "text": text_of(msg.get("content")),
            "created_at": iso(msg.get("create_time")),
            "status": status_of(msg),
            "model": (msg.get("metadata") or {}).get("model_slug"),
        })
        parent = mid
    return out


def conversations(page: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in page.get("items") or ():
        if not isinstance(item, dict) or not item.get("id"):
            continue
        out.append({
            "conversation_id": item["id"],
            "title": item.get("title"),
            "created_at": iso(item.get("create_time")),
            "updated_at": iso(item.get("update_time")),
        })
    return out
