"""Pure tests of the openai provider's decoder (no sockets): openai_compat.md §3-§6."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from chatcli import events as ev
from chatcli.errors import AuthError, NotFound, ProtocolError, ProviderError, RateLimited, TransportError
from chatcli.providers import _http
from chatcli.providers.openai import OpenAIDecoder, build_messages, iter_events, map_finish
from chatcli.providers.base import Turn
from conftest import transcript

STREAMS = ["stream_llamacpp_reasoning.sse", "stream_ollama.sse", "stream_openai_with_usage.sse",
           "stream_tool_calls.sse"]


def decode(texts, wire=None):
    """All events of a stream, finish() included; raises what the decoder raises."""
    dec = OpenAIDecoder()
    out = list(iter_events(texts, dec, wire))
    out.extend(dec.finish())
    return out


def decode_until_error(texts):
    """(events before the error, the error)."""
    dec = OpenAIDecoder()
    out: list = []
    try:
        for e in iter_events(texts, dec):
            out.append(e)
        out.extend(dec.finish())
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return out, exc
    return out, None


def data_lines(*objs, done=True):
    text = "".join(f"data: {json.dumps(o)}\n\n" for o in objs)
    return text + ("data: [DONE]\n\n" if done else "")


def delta(**d):
    return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}


def finish(reason="stop", **extra):
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}], **extra}


def texts_of(events, kind):
    return "".join(e.text for e in events if e.type == kind)


# ----- reasoning ---------------------------------------------------------------------


def test_reasoning_content_and_reasoning_both_read():
    events = decode([data_lines(delta(role="assistant", content=None, reasoning_content=""),
                                delta(content=None, reasoning_content="DeepSeek thinks"),
                                delta(reasoning=" vLLM/Ollama think"),
                                delta(content="42", reasoning_content=None),
                                finish())])
    assert texts_of(events, "reasoning") == "DeepSeek thinks vLLM/Ollama think"
    assert texts_of(events, "delta") == "42"
    assert events[-1] == ev.Done(finish_reason="stop")


def test_reasoning_and_content_in_one_chunk_keep_order():
    events = decode([data_lines(delta(reasoning="r", content="c"), finish())])
    assert [e.type for e in events] == ["reasoning", "delta", "done"]


def test_reasoning_never_mixed_into_delta_llamacpp_transcript():
    events = decode([transcript("openai", "stream_llamacpp_reasoning.sse").decode()])
    assert texts_of(events, "reasoning") == "Simple arithmetic."
    assert texts_of(events, "delta") == "17 × 3 = 51."


# ----- tool calls ----------------------------------------------------------------------


def test_tool_call_fragments_accumulate_per_index():
    events = decode([transcript("openai", "stream_tool_calls.sse").decode()])
    tools = [e for e in events if e.type == "tool"]
    assert tools == [ev.Tool(name="get_weather", input={"city": "Paris"}, output=None)]
    assert events[-1].finish_reason == "tool_call"


def test_two_parallel_tool_calls_and_ollama_whole_call():
    call0 = {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":'}}
    call1 = {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}
    events = decode([data_lines(delta(tool_calls=[call0, call1]),
                                delta(tool_calls=[{"index": 1, "function": {"arguments": '{"y":2}'}}]),
                                delta(tool_calls=[{"index": 0, "function": {"arguments": "1}"}}]),
                                finish("tool_calls"))])
    assert [e for e in events if e.type == "tool"] == [ev.Tool(name="f", input={"x": 1}),
                                                       ev.Tool(name="g", input={"y": 2})]
    # Ollama: each call whole in one chunk, arguments possibly an object.
    events = decode([data_lines(delta(tool_calls=[{"index": 0, "function": {"name": "h", "arguments": {"z": 3}}}]),
                                finish("tool_calls"))])
    assert [e for e in events if e.type == "tool"] == [ev.Tool(name="h", input={"z": 3})]


def test_tool_call_with_unparsable_arguments_keeps_the_text():
    events = decode([data_lines(delta(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": "{oops"}}]),
                                finish("tool_calls"))])
    assert [e for e in events if e.type == "tool"] == [ev.Tool(name="f", input="{oops")]


def test_deprecated_function_call():
    events = decode([data_lines(delta(function_call={"name": "f", "arguments": "{}"}), finish("function_call"))])
    assert [e.type for e in events] == ["tool", "done"]
    assert events[-1].finish_reason == "tool_call"


# ----- usage ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["choices_empty", "deepseek_final_chunk", "every_chunk"])
def test_usage_wherever_it_appears_last_one_wins(where):
    u1 = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    u2 = {"prompt_tokens": 14, "completion_tokens": 22, "total_tokens": 36}
    if where == "choices_empty":
        objs = [delta(content="a"), finish(), {"choices": [], "usage": u2}]
    elif where == "deepseek_final_chunk":
        objs = [delta(content="a", usage=None), finish(usage=u2)]
        objs[0]["usage"] = None
    else:  # vLLM continuous_usage_stats
        objs = [dict(delta(content="a"), usage=u1), dict(finish(), usage=u2)]
    events = decode([data_lines(*objs)])
    usage = [e for e in events if e.type == "usage"]
    assert usage == [ev.Usage(input_tokens=14, output_tokens=22, total_tokens=36)]
    assert [e.type for e in events][-2:] == ["usage", "done"]


def test_usage_without_total_is_summed_and_null_usage_ignored():
    events = decode([data_lines(dict(delta(content="a"), usage=None),
                                {"choices": [], "usage": {"prompt_tokens": 15, "completion_tokens": 34}})])
    assert [e for e in events if e.type == "usage"] == [ev.Usage(input_tokens=15, output_tokens=34, total_tokens=49)]


def test_no_usage_no_usage_event():
    events = decode([data_lines(delta(content="a"), finish())])
    assert [e.type for e in events] == ["delta", "done"]


# ----- in-stream errors ------------------------------------------------------------------


def test_vllm_error_then_done_is_an_error():
    events, exc = decode_until_error([transcript("openai", "stream_error_vllm.sse").decode()])
    assert texts_of(events, "delta") == "Once upon"
    assert type(exc) is ProviderError and exc.code == "provider"
    assert "Engine core encountered an issue" in exc.message


def test_llamacpp_error_without_done():
    events, exc = decode_until_error([transcript("openai", "stream_error_llamacpp.sse").decode()])
    assert texts_of(events, "delta") == "The answer"
    assert type(exc) is ProviderError and "KV size" in exc.message and "server_error" in exc.message


def test_old_llamacpp_error_line_before_done():
    # openai_compat.md §6.2: `error:` is not an SSE field; httpx-sse drops it, we must not.
    text = (data_lines(delta(content="Once upon"), done=False)
            + 'error: {"code":500,"message":"Context size has been exceeded.","type":"server_error"}\n\n'
            + "data: [DONE]\n\n")
    seen = []
    dec = OpenAIDecoder()
    with pytest.raises(ProviderError, match="Context size has been exceeded"):
        for e in iter_events([text], dec, wire=lambda name, data: seen.append((name, data))):
            assert e.type == "delta"
    assert seen[-1] == ("error", {"code": 500, "message": "Context size has been exceeded.", "type": "server_error"})


def test_error_line_with_plain_text():
    _, exc = decode_until_error(["error: out of memory\n\n"])
    assert isinstance(exc, ProviderError) and "out of memory" in exc.message


def test_litellm_error_with_string_code_429_is_a_rate_limit():
    events, exc = decode_until_error([transcript("openai", "stream_error_litellm.sse").decode()])
    assert texts_of(events, "delta") == "Sure"
    assert isinstance(exc, RateLimited) and exc.exit_code == 4 and exc.retryable


def test_ollama_truncated_stream_is_a_network_error():
    events, exc = decode_until_error([transcript("openai", "stream_truncated_ollama.sse").decode()])
    assert texts_of(events, "delta") == "Hel"
    assert type(exc) is TransportError and exc.code == "network"


def test_error_string_and_error_with_choices():
    _, exc = decode_until_error([data_lines({"error": "model crashed"})])
    assert isinstance(exc, ProviderError) and "model crashed" in exc.message
    # `error` wins even when `choices` is there too (openai-python raises on any truthy error).
    _, exc = decode_until_error([data_lines(dict(delta(content="x"), error={"message": "boom"}))])
    assert isinstance(exc, ProviderError) and "boom" in exc.message


def test_bare_json_error_line_on_an_event_stream():
    _, exc = decode_until_error(['{"error": {"message": "upstream gone", "code": 502}}\n'])
    assert isinstance(exc, ProviderError) and "upstream gone" in exc.message


def test_malformed_json_is_a_protocol_error():
    _, exc = decode_until_error(['data: {"choices": [{"delta": {"content": "a"\n\ndata: [DONE]\n\n'])
    assert type(exc) is ProtocolError and exc.exit_code == 6


def test_non_object_json_is_a_protocol_error():
    _, exc = decode_until_error(["data: [1, 2]\n\n"])
    assert type(exc) is ProtocolError


# ----- endings ---------------------------------------------------------------------------


def test_end_without_done_but_with_finish_reason_is_accepted():
    events = decode([data_lines(delta(content="ok"), finish("length"), done=False)])
    assert events[-1] == ev.Done(finish_reason="length")


def test_end_without_done_and_without_finish_reason_is_cut_off():
    _, exc = decode_until_error([data_lines(delta(content="partial"), done=False)])
    assert type(exc) is TransportError and not exc.retryable


def test_empty_stream_is_cut_off():
    _, exc = decode_until_error([""])
    assert type(exc) is TransportError


def test_done_prefix_and_whitespace():
    events = decode(["data: " + json.dumps(delta(content="a")) + "\n\ndata: [DONE] \n\n"])
    assert events[-1].type == "done"
    # Nothing after [DONE] is read.
    events = decode(["data: [DONE]\n\ndata: {broken\n\n"])
    assert [e.type for e in events] == ["done"]


def test_content_null_empty_and_missing_delta_and_other_choices():
    events = decode([data_lines({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]},
                                {"choices": [{"index": 0}]},
                                {"choices": [{"index": 0, "delta": {"content": ""}}]},
                                {"choices": [{"index": 1, "delta": {"content": "second choice"}}]},
                                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "x"}}]},
                                finish())])
    assert texts_of(events, "delta") == "x"


def test_finish_reason_with_content_in_the_same_chunk():
    events = decode([data_lines({"choices": [{"index": 0, "delta": {"content": "end."}, "finish_reason": "stop",
                                              "stop_reason": None}]})])
    assert [e.type for e in events] == ["delta", "done"]


@pytest.mark.parametrize(("wire", "mapped"), [(None, "stop"), ("stop", "stop"), ("length", "length"),
                                             ("tool_calls", "tool_call"), ("function_call", "tool_call"),
                                             ("content_filter", "content_filter"), ("eos", "stop")])
def test_map_finish(wire, mapped):
    assert map_finish(wire) == mapped


def test_comments_crlf_data_without_space_and_retry_field():
    text = (": keep-alive\r\n\r\n: OPENROUTER PROCESSING\r\n\r\nretry:0\r\n"
            + 'data:{"choices":[{"index":0,"delta":{"content":"a\\u00e9"}}]}\r\n\r\n'
            + 'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\ndata: [DONE]\r\n\r\n')
    events = decode([text])
    assert texts_of(events, "delta") == "aé"


@settings(max_examples=60, deadline=None)
@given(name=hs.sampled_from(STREAMS), cuts=hs.lists(hs.integers(min_value=0, max_value=4000), max_size=40),
       crlf=hs.booleans())
def test_any_split_of_any_transcript_gives_the_same_events(name, cuts, crlf):
    from chatcli.sse import iter_text

    raw = transcript("openai", name)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    whole = decode([raw.decode()])
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert decode(iter_text(pieces)) == whole


# ----- HTTP error bodies (every shape, openai_compat.md §6.1) ------------------------------


@pytest.mark.parametrize(("name", "cls", "needle"), [
    ("http_error_openai_401.json", AuthError, "Incorrect API key provided"),
    ("http_error_dashscope_401.json", AuthError, "Incorrect API key provided"),
    ("http_error_litellm_429.json", RateLimited, "Rate limit reached"),
    ("http_error_llamacpp_400_context.json", ProviderError, "exceeds the available context size"),
    ("http_error_ollama_404.json", NotFound, 'model "llama9" not found'),
    ("http_error_vllm_404.json", NotFound, "The model `gpt-4o` does not exist."),
    ("http_error_vllm_legacy_400.json", ProviderError, "maximum context length is 4096 tokens"),
])
def test_http_error_transcripts(name, cls, needle):
    from loopback.openai import status_of

    status = status_of(name)
    exc = _http.error_for_status(status, {"content-type": "application/json"}, transcript("openai", name),
                                 provider="openai")
    assert type(exc) is cls and exc.status == status
    assert needle in exc.message and exc.message.startswith(f"openai: HTTP {status}: ")


@pytest.mark.parametrize(("body", "ctype", "message", "code"), [
    (b'{"error":{"message":"m","type":"t","code":"invalid_api_key"}}', "application/json", "m", "invalid_api_key"),
    (b'{"object":"error","message":"flat","code":400}', "application/json", "flat", 400),
    (b'{"error":{"message":"n","code":404}}', "application/json", "n", 404),
    (b'{"error":{"message":"s","code":"429"}}', "application/json", "s", "429"),
    (b'{"error":{"message":"nul","code":null,"type":"api_error"}}', "application/json", "nul", "api_error"),
    (b'{"error":"plain string error"}', "application/json", "plain string error", None),
    (b'{"detail":"Not authenticated"}', "application/json", "Not authenticated", None),
    (b'{"detail":[{"msg":"field required"}]}', "application/json", "field required", None),
    (b"Internal Server Error", "text/plain", "Internal Server Error", None),
    (b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "text/html",
     "an HTML page (502 Bad Gateway)", None),
    (b"<!DOCTYPE html><html><body>no title</body></html>", "", "an HTML page", None),
    (b"{not json", "application/json", "{not json", None),
    (b"", "", None, None),
])
def test_parse_error_body_shapes(body, ctype, message, code):
    got_message, got_code, _ = _http.parse_error_body(body, ctype)
    assert (got_message, got_code) == (message, code)


@pytest.mark.parametrize(("status", "cls", "exit_code", "retryable"), [
    (400, ProviderError, 6, False), (401, AuthError, 3, False), (403, AuthError, 3, False),
    (404, NotFound, 6, False), (408, ProviderError, 6, True), (422, ProviderError, 6, False),
    (429, RateLimited, 4, True), (500, ProviderError, 6, True), (502, ProviderError, 6, True),
    (503, ProviderError, 6, True), (504, ProviderError, 6, True), (501, ProviderError, 6, False),
])
def test_status_classes(status, cls, exit_code, retryable):
    exc = _http.error_for_status(status, {}, b"<html><title>x</title></html>", provider="openai")
    assert type(exc) is cls and exc.exit_code == exit_code and exc.retryable == retryable


def test_retry_after_forms():
    assert _http.retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert _http.retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert _http.retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"},
                                     now=1445412480.0) == 10.0
    assert _http.retry_after_seconds({"Retry-After": "soon"}) is None
    assert _http.retry_after_seconds({}) is None


# ----- request building ---------------------------------------------------------------


def test_build_messages_history_and_system():
    history = [{"role": "user", "text": "q1"}, {"role": "assistant", "text": "a1"},
               {"role": "user", "text": "q2"}, {"role": "assistant", "text": ""}]
    msgs = build_messages(Turn(prompt=" q3 ", history=history), "be terse")
    assert msgs == [{"role": "system", "content": "be terse"}, {"role": "user", "content": "q1"},
                    {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
                    {"role": "user", "content": " q3 "}]
