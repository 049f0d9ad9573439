"""Pure tests of the Coze decoders and error codes (no sockets): shared/protocols/coze.md."""

from __future__ import annotations

import json

import pytest
from conftest import transcript
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcli import events as ev
from chatcli.errors import AuthError, NotFound, ProtocolError, ProviderError, RateLimited, TransportError
from chatcli.providers.coze.codes import classify
from chatcli.providers.coze.decoder import ANSWER_SEPARATOR, V2Decoder, V3Decoder
from chatcli.sse import iter_sse, iter_text

CONV, CHAT, MSG = "7519876543210980001", "7519876543210987654", "7519876543300000311"


def run(decoder, body: bytes, chunks: list[bytes] | None = None, finish: bool = True) -> list:
    out = []
    for sse in iter_sse(iter_text(chunks if chunks is not None else [body])):
        out.extend(decoder.feed(sse.event, sse.data))
        if decoder.ended:
            break
    if finish:
        out.extend(decoder.finish())
    return out


def shown(events: list) -> list:
    return [e for e in events if not isinstance(e, ev.Meta)]


def answer_of(events: list) -> str:
    text = ""
    for e in events:
        if isinstance(e, ev.Delta):
            text += e.text
        elif isinstance(e, ev.Replace):
            text = e.text
    return text


def frame(event: str, data) -> bytes:
    return f"event:{event}\ndata:{data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n".encode()


def chat(status: str, **kw) -> dict:
    return {"id": CHAT, "conversation_id": CONV, "bot_id": "1", "status": status,
            "last_error": {"code": 0, "msg": ""}, "usage": {"token_count": 0, "output_count": 0, "input_count": 0},
            **kw}


def msg(kind: str = "answer", content: str = "", mid: str = MSG, **kw) -> dict:
    return {"id": mid, "conversation_id": CONV, "chat_id": CHAT, "role": "assistant", "type": kind,
            "content": content, "content_type": "text", **kw}


def v3(*parts: bytes, done: bool = True) -> bytes:
    head = frame("conversation.chat.created", chat("created")) + frame("conversation.chat.in_progress",
                                                                          chat("in_progress"))
    tail = frame("done", '"[DONE]"') if done else b""
    return head + b"".join(parts) + tail


def completed(usage=(10, 5, 15)) -> bytes:
    return frame("conversation.chat.completed", chat("completed", usage={
        "input_count": usage[0], "output_count": usage[1], "token_count": usage[2]}))


# ----- v3 transcripts ---------------------------------------------------------------------


def test_v3_answer_verbose_follow_up():
    events = run(V3Decoder(), transcript("coze", "v3_chat_stream_answer_verbose_follow_up.sse"))
    assert isinstance(events[0], ev.Start) and events[0].conversation_id == "7512345678901230001"
    meta = [e.data for e in events if isinstance(e, ev.Meta)]
    assert {"conversation_id": "7512345678901230001",
            "stop": {"conversation_id": "7512345678901230001", "chat_id": "7512345678901234567"}} in meta
    assert answer_of(events) == "Paris is the capital of France."
    assert not [e for e in events if isinstance(e, ev.Replace)]
    assert [e.text for e in events if isinstance(e, ev.Suggestion)] == [
        "What is the population of Paris?", "Which river flows through Paris?", "When did Paris become the capital?"]
    assert [e for e in events if isinstance(e, ev.Usage)] == [ev.Usage(input_tokens=631, output_tokens=21,
                                                                       total_tokens=652)]
    done = events[-1]
    # The answer message id, not the chat id (CONTRACT: done.message_id).
    assert isinstance(done, ev.Done) and done.message_id == "7512345679000000001" and done.finish_reason == "stop"


def test_v3_requires_action_is_one_tool_and_tool_call():
    events = run(V3Decoder(), transcript("coze", "v3_chat_stream_requires_action.sse"))
    tools = [e for e in events if isinstance(e, ev.Tool)]
    assert tools == [ev.Tool(name="local_data_assistant", input={"location": "Nanjing", "type": 0}, output=None)]
    assert events[-1] == ev.Done(message_id=None, finish_reason="tool_call")


def test_v3_failed_raises_code_and_message():
    with pytest.raises(ProviderError) as info:
        run(V3Decoder(), transcript("coze", "v3_chat_stream_failed.sse"))
    assert info.value.exit_code == 6 and "event interval error" in info.value.message and "5000" in info.value.message
    assert not info.value.retryable


