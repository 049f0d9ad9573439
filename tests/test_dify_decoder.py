"""Pure tests of the Dify decoder, the <think> folder and the error catalogue (no sockets)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import TRANSCRIPTS, transcript
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback.dify import Ids, agent_events, chatflow_events, frame, ping, stream_of

from chatcli import events as ev
from chatcli.errors import AuthError, NotFound, ProviderError, RateLimited, TransportError
from chatcli.providers import _http
from chatcli.providers.dify import DifyDecoder
from chatcli.providers.dify.decoder import IGNORED
from chatcli.providers.dify.errors import classify
from chatcli.providers.dify.think import ThinkFolder
from chatcli.sse import iter_sse, iter_text

SSE_FILES = sorted(p.name for p in (TRANSCRIPTS / "dify").glob("*.sse"))


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def run(data: bytes, size: int = 1 << 20, **kw) -> tuple[list[ev.Event], BaseException | None]:
    """Decode a whole body split into `size`-byte chunks: (events incl. Done, error raised)."""
    decoder = DifyDecoder(user="u-test", server="http://dify.test", **kw)
    out: list[ev.Event] = []
    try:
        for sse in iter_sse(iter_text(chunks(data, size))):
            if sse.event == "ping" and not sse.data:
                continue
            out += decoder.feed(sse.data)
            decoder.check()
        out += decoder.finish()
        out.append(decoder.done())
    except (ProviderError, TransportError) as exc:
        return out, exc
    return out, None


def text_of(events: list[ev.Event]) -> str:
    text = ""
    for e in events:
        if isinstance(e, ev.Delta):
            text += e.text
        elif isinstance(e, ev.Replace):
            text = e.text
    return text


def public(events: list[ev.Event]) -> list[dict]:
    return [ev.to_dict(e) for e in events if not isinstance(e, ev.Meta)]


# ----- transcripts -------------------------------------------------------------------


def test_every_transcript_is_covered():
    assert set(SSE_FILES) == {"chat_streaming.sse", "advanced_chat_streaming.sse", "chat_error_midstream_v0.6.sse"}


@pytest.mark.parametrize("name", SSE_FILES)
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_transcript_splits_and_crlf_give_the_same_events(name, size):
    data = transcript("dify", name)
    whole, err = run(data)
    split, err2 = run(data, size)
    crlf, err3 = run(data.replace(b"\n", b"\r\n"), size)
    assert public(split) == public(whole) == public(crlf)
    assert repr(err) == repr(err2) == repr(err3)


def test_chat_streaming_transcript():
    events, err = run(transcript("dify", "chat_streaming.sse"), 7)
    assert err is None
    assert text_of(events) == "杭州是浙江省的省会，以西湖和悠久的历史文化闻名。"
    assert isinstance(events[0], ev.Start) and events[0].conversation_id == "430e3dd1-0a35-4183-9f83-b7781be200e5"
    meta = events[1]
    assert isinstance(meta, ev.Meta)
    assert meta.data["stop"] == {"task_id": "700bd2d1-3d14-4ff6-bed8-2b33eae351d0", "user": "u-test"}
    assert meta.data["conversation_id"] == "430e3dd1-0a35-4183-9f83-b7781be200e5"
    assert meta.data["cursor"] == {"user": "u-test"}
    usage = [e for e in events if isinstance(e, ev.Usage)]
    assert usage == [ev.Usage(input_tokens=21, output_tokens=18, total_tokens=39, cost=0.0, currency="USD")]
    assert events[-1] == ev.Done(message_id="3a47ceec-c41e-4464-9e82-8ba9d78f7cf6", finish_reason="stop")
    assert not any(isinstance(e, ev.Delta) and e.text == "" for e in events)


def test_chatflow_transcript_answer_only_from_message_events():
    events, err = run(transcript("dify", "advanced_chat_streaming.sse"), 3)
    assert err is None
    assert text_of(events) == "杭州是浙江省省会，以西湖美景和深厚的历史文化著称。"
    assert ev.Meta(data={"model": "qwen2.5-72b-instruct"}) in events
    assert [e.total_tokens for e in events if isinstance(e, ev.Usage)] == [45]
    assert events[-1].message_id == "8aff909f-5db4-4862-ab0b-9fc670e21fc7"


def test_error_midstream_v06_keeps_partial_then_raises_provider_error():
    events, err = run(transcript("dify", "chat_error_midstream_v0.6.sse"), 1)
    assert text_of(events) == "好的，下面分三点说明：\n\n1. "
    assert type(err) is ProviderError and err.exit_code == 6 and err.code == "provider"
    assert "completion_request_error" in err.message and "Server Unavailable Error" in err.message
    assert err.status is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_split_of_the_chatflow_transcript(sizes):
    data = transcript("dify", "advanced_chat_streaming.sse")
    parts, pos, i = [], 0, 0
    while pos < len(data):
        parts.append(data[pos:pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    decoder = DifyDecoder(user="u")
    out = []
    for sse in iter_sse(iter_text(parts)):
        out += decoder.feed(sse.data)
    assert text_of(out) == "杭州是浙江省省会，以西湖美景和深厚的历史文化著称。"
    assert decoder.complete


# ----- composed cases ------------------------------------------------------------------


def test_agent_thoughts_become_tools_once_and_answer_is_agent_message_text():
    ids = Ids()
    events, err = run(stream_of(agent_events(ids)), 5)
    assert err is None
    assert text_of(events) == "100 USD isabout 92 EUR at today's rate."
    tools = [e for e in events if isinstance(e, ev.Tool)]
    assert tools == [ev.Tool(name="exchange_rate", input={"from": "USD", "to": "EUR"},
                             output="1 USD = 0.92 EUR (2026-05-17)")]
    # The final thought is the answer already streamed: not repeated as reasoning.
    assert not any(isinstance(e, ev.Reasoning) for e in events)
    assert events[-1].message_id == ids.message_id


def test_thought_text_never_streamed_is_reasoning_and_unfinished_tool_is_flushed():
    ids = Ids()
    events = [
        ids.env("agent_thought", id="t1", position=1, thought="I should look it up.", tool="search;calc",
                tool_input='{"search": {"q": "x"}, "calc": {"e": "1+1"}}', observation=None),
        ids.env("agent_thought", id="t1", position=1, thought="I should look it up. Then compute.",
                tool="search;calc", tool_input='{"search": {"q": "x"}, "calc": {"e": "1+1"}}',
                observation='{"search": "found", "calc": 2}'),
        ids.env("agent_thought", id="t2", position=2, thought="", tool="weather", tool_input='{"weather": {}}'),
        ids.env("agent_message", id=ids.message_id, answer="Done."),
        ids.end(),
    ]
    out, err = run(stream_of(events))
    assert err is None
    assert [e.text for e in out if isinstance(e, ev.Reasoning)] == ["I should look it up.", " Then compute."]
    assert [e for e in out if isinstance(e, ev.Tool)] == [
        ev.Tool(name="search", input={"q": "x"}, output="found"),
        ev.Tool(name="calc", input={"e": "1+1"}, output=2),
        ev.Tool(name="weather", input={}, output=None),
    ]


def test_message_replace_replaces_and_later_deltas_append():
    ids = Ids()
    events = ids.chat(["bad ", "words"], end=False) + [
        ids.env("message_replace", answer="[moderated]", reason="output_moderation"),
        ids.message(" tail"), ids.end()]
    out, err = run(stream_of(events))
    assert err is None
    assert ev.Replace("[moderated]") in out
    assert text_of(out) == "[moderated] tail"


def test_message_file_with_url_is_a_file_and_text_shaped_one_is_text():
    ids = Ids()
    events = [
        ids.message("Here: "),
        ids.env("message_file", id="f1", type="image", belongs_to="assistant",
                url="/files/tools/f1.png?timestamp=1&nonce=n&sign=s"),
        # Dify >=1.11.2 bug (#36990): text chunks labelled message_file.
        ids.env("message_file", id=ids.message_id, answer="a picture.", from_variable_selector=None),
        ids.end(files=[{"related_id": "f1", "type": "image", "url": "/files/tools/f1.png?timestamp=1"},
                       {"related_id": "f2", "type": "document", "url": "https://cdn.test/x.pdf",
                        "filename": "x.pdf", "mime_type": "application/pdf"}]),
    ]
    out, err = run(stream_of(events))
    assert err is None
    assert text_of(out) == "Here: a picture."
    files = [e.output for e in out if isinstance(e, ev.Tool)]
    assert files == [
        {"id": "f1", "type": "image", "url": "http://dify.test/files/tools/f1.png?timestamp=1&nonce=n&sign=s",
         "belongs_to": "assistant"},
        {"id": "f2", "type": "document", "url": "https://cdn.test/x.pdf", "belongs_to": "assistant",
         "filename": "x.pdf", "mime_type": "application/pdf"},
    ]


@pytest.mark.parametrize("order", ["new", "old", "relay"])
def test_chatflow_success_in_every_version_order(order):
    ids = Ids()
    out, err = run(stream_of([ping()] + chatflow_events(ids, order=order)), 11)
    assert err is None
    assert text_of(out) == "Flow answer."
    usage = [e for e in out if isinstance(e, ev.Usage)]
    # Without message_end (>=1.13 relay cut) the workflow's token total is the usage.
    assert usage == ([ev.Usage(total_tokens=12)] if order == "relay" else [usage[0]]) and len(usage) == 1
    assert out[-1] == ev.Done(message_id=ids.message_id, finish_reason="stop")


@pytest.mark.parametrize("status,words", [("failed", "Run failed: node llm exploded"), ("stopped", "stopped by the server")])
def test_chatflow_failed_or_stopped_workflow_raises(status, words):
    ids = Ids()
    out, err = run(stream_of(chatflow_events(ids, status=status)
                             + [ids.error("invalid_param", "Run failed: node llm exploded")]))
    assert text_of(out) == "Flow answer."
    assert isinstance(err, ProviderError) and err.exit_code == 6 and words in err.message


def test_chatflow_paused_for_human_input_is_done_paused():
    ids = Ids()
    events = [ids.env("workflow_started", workflow_run_id="r", data={}), ids.message("Need input"),
              ids.env("human_input_required", workflow_run_id="r", data={}),
              ids.env("workflow_paused", workflow_run_id="r", data={"paused_nodes": []})]
    out, err = run(stream_of(events))
    assert err is None and out[-1].finish_reason == "paused"


def test_tts_and_unknown_events_are_ignored_and_reasoning_chunk_is_reasoning():
    ids = Ids()
    events = [ids.env("reasoning_chunk", data={"message_id": ids.message_id, "reasoning": "hmm", "node_id": "n",
                                               "is_final": False}),
              ids.env("tts_message", audio="SUQz"), ids.message("ok"), ids.end(),
              ids.env("tts_message", audio="SUQz"), ids.env("tts_message_end", audio=""),
              ids.env("brand_new_event", answer="not text")]
    out, err = run(stream_of(events))
    assert err is None
    assert public(out)[1:] == [{"type": "reasoning", "text": "hmm"}, {"type": "delta", "text": "ok"},
                               public([e for e in out if isinstance(e, ev.Usage)])[0],
                               {"type": "done", "conversation_id": None, "message_id": ids.message_id,
                                "parent_id": None, "finish_reason": "stop", "text": ""}]


@pytest.mark.parametrize("kind", sorted(IGNORED))
def test_catalogue_events_that_carry_no_answer(kind):
    ids = Ids()
    noisy = ids.env(kind, answer="NOT TEXT", audio="QUJD", workflow_run_id="r",
                    data={"text": "NOT TEXT", "node_type": "answer", "outputs": {"answer": "NOT TEXT"}})
    out, err = run(stream_of([ids.message("a"), noisy, ids.message("b"), ids.end()]))
    assert err is None and text_of(out) == "ab"
    assert [type(e) for e in out if not isinstance(e, ev.Meta)] == [ev.Start, ev.Delta, ev.Delta, ev.Usage, ev.Done]


def test_stream_cut_off_before_message_end_is_a_network_error():
    ids = Ids()
    out, err = run(stream_of(ids.chat(["partial"], end=False)))
    assert text_of(out) == "partial"
    assert type(err) is TransportError and err.exit_code == 5 and err.code == "network"


def test_empty_stream_and_only_pings_are_network_errors():
    for body in (b"", ping() * 3):
        out, err = run(body)
        assert out == [] and isinstance(err, TransportError)


def test_dispatch_is_on_the_json_event_field_not_the_sse_name():
    ids = Ids()
    body = (b"event: message_end\n" + frame(ids.message("text")) + b"event: ping\n" + frame(ids.message("!"))
            + frame(ids.end()))
    out, err = run(body)
    assert err is None and text_of(out) == "text!"


def test_malformed_json_is_a_protocol_error():
    decoder = DifyDecoder(user="u")
    with pytest.raises(ProviderError) as info:
        decoder.feed('{"event": "message", "answer": ')
    assert info.value.code == "protocol"


def test_error_event_without_task_id_first():
    ids = Ids()
    out, err = run(frame(ids.error("provider_not_initialize", "Model x credentials is not initialized.")))
    assert isinstance(out[0], ev.Start) and out[0].conversation_id == ids.conversation_id
    assert not any(isinstance(e, ev.Meta) and "stop" in e.data for e in out)
    assert "provider_not_initialize" in err.message and err.hint and "Model Provider" in err.hint


def test_envelope_less_synthetic_events_and_late_ids():
    decoder = DifyDecoder(user="u")
    first = decoder.feed(json.dumps({"event": "workflow_started", "data": {"status": "running"}}))
    assert first == [ev.Start(provider="dify", conversation_id=None)]
    ids = Ids()
    later = decoder.feed(json.dumps(ids.message("x")))
    assert ev.Meta(data={"conversation_id": ids.conversation_id, "cursor": {"user": "u"},
                         "message_id": ids.message_id,
                         "stop": {"task_id": ids.task_id, "user": "u"}}) in later


def test_blocking_body_decodes_like_a_stream():
    ids = Ids()
    body = {"event": "message", "task_id": ids.task_id, "id": ids.message_id, "message_id": ids.message_id,
            "conversation_id": ids.conversation_id, "mode": "chat", "answer": "Blocking answer.",
            "metadata": {"usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                                   "total_price": 0.002, "currency": "RMB"}}, "created_at": 1}
    decoder = DifyDecoder(user="u")
    out = decoder.feed_blocking(body) + decoder.finish() + [decoder.done()]
    assert text_of(out) == "Blocking answer."
    assert ev.Usage(input_tokens=1, output_tokens=2, total_tokens=3, cost=0.002, currency="RMB") in out
    assert out[-1].message_id == ids.message_id


def test_null_fields_of_06_are_tolerated():
    ids = Ids()
    events = [ids.env("agent_thought", id="t", position=1, thought=None, observation=None, tool=None,
                      tool_input=None, message_files=None),
              ids.env("agent_message", id=ids.message_id, answer=None), ids.message("x"),
              ids.env("message_end", id=ids.message_id, metadata={"usage": {"prompt_tokens": None,
                                                                            "total_price": None}})]
    out, err = run(stream_of(events))
    assert err is None and text_of(out) == "x"


KINDS = ["message", "agent_message", "agent_thought", "message_file", "message_replace", "message_end", "error",
         "workflow_started", "node_finished", "workflow_finished", "workflow_paused", "reasoning_chunk",
         "tts_message", "ping", "unknown"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.lists(st.text(max_size=3), max_size=2),
                   st.dictionaries(st.sampled_from(["status", "error", "usage", "node_type", "reasoning", "url",
                                                    "process_data", "total_tokens"]),
                                   st.one_of(st.none(), st.text(max_size=5), st.integers()), max_size=3))
EVENT = st.fixed_dictionaries({"event": st.sampled_from(KINDS)}, optional={
    k: VALUES for k in ("conversation_id", "message_id", "task_id", "id", "answer", "thought", "tool", "tool_input",
                        "observation", "metadata", "files", "data", "url", "code", "message", "position")})


@settings(max_examples=150, deadline=None)
@given(st.lists(EVENT, max_size=12))
def test_arbitrary_event_shapes_never_crash_the_decoder(objs):
    decoder = DifyDecoder(user="u")
    for obj in objs:
        for e in decoder.feed(json.dumps(obj)):
            assert isinstance(e, ev.Start | ev.Meta | ev.Delta | ev.Replace | ev.Reasoning | ev.Tool | ev.Usage)
        if decoder.error is not None:
            assert isinstance(decoder.error, ProviderError)
            return
    try:
        decoder.finish()
    except TransportError:
        assert not decoder.complete


# ----- <think> folding -------------------------------------------------------------------


def fold(pieces: list[str]) -> tuple[str, str]:
    folder = ThinkFolder()
    out = []
    for p in pieces:
        out += folder.feed(p)
    out += folder.flush()
    return "".join(t for r, t in out if r), "".join(t for r, t in out if not r)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
def test_think_block_is_folded_into_reasoning_at_any_split(size):
    text = "<think>\nLet me think.\nStep 2\n</think>\n\nThe answer."
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    assert fold(pieces) == ("Let me think.\nStep 2", "\n\nThe answer.")


@pytest.mark.parametrize("text", ["Plain answer", "<b>bold</b>", "<thin", " <think>x</think>", "", "<"])
def test_no_leading_think_block_leaves_text_untouched(text):
    assert fold([c for c in text]) == ("", text)


def test_unclosed_think_is_all_reasoning():
    assert fold(["<think>\nstill ", "thinking\n</thi"]) == ("still thinking\n</thi", "")


def test_decoder_folds_think_and_can_be_told_not_to():
    ids = Ids()
    data = stream_of([ids.message("<thi"), ids.message("nk>\nhmm\n</th"), ids.message("ink>Hi"), ids.end()])
    out, _ = run(data)
    assert [e.text for e in out if isinstance(e, ev.Reasoning)] == ["hmm"]
    assert text_of(out) == "Hi"
    raw, _ = run(data, fold_think=False)
    assert text_of(raw) == "<think>\nhmm\n</think>Hi"


# ----- the error catalogue (§6) -------------------------------------------------------------


def http_error(status, body, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"content-type": "application/json"} | (headers or {})
    return _http.error_for_status(status, hdrs, raw, provider="dify", classify=classify)


def err(code, message, status):
    return {"code": code, "message": message, "status": status}


CATALOGUE = [
    (401, err("unauthorized", "Access token is invalid", 401), AuthError, 3, "DIFY_API_KEY"),
    (401, err("unauthorized", "Authorization header must be provided and start with 'Bearer'", 401), AuthError, 3, None),
    (403, err("forbidden", "The app's API service has been disabled.", 403), AuthError, 3, "disabled"),
    (404, err("not_found", "The app no longer exists.", 404), NotFound, 6, "check the app"),
    (400, err("invalid_param", "Arg user must be provided.", 400), ProviderError, 6, None),
    (400, err("not_chat_app", "Please check if your app mode matches the right API route.", 400), ProviderError, 6,
     "chat, agent or Chatflow"),
    (400, err("app_unavailable", "App unavailable, please check your app configurations.", 400), ProviderError, 6,
     "published"),
    (404, json.loads(transcript("dify", "error_404_conversation_not_exists.http").split(b"\r\n\r\n", 1)[-1]
                     .split(b"\n\n", 1)[-1]), NotFound, 6, "chatcli ask"),
    (400, err("conversation_completed", "The conversation has ended. Please start a new conversation.", 400),
     ProviderError, 6, "chatcli ask"),
    (400, err("provider_not_initialize", "Model qwen credentials is not initialized.", 400), ProviderError, 6,
     "Model Provider"),
    (400, err("provider_quota_exceeded", "Your quota for Dify Hosted OpenAI has been exhausted.", 400), RateLimited,
     4, "quota"),
    (400, err("model_currently_not_support", "Dify Hosted OpenAI trial currently not support the GPT-4 model.", 400),
     ProviderError, 6, "another model"),
    (400, err("completion_request_error", "[openai_api_compatible] Server Unavailable Error, refused", 400),
     ProviderError, 6, None),
    (400, err("completion_request_error", "[models] Rate Limit Error, slow down", 400), RateLimited, 4, None),
    (429, err("too_many_requests", "Too many requests. Please try again later.", 429), RateLimited, 4, None),
    (400, err("invalid_param", "Too many requests. Please try again later. The current maximum concurrent "
              "requests allowed for app is 1.", 400), RateLimited, 4, None),
    (429, err("rate_limit_error", "Rate limit exceeded", 429), RateLimited, 4, None),
    (403, err("workflow_version_execution_not_allowed", "not allowed on sandbox", 403), ProviderError, 6, None),
    (400, {"errors": {"query": "Missing required parameter in the JSON body"},
           "message": "Input payload validation failed"}, ProviderError, 6, None),
    (400, err("bad_request", "Invalid JSON payload received or JSON payload is empty.", 400), ProviderError, 6, None),
    (500, err("internal_server_error", "The server encountered an internal error.", 500), ProviderError, 6, None),
]


@pytest.mark.parametrize("status,body,cls,exit_code,hint", CATALOGUE)
def test_http_error_catalogue(status, body, cls, exit_code, hint):
    exc = http_error(status, body)
    assert type(exc) is cls and exc.exit_code == exit_code and exc.status == status
    assert exc.message.startswith(f"dify: HTTP {status}: ")
    if hint:
        assert hint in (exc.hint or "")
    assert "You have requested this URI" not in exc.message
    if "errors" in body:
        assert "query: Missing required parameter" in exc.message
    elif body.get("code"):
        assert body["code"] in exc.message


def test_429_honours_retry_after_and_5xx_is_retryable():
    exc = http_error(429, err("too_many_requests", "Too many requests.", 429), {"retry-after": "3"})
    assert isinstance(exc, RateLimited) and exc.retryable and exc.retry_after == 3.0
    assert http_error(502, b"<html><title>502 Bad Gateway</title></html>", {"content-type": "text/html"}).retryable
    assert "HTML page (502 Bad Gateway)" in http_error(502, b"<html><title>502 Bad Gateway</title></html>",
                                                       {"content-type": "text/html"}).message
    html404 = http_error(404, b"<!doctype html><title>404 Not Found</title>", {"content-type": "text/html"})
    assert isinstance(html404, NotFound) and "DIFY_BASE_URL" in html404.hint


# ----- throughput (a figure, not an assertion) -----------------------------------------------


def test_decoder_throughput_figure(capsys):
    ids = Ids()
    lines = [json.dumps(ids.message(f"token{i} "), separators=(",", ":")) for i in range(20_000)]
    decoder = DifyDecoder(user="u")
    t0 = time.perf_counter()
    n = 0
    for line in lines:
        n += len(decoder.feed(line))
    elapsed = time.perf_counter() - t0
    assert n >= 20_000
    with capsys.disabled():
        print(f"\n[dify decoder] 20000 message events in {elapsed * 1000:.0f} ms = {20_000 / elapsed:,.0f} events/s")
