"""Server-sent-event framing over text chunks, on httpx-sse's own decoders.

httpx-sse frames an httpx response; chatcli also needs to frame text that does not come
from one (ChatGPT's WebSocket bodies, fuzzed byte splits in tests), so this module drives
httpx-sse's line and event decoders directly over any iterable of text or byte chunks.
Pure: no sockets here.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable, Iterator

from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

__all__ = ["ServerSentEvent", "iter_sse", "iter_text"]


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
    """
    lines = SSELineDecoder()
    decoder = SSEDecoder()
    for text in texts:
        for line in lines.decode(text):
            if on_line is not None:
                on_line(line)
            sse = decoder.decode(line)
            if sse is not None:
                yield sse
    for line in lines.flush():
        if on_line is not None:
            on_line(line)
        sse = decoder.decode(line)
        if sse is not None:
            yield sse