def test_v3_error_event_after_partial_text():
    d = V3Decoder()
    got = []
    with pytest.raises(ProviderError) as info:
        for sse in iter_sse([transcript("coze", "v3_chat_stream_error_event.sse").decode()]):
            got.extend(d.feed(sse.event, sse.data))
    assert answer_of(got) == "Let me"
    assert "5000" in info.value.message and "server issues" in info.value.message
    assert d.accepted


def test_error_event_with_empty_object():
    with pytest.raises(ProviderError, match="the stream reported an error"):
        run(V3Decoder(), v3(frame("error", "{}"), done=False))


# ----- v3 composed ---------------------------------------------------------------------------


def test_reasoning_then_answer_never_mixed():
    body = v3(frame("conversation.message.delta", msg(reasoning_content="Check small primes:")),
              frame("conversation.message.delta", msg(reasoning_content=" 221 = 13 × 17.")),
              frame("conversation.message.delta", msg(content="No — 221")),
              frame("conversation.message.delta", msg(content=" = 13 × 17.")),
              frame("conversation.message.completed", msg(content="No — 221 = 13 × 17.")), completed())
    events = run(V3Decoder(), body)
    assert "".join(e.text for e in events if isinstance(e, ev.Reasoning)) == "Check small primes: 221 = 13 × 17."
    assert answer_of(events) == "No — 221 = 13 × 17."
    kinds = [type(e).__name__ for e in shown(events)]
    assert kinds.index("Reasoning") < kinds.index("Delta")


def test_completed_repeating_reasoning_is_not_shown_twice():
    body = v3(frame("conversation.message.delta", msg(reasoning_content="think")),
              frame("conversation.message.completed", msg(content="ok", reasoning_content="think more")), completed())
    events = run(V3Decoder(), body)
    assert [e.text for e in events if isinstance(e, ev.Reasoning)] == ["think", " more"]


@pytest.mark.parametrize("deltas,full,expect", [
    (["Hel", "lo"], "Hello", []),                                    # equal: nothing more
    (["Hel"], "Hello world", [ev.Delta("lo world")]),                 # prefix: the missing rest
    (["Hello wrold"], "Hello world", [ev.Replace("Hello world")]),    # differs: replaced
    ([], "Whole answer", [ev.Delta("Whole answer")]),                 # no deltas at all
    (["kept"], "", []),                                               # blank completed text keeps deltas
])
def test_completed_answer_checks_the_deltas(deltas, full, expect):
    d = V3Decoder()
    list(d.feed("conversation.chat.created", json.dumps(chat("created"))))
    for piece in deltas:
        list(d.feed("conversation.message.delta", json.dumps(msg(content=piece))))
    assert shown(d.feed("conversation.message.completed", json.dumps(msg(content=full)))) == expect


def test_two_answer_messages_are_kept_apart():
    body = v3(frame("conversation.message.delta", msg(content="First.", mid="1")),
              frame("conversation.message.completed", msg(content="First.", mid="1")),
              frame("conversation.message.delta", msg(content="Second.", mid="2")),
              frame("conversation.message.completed", msg(content="Second.", mid="2")), completed())
    events = run(V3Decoder(), body)
    assert answer_of(events) == "First." + ANSWER_SEPARATOR + "Second."
    assert events[-1].message_id == "2"


def test_plugin_call_and_response_make_one_tool_step():
    call = {"name": "currency-convert", "arguments": {"from": "USD", "to": "JPY", "amount": 100},
            "plugin_id": 7402345678901234561, "api_id": 7402345678901234562, "plugin_type": 1, "thought": "rate"}
    resp = {"content_type": 1, "response_for_model": "100 USD = 15230 JPY", "type_for_model": 1}
    body = v3(frame("conversation.message.completed", msg("function_call", json.dumps(call), mid="a")),
              frame("conversation.message.completed", msg("tool_response", json.dumps(resp), mid="b")),
              frame("conversation.message.delta", msg(content="100 USD is about 15,230 JPY.", mid="c")),
              frame("conversation.message.completed", msg("verbose", json.dumps(
                  {"msg_type": "generate_answer_finish", "data": "", "from_module": None, "from_unit": None}),
                  mid="d")),
              completed())
    events = shown(run(V3Decoder(), body))
    assert events[1] == ev.Tool(name="currency-convert", input={"from": "USD", "to": "JPY", "amount": 100},
                                output="100 USD = 15230 JPY")
    assert isinstance(events[2], ev.Delta)
    assert [type(e).__name__ for e in events] == ["Start", "Tool", "Delta", "Usage", "Done"]


def test_function_call_without_response_is_shown_at_the_answer():
    body = v3(frame("conversation.message.completed", msg("function_call", '{"name":"x","arguments":"{\\"a\\":1}"}',
                                                          mid="a")),
              frame("conversation.message.delta", msg(content="ok", mid="c")), completed())
    events = shown(run(V3Decoder(), body))
    assert events[1] == ev.Tool(name="x", input={"a": 1}, output=None)


