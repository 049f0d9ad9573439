"""The legacy SSE encoding (spec §5): every `data:` line is a whole message snapshot.

`LegacyDecoder.feed(event, data)` takes one SSE event (name, data string) and yields
chatcli events; `[DONE]` ends the stream; keep-alive payloads (`data: 2024-04-27 12:34:56`)
and anything else that is not JSON are ignored (spec §5.1). Pure: no sockets.
`SSEDecoder` picks the encoding by sniffing: an `event: delta_encoding` (or any `delta`
event) switches to the v1 decoder (spec §3.4, §6.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from chatcli import events as ev
from chatcli.providers.chatgpt.answer import AnswerState


def parse(data: str) -> Any:
    """JSON payload, or the raw string for `[DONE]`, keep-alives and garbage."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data


class LegacyDecoder:
    def __init__(self, state: AnswerState | None = None) -> None:
        self.state = state or AnswerState()

    def feed(self, event: str | None, data: str) -> Iterator[ev.Event]:
        yield from self.feed_parsed(event, parse(data) if data[:1] in "{[\"" else data)

    def feed_parsed(self, event: str | None, obj: Any) -> Iterator[ev.Event]:
        state = self.state
        if isinstance(obj, str):
            if obj.strip() == "[DONE]":
                state.complete = True
            return  # keep-alive timestamps, "v1", ...
        if not isinstance(obj, dict):
            return
        # Spec §5.4: error, typed event, moderation, message snapshot, in that order.
        if obj.get("error") and obj.get("message") is None:
            yield from state.document(obj)  # raises
        if isinstance(obj.get("type"), str) and "message" not in obj:
            yield from state.typed(obj)
            return
        if "moderation_response" in obj:
            yield from state.conversation(obj.get("conversation_id"))
            yield from state.moderation(obj)
            return
        yield from state.document(obj)


class SSEDecoder:
    """One answer's SSE events, legacy or delta v1, whichever the server chose."""

    def __init__(self) -> None:
        self.state = AnswerState()
        self.legacy = LegacyDecoder(self.state)
        self.v1: Any = None
        self.encoding = "legacy"

    @property
    def complete(self) -> bool:
        return self.state.complete

    def feed(self, event: str | None, data: str) -> Iterator[ev.Event]:
        # Not a generator itself: the v1 decoder's generator is handed on directly (one
        # generator layer less per frame on the hot path).
        v1 = self.v1
        if v1 is None and event in ("delta_encoding", "delta"):
            from chatcli.providers.chatgpt.v1 import V1Decoder

            v1 = self.v1 = V1Decoder(self.state)
            self.encoding = "v1"
        if v1 is not None:
            return v1.feed(event, data)
        return self.legacy.feed(event, data)

    def finish(self) -> Iterator[ev.Event]:
        if self.v1 is not None:
            return self.v1.finish()  # writes the fast path's pending text first
        return self.state.finish()
