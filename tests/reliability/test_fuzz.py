"""Property tests (hypothesis) on every decoder: arbitrary bytes, arbitrary chunk splits.

For each body: no exception other than chatcli.errors.ChatCliError escapes, and the
outcome (SSE events; the decoder's events and the error it ends with) never depends on
where the body was split. Bodies are raw bytes or sequences of a provider's own frames
(tests/reliability/wire.py) mixed with junk, CR/LF/CRLF line ends and multi-byte text.

Decoders of providers not yet merged are imported by a guessed name and skipped only
when their module is missing (the lead fixes the names after merging): see DECODERS.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatcli.errors import ChatCliError
from chatcli.sse import iter_sse, iter_text
from reliability.wire import WIRES

EXAMPLES = int(os.environ.get("CHATCLI_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# provider -> [(module, class name)], first found wins (names as on the providers' branches).
DECODERS = {
    "openai": [("chatcli.providers.openai", "OpenAIDecoder")],
    "dify": [("chatcli.providers.dify.decoder", "DifyDecoder"), ("chatcli.providers.dify", "DifyDecoder")],
    "coze": [("chatcli.providers.coze.decoder", "V3Decoder"), ("chatcli.providers.coze", "CozeDecoder")],
    "chatgpt": [("chatcli.providers.chatgpt.legacy", "SSEDecoder"), ("chatcli.providers.chatgpt.legacy",
                                                                       "LegacyDecoder")],
}
# Constructor arguments a decoder needs.
DECODER_ARGS: dict[str, dict[str, Any]] = {
    "dify": {"user": "chatcli"},
}


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    out, prev = [], 0
    for p in points:
        out.append(body[prev:p])
        prev = p
    out.append(body[prev:])
    return out


def frames(chunks: list[bytes]) -> list[tuple[str, str, str, int | None]]:
    return [(e.event, e.data, e.id, e.retry) for e in iter_sse(iter_text(chunks))]


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
cuts = st.lists(st.integers(min_value=0, max_value=10**6), max_size=12)
line_ends = st.sampled_from([b"\n", b"\r\n", b"\r"])
junk = st.sampled_from([b": keep-alive", b"event: ping", b"data: 2024-04-27 12:34:56.123456", b"retry: 10",
                        b"id: 7", b"data:", b"data: [DONE]", b"data: {", b"\xff\xfe", b"data: \xe6\x9d", b"error: {}",
                        "data: 日本語".encode()])


def _body_for(provider: str):
    wire = WIRES[provider]

    @st.composite
    def body(draw: Any) -> bytes:
        out = b""
        if draw(st.booleans()):
            out += wire.preamble()
        so_far = ""
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(["delta", "delta", "junk", "malformed", "ending", "raw"]))
            if kind == "delta":
                t = draw(texts)
                so_far += t
                out += wire.delta(so_far if wire.cumulative else t)
            elif kind == "junk":
                out += draw(junk) + draw(line_ends) + (draw(line_ends) if draw(st.booleans()) else b"")
            elif kind == "malformed":
                out += wire.malformed
            elif kind == "ending":
                out += wire.ending(so_far)
            else:
                out += draw(st.binary(max_size=24))
        if draw(st.booleans()):
            out = out.replace(b"\n", draw(line_ends))
        return out

    return body()


# ----- SSE framing -----------------------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=300), cut=cuts)
def test_iter_sse_split_invariance_on_arbitrary_bytes(body: bytes, cut: list[int]) -> None:
    assert frames(split(body, cut)) == frames([body])


@FUZZ
@given(body=st.one_of(*[_body_for(p) for p in WIRES]), cut=cuts)
def test_iter_sse_split_invariance_on_provider_frames(body: bytes, cut: list[int]) -> None:
    assert frames(split(body, cut)) == frames([body])


no_cr = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), min_size=1,
                max_size=12)


@FUZZ
@given(parts=st.lists(no_cr, max_size=6), cut=cuts)
def test_iter_sse_keeps_every_data_line(parts: list[str], cut: list[int]) -> None:
    """Multi-line data, any Unicode (U+2028, U+0085, NUL...): exactly what was framed."""
    from loopback import sse_frame

    body = b"".join(sse_frame(p) for p in parts)
    assert [d for _, d, _, _ in frames(split(body, cut))] == parts


# ----- decoders ------------------------------------------------------------------------------------


def _decoder_class(provider: str) -> Any:
    package = WIRES[provider].module
    if importlib.util.find_spec(package) is None:
        pytest.fail(f"{package} is missing: every provider is part of chatcli")
    for module, name in DECODERS[provider]:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        if hasattr(mod, name):
            import functools

            return functools.partial(getattr(mod, name), **DECODER_ARGS.get(provider, {}))  # type: ignore
    pytest.fail(f"none of the decoders {DECODERS[provider]} exists: update DECODERS in {__file__}")


def decode(cls: Any, chunks: list[bytes]) -> tuple[list[tuple[str, Any]], str | None]:
    """Run a body through iter_sse and a decoder: its events and the error it ended with."""
    decoder = cls()
    params = len(inspect.signature(decoder.feed).parameters)
    out: list[tuple[str, Any]] = []

    def take(events: Any) -> None:
        for e in events or ():
            out.append((e.type, getattr(e, "text", None)))

    try:
        for sse in iter_sse(iter_text(chunks)):
            take(decoder.feed(sse.data) if params == 1 else decoder.feed(sse.event, sse.data))
            if getattr(decoder, "done", False) is True:  # OpenAIDecoder: [DONE] seen
                break
        if hasattr(decoder, "finish"):
            take(decoder.finish())
        if callable(getattr(decoder, "done", None)):  # DifyDecoder: done() gives the Done
            take([decoder.done()])
    except ChatCliError as exc:
        return out, f"{type(exc).__name__}: {exc.message}"
    return out, None


def _deltas(events: list[tuple[str, Any]]) -> str:
    text = ""
    for kind, t in events:
        if kind == "delta":
            text += t
        elif kind == "replace":
            text = t
    return text


@pytest.mark.parametrize("provider", list(DECODERS))
def test_decoder_split_invariance(provider: str) -> None:
    cls = _decoder_class(provider)

    @FUZZ
    @given(body=st.one_of(_body_for(provider), st.binary(max_size=200)), cut=cuts)
    def check(body: bytes, cut: list[int]) -> None:
        whole = decode(cls, [body])
        parts = decode(cls, split(body, cut))
        assert parts == whole
        assert _deltas(parts[0]) == _deltas(whole[0])

    check()


@pytest.mark.parametrize("provider", list(DECODERS))
def test_decoder_good_answer_is_exact(provider: str) -> None:
    cls = _decoder_class(provider)
    wire = WIRES[provider]

    @FUZZ
    @given(parts=st.lists(texts, min_size=1, max_size=6), cut=cuts)
    def check(parts: list[str], cut: list[int]) -> None:
        events, error = decode(cls, split(wire.answer(parts), cut))
        assert error is None, error
        assert _deltas(events) == "".join(parts)
        assert [k for k, _ in events].count("done") <= 1

    check()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["choices", "delta", "content", "index", "finish_reason", "tool_calls", "function", "name",
                         "arguments", "usage", "error", "message", "id", "model", "reasoning_content", "role",
                         "function_call", "prompt_tokens", "code", "type", "answer", "event", "data", "parts",
                         "conversation_id", "status", "msg", "content_type", "author"]),
        children, max_size=4),
    max_leaves=12,
)


EXTRA_TEMPLATES = {
    "openai": [
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {
            "name": "f", "arguments": "{}"}}]}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"function_call": {"name": "f", "arguments": "{"}},
                      "finish_reason": "function_call"}]},
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
        {"error": {"message": "m", "type": "t", "code": 429}},
    ],
}


def _templates(provider: str) -> list[tuple[bytes, Any]]:
    """(the frame's text before `data:`, its JSON) for every frame of a good answer."""
    import orjson

    wire = WIRES[provider]
    out = []
    for block in wire.answer(["a", "b"]).split(b"\n\n"):
        if b"data:" not in block:
            continue
        head, data = block.split(b"data:", 1)
        try:
            out.append((head, orjson.loads(data)))
        except orjson.JSONDecodeError:
            continue
    head = out[0][0] if out else b""
    out += [(head, t) for t in EXTRA_TEMPLATES.get(provider, [])]
    return out


def _mutated(value: Any):
    """Strategy: `value` with any part of it possibly replaced by arbitrary JSON."""
    if isinstance(value, dict):
        inner = st.fixed_dictionaries({k: _mutated(v) for k, v in value.items()})
    elif isinstance(value, list):
        inner = st.tuples(*[_mutated(v) for v in value]).map(list) if value else st.just([])
    else:
        inner = st.just(value)
    return st.one_of(inner, inner, inner, json_values)


@pytest.mark.parametrize("provider", list(DECODERS))
def test_decoder_survives_any_json_shape(provider: str) -> None:
    """Well-formed JSON of the wrong shape (a string where an object was expected, an
    index that is not a number...): a ChatCliError or events, never another exception."""
    import orjson

    cls = _decoder_class(provider)
    templates = _templates(provider)
    frames_st = st.sampled_from(templates).flatmap(lambda t: _mutated(t[1]).map(lambda v: (t[0], v)))

    @FUZZ
    @given(chosen=st.lists(frames_st, min_size=1, max_size=5))
    def check(chosen: list[tuple[bytes, Any]]) -> None:
        body = b"".join(head + b"data: " + orjson.dumps(v) + b"\n\n" for head, v in chosen)
        decode(cls, [body])  # raises only if something other than ChatCliError escapes

    check()