@pytest.mark.parametrize("data", ['"[DONE]"', "[DONE]", "", '{"debug_url":"https://x"}'])
def test_done_data_of_every_shape(data):
    events = run(V3Decoder(), v3(frame("conversation.message.delta", msg(content="hi")), completed(), done=False)
                 + frame("done", data))
    assert events[-1] == ev.Done(message_id=MSG, finish_reason="stop")


def test_unknown_audio_and_verbose_events_show_nothing():
    body = v3(frame("conversation.audio.delta", msg(content="AAAA", content_type="audio")),
              frame("conversation.something.new", '{"x":1}'),
              frame("conversation.message.completed", msg("verbose", "{}", mid="v")),
              frame("conversation.message.completed", msg("knowledge", "recall", mid="k")), completed())
    assert [type(e).__name__ for e in shown(run(V3Decoder(), body))] == ["Start", "Usage", "Done"]


def test_space_after_colon_is_accepted():
    body = v3(b'event: conversation.message.delta\ndata: ' + json.dumps(msg(content="hi")).encode() + b"\n\n",
              completed())
    assert answer_of(run(V3Decoder(), body)) == "hi"


def test_end_without_terminal_event_is_a_network_error():
    with pytest.raises(TransportError) as info:
        run(V3Decoder(), v3(frame("conversation.message.delta", msg(content="half")), done=False))
    assert info.value.exit_code == 5


def test_done_without_chat_completed_is_enough():
    events = run(V3Decoder(), v3(frame("conversation.message.delta", msg(content="hi"))))
    assert events[-1].finish_reason == "stop"


def test_completed_without_done_is_enough():
    events = run(V3Decoder(), v3(frame("conversation.message.delta", msg(content="hi")), completed(), done=False))
    assert events[-1].finish_reason == "stop"


@pytest.mark.parametrize("name", ["conversation.chat.canceled", "conversation.chat.cancelled"])
def test_cancelled_chat_is_stopped(name):
    events = run(V3Decoder(), v3(frame("conversation.message.delta", msg(content="hi")),
                                 frame(name, chat("canceled")), done=False))
    assert events[-1].finish_reason == "stopped"


def test_failed_with_rate_limit_code_is_exit_4():
    body = v3(frame("conversation.chat.failed", chat("failed", last_error={"code": 4013, "msg": "too fast"})))
    with pytest.raises(RateLimited) as info:
        run(V3Decoder(), body)
    assert info.value.exit_code == 4 and not info.value.retryable


def test_malformed_json_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        run(V3Decoder(), v3(frame("conversation.message.delta", "{not json")))


def test_continue_keeps_the_known_conversation_id():
    d = V3Decoder("7519876543210980001")
    first = list(d.feed("conversation.message.delta", json.dumps(msg(content="x"))))
    assert first[0] == ev.Start(provider="coze", conversation_id=CONV)


def test_chinese_split_inside_characters():
    text = "巴黎是法国的首都。"
    body = v3(frame("conversation.message.delta", msg(content=text[:4])),
              frame("conversation.message.delta", msg(content=text[4:])),
              frame("conversation.message.completed", msg(content=text)), completed())
    chunks = [body[i:i + 1] for i in range(len(body))]
    events = run(V3Decoder(), body, chunks)
    assert answer_of(events) == text and not [e for e in events if isinstance(e, ev.Replace)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_chunking_gives_the_same_events(sizes):
    body = transcript("coze", "v3_chat_stream_answer_verbose_follow_up.sse").replace(b"Paris", "巴黎".encode())
    whole = run(V3Decoder(), body)
    chunks, pos, i = [], 0, 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        chunks.append(body[pos:pos + n])
        pos, i = pos + n, i + 1
    assert run(V3Decoder(), body, chunks) == whole


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=8), st.text(min_size=1, max_size=30))
def test_answer_always_ends_as_the_completed_text(pieces, full):
    d = V3Decoder()
    events = list(d.feed("conversation.chat.created", json.dumps(chat("created"))))
    for p in pieces:
        events += d.feed("conversation.message.delta", json.dumps(msg(content=p)))
    events += d.feed("conversation.message.completed", json.dumps(msg(content=full)))
    assert answer_of(events) == full
    if full.startswith("".join(pieces)):
        assert not [e for e in events if isinstance(e, ev.Replace)]


# ----- v2 and web --------------------------------------------------------------------------


