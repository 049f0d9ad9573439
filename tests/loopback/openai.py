"""A fake OpenAI-compatible server (`/v1/chat/completions`, `/v1/models`) on real sockets.

It replays the shared transcripts (shared/transcripts/openai/): `stream_*.sse` as chunked
event streams split at awkward places (inside multi-byte UTF-8 characters), optionally
with CRLF line ends and `: keep-alive` comments between events (DeepSeek sends those,
openai_compat.md §2); `http_error_*.json` as HTTP error responses with the status in the
file name; `models_*.json` on `/v1/models`. Every request is recorded (`fake.chats` are
the parsed chat-completion bodies), so tests check what chatcli sent and how often.

Behaviours are queued per request with `fake.push(...)`; when the queue is empty the
`default` behaviour answers (a short streamed answer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from loopback import ClientGone, Exchange, LoopbackServer

Behaviour = Callable[[Exchange], None]

# Piece sizes cycled by write_split: 1- and 2-byte pieces cut every multi-byte character.
AWKWARD = (1, 2, 3, 5, 1, 7, 11, 2, 13)
KEEPALIVE = b": keep-alive\n\n"


def status_of(name: str) -> int:
    """http_error_vllm_404.json -> 404."""
    m = re.search(r"_(\d{3})(?:_|\.)", name)
    if not m:
        raise ValueError(f"no HTTP status in {name}")
    return int(m.group(1))


def reshape(sse: bytes, *, crlf: bool = False, keepalive: bool = False) -> bytes:
    """Re-frame an SSE transcript: CRLF line ends and/or keep-alive comments between events."""
    text = sse.replace(b"\r\n", b"\n")
    if keepalive:
        events = [e for e in text.split(b"\n\n") if e.strip()]
        text = KEEPALIVE + b"".join(e + b"\n\n" + KEEPALIVE for e in events)
    if crlf:
        text = text.replace(b"\n", b"\r\n")
    return text


def chunk(content: str | None = None, *, finish: str | None = None, role: bool = False,
          reasoning: str | None = None, cid: str = "chatcmpl-fake", model: str = "fake-model",
          usage: dict[str, int] | None = None, choices: bool = True) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    obj: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": 1748000000, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
    if usage is not None:
        obj["usage"] = usage
    return obj


def frames(objs: Iterable[Any], *, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(o, ensure_ascii=False).encode() + b"\n\n" for o in objs)
    return out + (b"data: [DONE]\n\n" if done else b"")


def answer_sse(pieces: Iterable[str], *, finish: str = "stop", usage: bool = True, done: bool = True) -> bytes:
    """A well-formed OpenAI stream answering `pieces` (role chunk, deltas, finish, usage, [DONE])."""
    pieces = list(pieces)
    objs: list[Any] = [chunk("", role=True)] + [chunk(p) for p in pieces] + [chunk(finish=finish)]
    if usage:
        objs.append(chunk(choices=False, usage={"prompt_tokens": 7, "completion_tokens": len(pieces),
                                                 "total_tokens": 7 + len(pieces)}))
    return frames(objs, done=done)


# ----- behaviours ----------------------------------------------------------------------


def stream(body: bytes, *, sizes: Iterable[int] | int = AWKWARD, crlf: bool = False, keepalive: bool = False,
           content_type: str = "text/event-stream", headers: dict[str, str] | None = None,
           delay: float = 0.0) -> Behaviour:
    data = reshape(body, crlf=crlf, keepalive=keepalive)
    sizes = tuple(sizes) if not isinstance(sizes, int) else sizes

    def run(ex: Exchange) -> None:
        ex.start(200, headers, content_type)
        ex.write_split(data, sizes, delay)

    return run


def answer(*pieces: str, **kw: Any) -> Behaviour:
    opts = {k: kw.pop(k) for k in ("finish", "usage", "done") if k in kw}
    return stream(answer_sse(pieces, **opts), **kw)


def http_error(status: int, body: bytes | str | Any, *, content_type: str | None = None,
               headers: dict[str, str] | None = None) -> Behaviour:
    def run(ex: Exchange) -> None:
        ex.send(status, body, headers, content_type or ("application/json" if _looks_json(body) else None))

    return run


def cut_after(body: bytes, *, sizes: Iterable[int] | int = AWKWARD) -> Behaviour:
    """Stream `body` and then drop the connection without ending the chunked body."""

    def run(ex: Exchange) -> None:
        ex.start(200)
        ex.write_split(body, sizes)
        ex.drop()

    return run


def stall_after(body: bytes, seconds: float = 30.0) -> Behaviour:
    """Stream `body`, then say nothing for `seconds` (or until the client hangs up)."""

    def run(ex: Exchange) -> None:
        ex.start(200)
        ex.write(body)
        if ex.sleep_or_gone(seconds):
            raise ClientGone()

    return run


def slow_answer(pieces: Iterable[str], gap: float, started: Callable[[], None] | None = None) -> Behaviour:
    """One delta every `gap` seconds (a long answer for stop/Ctrl-C/kill tests)."""
    pieces = list(pieces)

    def run(ex: Exchange) -> None:
        ex.start(200)
        ex.write(frames([chunk("", role=True)], done=False))
        for p in pieces:
            ex.write(frames([chunk(p)], done=False))
            if started is not None:
                started()
            if ex.sleep_or_gone(gap):
                raise ClientGone()
        ex.write(frames([chunk(finish="stop")]))

    return run


def _looks_json(body: Any) -> bool:
    if not isinstance(body, (bytes, str)):
        return True
    head = (body.decode("utf-8", "replace") if isinstance(body, bytes) else body).lstrip()[:1]
    return head in ("{", "[")


class FakeOpenAI:
    """Routes on a LoopbackServer; `base_url` is what chatcli's --base-url gets."""

    def __init__(self, srv: LoopbackServer, prefix: str = "/v1", models: bytes | None = None) -> None:
        self.srv = srv
        self.prefix = prefix
        self.queue: list[Behaviour] = []
        self.default: Behaviour = answer("Hello", " from", " the fake.")
        self.models_body = models or json.dumps({"object": "list", "data": [{"id": "fake-model",
                                                                             "object": "model"}]}).encode()
        srv.route("POST", prefix + "/chat/completions", self._chat)
        srv.route("GET", prefix + "/models", self._models)

    @property
    def base_url(self) -> str:
        return self.srv.url + self.prefix

    def push(self, *behaviours: Behaviour) -> FakeOpenAI:
        self.queue.extend(behaviours)
        return self

    def _chat(self, ex: Exchange) -> None:
        behaviour = self.queue.pop(0) if self.queue else self.default
        behaviour(ex)

    def _models(self, ex: Exchange) -> None:
        ex.send(200, self.models_body, content_type="application/json")

    @property
    def chat_requests(self) -> list[Exchange]:
        return self.srv.requests_to(self.prefix + "/chat/completions", "POST")

    @property
    def chats(self) -> list[Any]:
        """The JSON bodies chatcli POSTed, in order."""
        return [r.json for r in self.chat_requests]
