"""Server-sent-event framing over text chunks, on httpx-sse's own decoders.

httpx-sse frames an httpx response; chatcli also needs to frame text that does not come
from one (ChatGPT's WebSocket bodies, fuzzed byte splits in tests), so this module drives
httpx-sse's line and event decoders directly over any iterable of text or byte chunks.
Pure: no sockets here.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSELineDecoder

from chatcli.errors import ProtocolError

__all__ = ["ServerSentEvent", "iter_sse", "iter_text", "json_object"]


def json_object(data: str, provider: str) -> dict[str, Any]:
    """An event's `data` as a JSON object; ProtocolError (exit 6) for anything else."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ProtocolError(f"{provider}: malformed JSON in the stream: {data[:120]!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{provider}: unexpected stream data: {data[:120]!r}")
    return obj


def iter_text(chunks: Iterable[bytes]) -> Iterator[str]:
    """Decode UTF-8 byte chunks incrementally: a character split across chunks is kept whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def iter_sse(
    texts: Iterable[str],
    *,
    on_line: Callable[[str], None] | None = None,
) -> Iterator[ServerSentEvent]:
    """Frame SSE events from text chunks split anywhere (CR, LF or CRLF line ends).

    `on_line` sees every line before framing, for providers that send non-SSE lines
    (old llama.cpp servers write `error: {...}`). An event not closed by a blank line
    before the end of the stream is dropped, as the SSE specification says.

    Lines come from httpx-sse's SSELineDecoder; the field parsing is httpx-sse's
    SSEDecoder.decode inlined (same rules, same quirks: `id` is not reset, so a blank line
    after one dispatches), with a fast path for `data: ` lines. That per-line method call
    was the largest cost of framing (tests/bench/run.py); tests/test_sse_fastpath.py checks
    both give the same events for any input and any split.
    """
    lines = SSELineDecoder()
    event = ""
    data: list[str] = []
    last_id = ""
    retry: int | None = None
    for batch in _line_batches(texts, lines):
        for line in batch:
            if on_line is not None:
                on_line(line)
            if not line:
                if event or data or last_id or retry is not None:
                    yield ServerSentEvent(event=event, data="\n".join(data), id=last_id, retry=retry)
                    event, data, retry = "", [], None
                continue
            if line[:6] == "data: ":
                data.append(line[6:])
                continue
            if line[0] == ":":
                continue
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                if "\0" not in value:
                    last_id = value
            elif name == "retry":
                try:
                    retry = int(value)
                except (TypeError, ValueError):
                    pass


def _line_batches(texts: Iterable[str], lines: SSELineDecoder) -> Iterator[list[str]]:
    for text in texts:
        if text:
            yield lines.decode(text)
    yield lines.flush()