def test_v2_stream():
    events = run(V2Decoder("mine"), transcript("coze", "v2_chat_stream.sse"))
    assert events[0] == ev.Start(provider="coze", conversation_id="a3f4c2e1-7d1b-4c55-9a0e-6b2d7e9f1c30")
    assert answer_of(events) == "Hello! How can I help you today?"
    assert [e.text for e in events if isinstance(e, ev.Suggestion)] == ["What can you do?", "Tell me a joke"]
    assert events[-1] == ev.Done(message_id=None, finish_reason="stop")


def test_v2_error_information_4200_hints_at_the_region():
    with pytest.raises(NotFound) as info:
        run(V2Decoder("c"), transcript("coze", "v2_chat_stream_error.sse"))
    assert info.value.exit_code == 6 and "4200" in info.value.message and "api.coze.cn" in info.value.hint


def test_web_stream_decodes_with_the_v2_decoder():
    events = run(V2Decoder("c"), transcript("coze", "web_chat_stream.sse"))
    assert answer_of(events) == "Paris is the capital of France."
    assert [e for e in events if isinstance(e, ev.Usage)] == [ev.Usage(input_tokens=631, output_tokens=21,
                                                                       total_tokens=652)]
    assert [e.text for e in events if isinstance(e, ev.Suggestion)] == ["Which river flows through Paris?"]
    assert events[-1].message_id == "7512345679000000502"


def _v2(content: str, finish: bool) -> bytes:
    return ("data:" + json.dumps({"event": "message", "message": {"role": "assistant", "type": "answer",
                                  "content": content, "content_type": "text"}, "is_finish": finish, "index": 0,
                                  "conversation_id": "c"}) + "\n\n").encode()


@pytest.mark.parametrize("final", ["", "Hello world", " world"])
def test_v2_final_chunk_empty_whole_or_last_piece(final):
    body = _v2("Hello", False) + (_v2(" world", False) if final != " world" else b"") + _v2(final, True)
    body += b'data:{"event":"done"}\n\n'
    assert answer_of(run(V2Decoder("c"), body)) == "Hello world"


def test_web_error_event_with_raw_data():
    with pytest.raises(ProviderError, match="bot is busy"):
        run(V2Decoder("c"), b"event:error\ndata:bot is busy\n\n")


def test_v2_without_done_is_cut_off():
    with pytest.raises(TransportError):
        run(V2Decoder("c"), _v2("Hel", False))


# ----- codes --------------------------------------------------------------------------------


@pytest.mark.parametrize("code,cls,exit_code", [
    (4100, AuthError, 3), (4101, AuthError, 3), (700012006, AuthError, 3), ("4100", AuthError, 3),
    (4013, RateLimited, 4), (4020, RateLimited, 4), (4008, RateLimited, 4), (4028, RateLimited, 4),
    (4200, NotFound, 6), (4016, ProviderError, 6), (4000, ProviderError, 6), (5000, ProviderError, 6),
])
def test_code_families(code, cls, exit_code):
    err = classify(code, "words from coze", logid="LOG1")
    assert type(err) is cls and err.exit_code == exit_code
    assert f"code {code}" in err.message and "words from coze" in err.message and "LOG1" in err.message


def test_hints():
    assert "chatcli stop" in classify(4016, "busy").hint
    assert "api.coze.cn" in classify(4200, "no bot").hint and "api.coze.com" in classify(4200, "no bot").hint
    assert "COZE_API_TOKEN" in classify(4100, "bad").hint
    assert classify(4013, "x").retryable and not classify(4013, "x", in_stream=True).retryable



def test_function_call_deltas_are_not_steps_until_completed():
    call = '{"name":"x","arguments":{}}'
    body = v3(frame("conversation.message.delta", msg("function_call", call[:9], mid="f")),
              frame("conversation.message.delta", msg("function_call", call[9:], mid="f")),
              frame("conversation.message.completed", msg("function_call", call, mid="f")),
              frame("conversation.message.completed", msg("tool_response", "plain text", mid="g")), completed())
    tools = [e for e in run(V3Decoder(), body) if isinstance(e, ev.Tool)]
    assert tools == [ev.Tool(name="x", input={}, output="plain text")]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20), st.booleans())
def test_v2_and_web_any_chunking_gives_the_same_events(sizes, web):
    body = transcript("coze", "web_chat_stream.sse" if web else "v2_chat_stream.sse").replace(b"\n", b"\r\n")
    whole = run(V2Decoder("c"), body)
    chunks, pos, i = [], 0, 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        chunks.append(body[pos:pos + n])
        pos, i = pos + n, i + 1
    assert run(V2Decoder("c"), body, chunks) == whole
