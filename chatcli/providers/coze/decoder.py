"""Pure decoders: Coze stream events in, chatcli events out (no sockets here).

`V3Decoder` reads the v3 chat stream (`event:` names, shared/protocols/coze.md §2.3);
`V2Decoder` the legacy v2 stream (data-only frames with `"event"` inside the JSON, §1.3)
and, since it is the same data model framed with `event:` lines, the web UI stream (§1.4).
Both are fed `(sse_event_name, data_string)` and raise chatcli errors for errors the
stream reports. `finish()` ends the stream: pending tool steps, then exactly one `Done`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from chatcli import events as ev
from chatcli.errors import ProtocolError, ProviderError, TransportError
from chatcli.providers.coze.codes import classify

# Several answer messages in one reply (workflow message nodes, §2.3) are shown one after
# another; the spec is silent on how to join them, so they are kept apart by a blank line.
ANSWER_SEPARATOR = "\n\n"


def loads(data: str, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError(f"coze: malformed JSON in the {what} event: {data[:120]!r}") from None


def _maybe_json(text: Any) -> Any:
    """Decode a JSON string once more (function_call, tool_response, verbose: §2.5)."""
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return text
    return text


class _Answer:
    """The answer so far, assembled from one or more answer messages.

    Deltas append; a message's completed text is authoritative (§2.5 display guidance):
    when what was shown is a prefix of it the rest is yielded as a Delta, when it differs
    otherwise the whole answer is yielded as a Replace. Nothing is ever shown twice.
    """

    def __init__(self) -> None:
        self.order: list[str] = []
        self.parts: dict[str, str] = {}
        self.shown = ""

    def add(self, key: str, piece: str) -> Iterator[ev.Event]:
        if not piece:
            return
        if key not in self.parts:
            self.order.append(key)
            self.parts[key] = piece
            text = (ANSWER_SEPARATOR if self.shown else "") + piece
            self.shown += text
            yield ev.Delta(text)
            return
        self.parts[key] += piece
        if key == self.order[-1]:
            self.shown += piece
            yield ev.Delta(piece)
        else:  # a piece for an earlier message: recompose
            yield from self._sync()

    def complete(self, key: str, full: str) -> Iterator[ev.Event]:
        # An empty completed text next to streamed deltas is a blanked final chunk (the web
        # format does that, §1.4), not an empty answer: keep what the deltas gave.
        if not full:
            return
        if key not in self.parts:
            self.order.append(key)
        self.parts[key] = full
        yield from self._sync()

    def text_of(self, key: str) -> str:
        return self.parts.get(key, "")

    def _sync(self) -> Iterator[ev.Event]:
        new = ANSWER_SEPARATOR.join(p for k in self.order if (p := self.parts[k]))
        if new == self.shown:
            return
        if new.startswith(self.shown):
            rest, self.shown = new[len(self.shown):], new
            yield ev.Delta(rest)
        else:
            self.shown = new
            yield ev.Replace(new)


class _Common:
    """What both stream generations share: tool steps, follow-ups, answer text, the end."""

    def __init__(self, conversation_id: str | None = None) -> None:
        self.conversation_id = conversation_id
        self.started = False
        self.answer = _Answer()
        self.reasoning: dict[str, str] = {}
        self.answer_id: str | None = None
        self.pending_calls: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.done = False
        # True once nothing more is worth reading (the provider stops reading then).
        self.ended = False

    def _start(self, payload: Any) -> Iterator[ev.Event]:
        if self.started:
            return
        self.started = True
        if isinstance(payload, dict) and isinstance(payload.get("conversation_id"), str) and payload["conversation_id"]:
            self.conversation_id = payload["conversation_id"]
        yield ev.Start(provider="coze", conversation_id=self.conversation_id)

    def _reasoning(self, key: str, text: Any, complete: bool = False) -> Iterator[ev.Event]:
        if not isinstance(text, str) or not text:
            return
        seen = self.reasoning.get(key, "")
        if complete:
            # The completed message may repeat the reasoning: show only what is new.
            if text.startswith(seen) and len(text) > len(seen):
                self.reasoning[key] = text
                yield ev.Reasoning(text[len(seen):])
            return
        self.reasoning[key] = seen + text
        yield ev.Reasoning(text)

    def _tool_message(self, kind: str, content: Any, name: Any = None) -> Iterator[ev.Event]:
        """function_call / tool_response / tool_output: one Tool step per pair (§2.6)."""
        obj = _maybe_json(content)
        if kind == "function_call":
            if isinstance(obj, dict):
                args = _maybe_json(obj.get("arguments"))
                call = {"name": obj.get("name") or name, "input": args if args is not None else {}}
            else:
                call = {"name": name, "input": obj}
            self.pending_calls.append(call)
            return
        if isinstance(obj, dict) and "response_for_model" in obj:
            output = obj["response_for_model"]
        else:
            output = obj
        if self.pending_calls:
            call = self.pending_calls.pop(0)
            yield ev.Tool(name=call["name"], input=call["input"], output=output)
        else:
            yield ev.Tool(name=name if isinstance(name, str) else None, input=None, output=output)

    def _flush_calls(self) -> Iterator[ev.Event]:
        calls, self.pending_calls = self.pending_calls, []
        for call in calls:
            yield ev.Tool(name=call["name"], input=call["input"], output=None)

    def _message(self, key: str, m: dict[str, Any], *, complete: bool) -> Iterator[ev.Event]:
        kind = m.get("type") or "answer"
        content = m.get("content")
        if kind == "answer":
            if m.get("content_type") == "audio":
                return
            yield from self._flush_calls()
            yield from self._reasoning(key, m.get("reasoning_content"), complete)
            if isinstance(content, str):
                if complete:
                    yield from self.answer.complete(key, content)
                else:
                    yield from self.answer.add(key, content)
            mid = m.get("id") or m.get("message_id")
            if mid and str(mid) != self.answer_id:
                # Known now, so that a stopped or failed answer is saved under its Coze id.
                self.answer_id = str(mid)
                yield ev.Meta(data={"message_id": self.answer_id})
        elif kind in ("function_call", "tool_response", "tool_output"):
            yield from self._tool_message(kind, content, m.get("name"))
        elif kind == "follow_up":
            yield from self._flush_calls()
            if isinstance(content, str) and content:
                yield ev.Suggestion(content)
        # verbose (generate_answer_finish, time_capsule_recall, ...), knowledge, ack,
        # question: nothing to show; --raw has them.

    def finish(self) -> Iterator[ev.Event]:
        yield from self._start(None)
        yield from self._flush_calls()
        if self.finish_reason is None:
            if not self.done:
                raise TransportError("coze: the stream ended before the answer was complete")
            self.finish_reason = "stop"
        yield ev.Done(message_id=self.answer_id, finish_reason=self.finish_reason)


def usage_from_counts(usage: Any) -> ev.Usage | None:
    """v3 `usage{token_count, output_count, input_count}` (§2.4; `*_tokens` in one doc example)."""
    if not isinstance(usage, dict):
        return None

    def num(*keys: str) -> int | None:
        for key in keys:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and value.isdigit():
                return int(value)
        return None

    inp, out = num("input_count", "input_tokens"), num("output_count", "output_tokens")
    total = num("token_count", "total_tokens", "token")
    if total is None and inp is not None and out is not None:
        total = inp + out
    if inp is None and out is None and total is None:
        return None
    return ev.Usage(input_tokens=inp, output_tokens=out, total_tokens=total)


CHAT_EVENTS = ("conversation.chat.created", "conversation.chat.in_progress", "conversation.chat.completed",
               "conversation.chat.failed", "conversation.chat.requires_action", "conversation.chat.canceled",
               "conversation.chat.cancelled")


class V3Decoder(_Common):
    """`POST /v3/chat` stream events (§2.3) -> chatcli events."""

    def __init__(self, conversation_id: str | None = None) -> None:
        super().__init__(conversation_id)
        self.chat_id: str | None = None
        # True once the chat exists on the server (a retry would ask the question again).
        self.accepted = False

    def feed(self, event: str | None, data: str) -> Iterator[ev.Event]:
        name = event or "message"
        if name in ("done", "conversation.stream.done"):
            # done data: "[DONE]" quoted, bare, empty or a chatflow object: never decoded (§2.3).
            self.done = self.ended = True
            return
        if name == "error":
            obj = _maybe_json(data) if data.strip() else {}
            yield from self._start(None)
            if isinstance(obj, dict):
                code, msg = obj.get("code"), obj.get("msg") or obj.get("message")
            else:
                code, msg = None, obj
            raise classify(code, msg or "the stream reported an error", in_stream=True)
        if name in CHAT_EVENTS:
            chat = loads(data, name)
            if not isinstance(chat, dict):
                raise ProtocolError(f"coze: unexpected {name} data: {data[:120]!r}")
            yield from self._chat(name, chat)
        elif name in ("conversation.message.delta", "conversation.message.completed"):
            m = loads(data, name)
            if not isinstance(m, dict):
                raise ProtocolError(f"coze: unexpected {name} data: {data[:120]!r}")
            yield from self._start(m)
            complete = name.endswith("completed")
            if not complete and (m.get("type") or "answer") != "answer":
                return  # only answers stream; other types count once, when completed (§2.3)
            key = str(m.get("id") or m.get("chat_id") or "answer")
            yield from self._message(key, m, complete=complete)
        # conversation.audio.delta and unknown events are ignored (cozepy fix #250, §2.3).

    def _chat(self, name: str, chat: dict[str, Any]) -> Iterator[ev.Event]:
        yield from self._start(chat)
        if not self.accepted and chat.get("id"):
            self.accepted = True
            self.chat_id = str(chat["id"])
            conv = chat.get("conversation_id") or self.conversation_id
            meta: dict[str, Any] = {}
            if conv:
                self.conversation_id = str(conv)
                meta["conversation_id"] = self.conversation_id
                # §3.1: cancel needs both ids; the chat id is chat.created's `id`.
                meta["stop"] = {"conversation_id": self.conversation_id, "chat_id": self.chat_id}
            yield ev.Meta(data=meta)
        if name == "conversation.chat.completed":
            yield from self._flush_calls()
            usage = usage_from_counts(chat.get("usage"))
            if usage is not None:
                yield usage
            self.finish_reason = "stop"
        elif name == "conversation.chat.failed":
            err = chat.get("last_error") or {}
            code = err.get("code") if isinstance(err, dict) else None
            msg = err.get("msg") if isinstance(err, dict) else None
            raise classify(code if code else None, msg or "the chat failed", in_stream=True)
        elif name == "conversation.chat.requires_action":
            yield from self._required(chat.get("required_action"))
            self.finish_reason = "tool_call"
            self.ended = True
        elif name in ("conversation.chat.canceled", "conversation.chat.cancelled"):
            self.finish_reason = "stopped"
            self.ended = True

    def _required(self, action: Any) -> Iterator[ev.Event]:
        """The client-side tool the bot waits for (§2.4 `required_action`): one Tool each."""
        calls = []
        if isinstance(action, dict):
            sub = action.get("submit_tool_outputs") or {}
            calls = sub.get("tool_calls") or [] if isinstance(sub, dict) else []
        required = []
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            fn = call.get("function") or {}
            required.append((fn.get("name"), _maybe_json(fn.get("arguments"))))
        names = {n for n, _ in required}
        # A function_call message announcing the same tool is the same step: shown once.
        self.pending_calls = [c for c in self.pending_calls if c["name"] not in names]
        yield from self._flush_calls()
        for fname, args in required:
            yield ev.Tool(name=fname, input=args if args is not None else {}, output=None)


class V2Decoder(_Common):
    """`POST /open_api/v2/chat` stream (§1.3) and the web stream (§1.4) -> chatcli events."""

    def feed(self, event: str | None, data: str) -> Iterator[ev.Event]:
        obj: Any = None
        if data.strip():
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                if event == "error":  # the web stream's error event carries raw data (§1.4)
                    yield from self._start(None)
                    raise ProviderError(f"coze: {data.strip()[:300]}") from None
                raise ProtocolError(f"coze: malformed JSON in the stream: {data[:120]!r}") from None
        # v2 puts the event name inside the JSON; the web format on the SSE line (§1.3, §1.4).
        kind = obj["event"] if isinstance(obj, dict) and isinstance(obj.get("event"), str) else (event or "message")
        yield from self._start(obj)
        if kind == "done":
            self.done = self.ended = True
            self.finish_reason = "stop"
            return
        if kind == "error":
            info = obj.get("error_information") if isinstance(obj, dict) else None
            if not isinstance(info, dict):
                info = obj if isinstance(obj, dict) else {}
            raise classify(info.get("code"), info.get("msg") or info.get("message") or "the stream reported an error",
                           in_stream=True)
        if kind != "message" or not isinstance(obj, dict):
            return
        m = obj.get("message")
        if not isinstance(m, dict):
            return
        key = str(m.get("message_id") or f"index:{obj.get('index')}")
        if (m.get("type") or "answer") == "answer" and obj.get("is_finish"):
            yield from self._final_chunk(key, m)
        else:
            yield from self._message(key, m, complete=False)

    def _final_chunk(self, key: str, m: dict[str, Any]) -> Iterator[ev.Event]:
        """The `is_finish` chunk of an answer: empty (web), or a last piece, or the whole text."""
        content = m.get("content")
        seen = self.answer.text_of(key)
        whole = isinstance(content, str) and bool(seen) and content.startswith(seen)
        yield from self._message(key, m, complete=whole)
        usage = _web_usage(m.get("extra_info"))
        if usage is not None:
            yield usage


def _web_usage(extra: Any) -> ev.Usage | None:
    """Token counts the web format puts, as strings, in the final answer's extra_info (§1.4)."""
    if not isinstance(extra, dict) or not any(extra.get(k) for k in ("input_tokens", "output_tokens", "token")):
        return None
    return usage_from_counts({k: extra.get(k) for k in ("input_tokens", "output_tokens", "token")})
