"""chatcli.sse.iter_sse (httpx-sse's field parsing inlined, with a `data: ` fast path) gives
exactly the events httpx-sse's own SSEDecoder gives, for any input split anywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from chatcli.sse import iter_sse


def reference(chunks: list[str]) -> list[tuple[str, str, str, int | None]]:
    lines, dec, out = SSELineDecoder(), SSEDecoder(), []
    for text in chunks:
        for line in lines.decode(text) if text else []:
            sse = dec.decode(line)
            if sse is not None:
                out.append((sse.event, sse.data, sse.id, sse.retry))
    for line in lines.flush():
        sse = dec.decode(line)
        if sse is not None:
            out.append((sse.event, sse.data, sse.id, sse.retry))
    return out


def ours(chunks: list[str]) -> list[tuple[str, str, str, int | None]]:
    return [(s.event, s.data, s.id, s.retry) for s in iter_sse(chunks)]


LINES = ["data: x", "data:y", "data", "data:  two", "data: {\"a\": 1}", "data: [DONE]", "data: é", "event: delta",
         "event:", "event", "id: 7", "id:\0", "id:", "retry: 30", "retry: x", ": comment", ":", "foo: bar", "x",
         "", "", "", ""]
ENDS = ["\n", "\r", "\r\n"]


def _split(text: str, sizes: list[int]) -> list[str]:
    chunks, i, k = [], 0, 0
    while i < len(text):
        n = sizes[k % len(sizes)]
        chunks.append(text[i : i + n])
        i, k = i + n, k + 1
    return chunks


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LINES), st.sampled_from(ENDS)), max_size=30),
       st.booleans(), st.lists(st.integers(1, 12), min_size=1, max_size=8))
def test_same_events_as_httpx_sse(lines: list[tuple[str, str]], unterminated: bool, sizes: list[int]) -> None:
    text = "".join(line + end for line, end in lines) + ("data: tail" if unterminated else "")
    for chunks in (_split(text, sizes), [text], list(text)):
        assert ours(chunks) == reference(chunks), chunks


def test_known_quirks() -> None:
    for text in ("retry: 30\n\n\n\ndata: a\n\n", "id: 1\n\n\n", "data\n\n", "event: e\n\n\n",
                 "data: a\r\rdata: b\r\n\r\n", ": c\n\n"):
        assert ours([text]) == reference([text]), text
        assert ours(list(text)) == reference(list(text)), text


def test_on_line_sees_every_line() -> None:
    seen: list[str] = []
    events = list(iter_sse(["error: {\"x\":1}\r\ndata: a\n\n", "data: b"], on_line=seen.append))
    assert seen == ['error: {"x":1}', "data: a", "", "data: b"]
    assert [e.data for e in events] == ["a"]  # "b" was never closed by a blank line


def test_event_name_defaults_to_message() -> None:
    (e,) = iter_sse(["data: x\n\n"])
    assert e.event == "message" and e.data == "x"
