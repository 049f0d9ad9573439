"""What every ChatGPT answer encoding ultimately carries: message snapshots -> events.

`AnswerState` is fed whole message objects (spec §4; the legacy decoder passes each
snapshot, the v1 decoder the current document after each delta) plus typed events and
moderation objects, and yields chatcli events. Pure: no sockets.

Only the visible answer becomes `Delta`: an assistant message to `all` with text content,
not hidden, channel null/final (spec §4 "Which message is the answer"). Tool calls and
tool output become one `Tool` each; `thoughts` content becomes `Reasoning`; system, user
and hidden messages are shown only by --raw. Text is emitted in linear time: the length
already emitted per message is remembered and only the new tail is sliced off (a short
tail comparison detects a rewritten snapshot, which becomes `Replace`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from chatcli import events as ev
from chatcli.errors import ProtocolError, ProviderError, RateLimited, register_secret

# Characters compared at the boundary of the emitted text to detect a rewrite.
TAIL = 32
# Between two visible assistant messages of one turn (a tool call in between).
SEPARATOR = "\n\n"


def text_of(content: Any) -> str:
    """The text of a message's content (spec §4 content types)."""
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts")
    if isinstance(parts, list):
        strings = [p for p in parts if isinstance(p, str)]
        # "".join of one string returns that string itself: no copy on the hot path.
        return "".join(strings) if len(strings) != 1 else strings[0]
    text = content.get("text")
    if isinstance(text, str):
        return text
    return ""


def thoughts_of(content: dict[str, Any]) -> str:
    out = []
    for t in content.get("thoughts") or ():
        if isinstance(t, dict) and isinstance(t.get("content"), str):
            out.append(t["content"])
    return "\n\n".join(out)


def in_stream_error(err: Any, code: Any = None) -> ProviderError:
    """`{"message": null, "error": "..."}` inside the stream (spec §5.2 item 2)."""
    if isinstance(err, dict):
        message = err.get("message") or err.get("detail") or orjson.dumps(err).decode()
        code = code or err.get("code")
    else:
        message = str(err)
    text = f"chatgpt: the server reported an error: {message}"
    if code and str(code) not in text:
        text += f" ({code})"
    if "too many" in str(message).lower() or code in ("model_cap_exceeded", "rate_limit_exceeded"):
        return RateLimited(text)
    return ProviderError(text)


class AnswerState:
    """The answer being assembled from message snapshots (one per turn)."""

    def __init__(self) -> None:
        self.conversation_id: str | None = None
        self.answer_id: str | None = None  # the last visible assistant message
        self.model: str | None = None
        self.title: str | None = None
        self.finish_type: str | None = None
        self.end_turn = False
        self.complete = False  # [DONE] or message_stream_complete seen
        self.prefix = ""  # text of earlier visible messages of this turn (+ separators)
        self.seen = 0  # characters of the current answer message already emitted
        self.tail = ""  # the last TAIL of them
        self.cur = ""  # the current answer message's latest text (a reference, not a copy)
        self.need_sep = False
        self.reasoning_seen: dict[str, int] = {}
        self.tools_done: set[str] = set()
        self.pending_tool: tuple[str, dict[str, Any]] | None = None

    # ----- snapshots -------------------------------------------------------------

    def conversation(self, cid: Any) -> Iterator[ev.Event]:
        if isinstance(cid, str) and cid and cid != self.conversation_id:
            self.conversation_id = cid
            yield ev.Meta(data={"conversation_id": cid})

    def document(self, doc: Any) -> Iterator[ev.Event]:
        """A legacy snapshot or a v1 document: {"message", "conversation_id", "error"}."""
        if not isinstance(doc, dict):
            return
        if doc.get("error"):
            raise in_stream_error(doc["error"], doc.get("error_code"))
        yield from self.conversation(doc.get("conversation_id"))
        msg = doc.get("message")
        if isinstance(msg, dict):
            yield from self.message(msg)

    def message(self, msg: dict[str, Any]) -> Iterator[ev.Event]:
        mid = msg.get("id")
        if not isinstance(mid, str):
            return
        author = msg.get("author") or {}
        role = author.get("role") if isinstance(author, dict) else None
        content = msg.get("content") if isinstance(msg.get("content"), dict) else {}
        ctype = content.get("content_type")
        meta = msg.get("metadata") if isinstance(msg.get("metadata"), dict) else {}
        recipient = msg.get("recipient") or "all"
        hidden = bool(meta.get("is_visually_hidden_from_conversation"))
        finished = msg.get("status") == "finished_successfully" or msg.get("end_turn") is True

        if self.pending_tool is not None and self.pending_tool[0] != mid:
            yield from self.flush_tool()
        if role != "assistant" and role != "tool":
            return  # system, user: --raw only
        if hidden:
            return
        if role == "tool" or recipient != "all":
            self.pending_tool = (mid, msg)
            if finished:
                yield from self.flush_tool()
            return
        if msg.get("channel") not in (None, "final"):
            if ctype == "thoughts" or msg.get("channel") == "analysis":
                yield from self._reasoning(mid, thoughts_of(content) if ctype == "thoughts" else text_of(content))
            return
        if ctype == "thoughts":
            yield from self._reasoning(mid, thoughts_of(content))
            return
        if ctype not in ("text", "multimodal_text"):
            return  # reasoning_recap, code to all, ...: --raw only
        yield from self._answer(mid, text_of(content), meta)
        if finished:
            self.end_turn = self.end_turn or msg.get("end_turn") is True
        details = meta.get("finish_details")
        if isinstance(details, dict) and details.get("type"):
            self.finish_type = str(details["type"])

    def _answer(self, mid: str, text: str, meta: dict[str, Any]) -> Iterator[ev.Event]:
        if mid != self.answer_id:
            if self.answer_id is not None and not text:
                return  # an empty new message does not end the previous one yet
            if self.answer_id is not None and self.cur:
                self.prefix += self.cur
                self.need_sep = True
            self.answer_id = mid
            self.seen = 0
            self.tail = ""
            self.cur = ""
            self.finish_type = None
            yield ev.Meta(data={"message_id": mid, "cursor": {"parent_message_id": mid}})
            slug = meta.get("model_slug")
            if isinstance(slug, str) and slug and slug != self.model:
                self.model = slug
                yield ev.Meta(data={"model": slug})
        seen = self.seen
        n = len(text)
        # O(new text): compare only the boundary, slice only the tail (spec §4, §5.4).
        continues = n >= seen and text[max(0, seen - TAIL):seen] == self.tail
        if continues and n == seen:
            self.cur = text
            return
        sep = ""
        if self.need_sep:
            sep = "" if self.prefix.endswith("\n") else SEPARATOR
            self.prefix += sep
            self.need_sep = False
        self.cur = text
        self.seen = n
        self.tail = text[max(0, n - TAIL):]
        if continues:
            yield ev.Delta(sep + text[seen:])
        else:
            # The snapshot rewrote what was already shown (a moderation rewrite, a shrink).
            yield ev.Replace(self.prefix + text)

    def _reasoning(self, mid: str, text: str) -> Iterator[ev.Event]:
        seen = self.reasoning_seen.get(mid, 0)
        if len(text) > seen:
            self.reasoning_seen[mid] = len(text)
            yield ev.Reasoning(text[seen:])

    def flush_tool(self) -> Iterator[ev.Event]:
        if self.pending_tool is None:
            return
        mid, msg = self.pending_tool
        self.pending_tool = None
        if mid in self.tools_done:
            return
        self.tools_done.add(mid)
        author = msg.get("author") if isinstance(msg.get("author"), dict) else {}
        text: Any = text_of(msg.get("content"))
        if author.get("role") == "tool":
            yield ev.Tool(name=str(author.get("name") or "tool"), input=None, output=text or None)
        else:
            yield ev.Tool(name=str(msg.get("recipient")), input=text or None, output=None)

    # ----- other payloads -----------------------------------------------------------

    def typed(self, obj: dict[str, Any]) -> Iterator[ev.Event]:
        """Typed events (spec §5.2 item 4, §6.4)."""
        kind = obj.get("type")
        yield from self.conversation(obj.get("conversation_id"))
        if kind == "title_generation":
            title = obj.get("title")
            if isinstance(title, str) and title:
                self.title = title  # may repeat; the last wins
                yield ev.Meta(data={"title": title})
        elif kind == "message_stream_complete":
            self.complete = True
        elif kind in ("moderation", "url_moderation"):
            yield from self.moderation(obj)
        elif kind == "resume_conversation_token":
            # Never shown: --raw redacts registered secrets (spec §6.4).
            register_secret(obj.get("token") if isinstance(obj.get("token"), str) else None)
        elif kind == "server_ste_metadata":
            meta = obj.get("metadata") or {}
            if isinstance(meta, dict) and isinstance(meta.get("model_slug"), str) and not self.model:
                self.model = meta["model_slug"]
                yield ev.Meta(data={"model": self.model})
        elif kind == "stream_handoff":
            raise ProtocolError(
                "chatgpt: the server handed the answer off to its 2026 WebSocket service, which chatcli does not speak",
            )
        if obj.get("error"):
            raise in_stream_error(obj["error"], obj.get("error_code"))

    def moderation(self, obj: dict[str, Any]) -> Iterator[ev.Event]:
        """Spec §5.2 item 3: blocked -> the answer is withheld (an error); flagged -> kept."""
        mod = obj.get("moderation_response")
        if not isinstance(mod, dict):
            return
        if mod.get("blocked"):
            which = "the prompt" if obj.get("is_completion") is False else "the answer"
            raise ProviderError(f"chatgpt: {which} was blocked by ChatGPT's moderation")
        if mod.get("flagged"):
            yield ev.Meta(data={"moderation": "flagged"})

    def finish(self) -> Iterator[ev.Event]:
        yield from self.flush_tool()

    def done(self) -> ev.Done:
        return ev.Done(message_id=self.answer_id, finish_reason=map_finish(self.finish_type))


def map_finish(kind: str | None) -> str:
    if kind in (None, "stop"):
        return "stop"
    if kind == "max_tokens":
        return "length"
    return kind  # interrupted (stopped elsewhere), ...
