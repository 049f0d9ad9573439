"""Pure tests of the chatgpt provider's decoders (no sockets): legacy, v1, WebSocket frames,
sentinel, history, error bodies, request body, device id."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from conftest import transcript
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcli import events as ev
from chatcli.errors import AuthError, NotFound, ProviderError, RateLimited
from chatcli.providers.base import Turn
from chatcli.providers.chatgpt import history, sentinel, v1, wire_errors
from chatcli.providers.chatgpt.device import device_id
from chatcli.providers.chatgpt.legacy import SSEDecoder
from chatcli.providers.chatgpt.provider import build_body, parent_for
from chatcli.providers.chatgpt.ws import FrameDecoder
from chatcli.sse import iter_sse, iter_text

CID = "6a1f3c2e-4b8d-4e0a-9c31-2f7d8e5b1a90"
AID = "4c9e1d27-0a6b-4f3e-b8d5-71a2c3e4f560"


def decode(chunks, decoder=None):
    decoder = decoder or SSEDecoder()
    out = []
    for sse in iter_sse(chunks):
        out += list(decoder.feed(sse.event if sse.event != "message" else None, sse.data))
    out += list(decoder.finish())
    out.append(decoder.state.done())
    return out, decoder


def text(events):
    t = ""
    for e in events:
        if isinstance(e, ev.Delta):
            t += e.text
        elif isinstance(e, ev.Replace):
            t = e.text
    return t


def metas(events, key):
    return [e.data[key] for e in events if isinstance(e, ev.Meta) and key in e.data]


def snap(mid, parts, role="assistant", status="in_progress", recipient="all", ctype="text", **meta):
    return "data: " + json.dumps({"message": {
        "id": mid, "author": {"role": role, "name": meta.pop("name", None), "metadata": {}},
        "content": {"content_type": ctype, "parts": parts} if ctype != "code" else {"content_type": "code",
                                                                                     "text": parts[0]},
        "status": status, "end_turn": status == "finished_successfully" or None, "metadata": meta,
        "recipient": recipient}, "conversation_id": CID, "error": None}) + "\n\n"


# ----- legacy (§5) -----------------------------------------------------------------------


def test_legacy_transcript():
    events, dec = decode([transcript("chatgpt", "legacy-sse-2024-composed.txt").decode()])
    assert text(events) == "Hello! How can I help you today?"
    assert [e.text for e in events if isinstance(e, ev.Delta)] == ["Hello", "! How", " can I help", " you today?"]
    assert metas(events, "conversation_id") == [CID]
    assert metas(events, "message_id") == [AID]
    assert metas(events, "title") == ["Friendly Greeting"]
    assert events[-1] == ev.Done(message_id=AID, finish_reason="stop")
    assert dec.complete and dec.encoding == "legacy"


def test_legacy_may_2023_shape_hides_system_and_user_and_ignores_keepalives():
    stream = (snap("s1", [""], role="system", status=None) + snap("u1", ["Hi"], role="user", status=None)
              + "data: 2024-04-27 12:34:56.123456\n\n" + snap("a1", ["Hi there!"], status=None)
              + "data: not json at all\n\n"
              + snap("a1", ["Hi there! What can I do for you?"], status=None, finish_details={"type": "stop"})
              + "data: [DONE]\n\n")
    events, _ = decode([stream])
    assert text(events) == "Hi there! What can I do for you?"
    assert metas(events, "message_id") == ["a1"]


def test_legacy_rewrite_becomes_replace_and_later_text_appends():
    stream = (snap("a1", ["Hello wor"]) + snap("a1", ["[removed]"]) + snap("a1", ["[removed] sorry"])
              + "data: [DONE]\n\n")
    events, _ = decode([stream])
    kinds = [type(e).__name__ for e in events if isinstance(e, (ev.Delta, ev.Replace))]
    assert kinds == ["Delta", "Replace", "Delta"]
    assert text(events) == "[removed] sorry"


def test_tool_call_then_answer_is_separated_and_tool_is_not_text():
    stream = (snap("a1", ["Let me compute."]) + snap("a1", ["Let me compute."], status="finished_successfully")
              + snap("c1", ["print(6*7)"], recipient="python", ctype="code", status="finished_successfully")
              + snap("t1", ["42"], role="tool", name="python", ctype="execution_output", status="finished_successfully")
              + snap("a2", [""]) + snap("a2", ["It is 42."], status="finished_successfully",
                                         finish_details={"type": "stop"})
              + "data: [DONE]\n\n")
    events, _ = decode([stream])
    assert text(events) == "Let me compute.\n\nIt is 42."
    tools = [e for e in events if isinstance(e, ev.Tool)]
    assert tools == [ev.Tool(name="python", input="print(6*7)", output=None),
                     ev.Tool(name="python", input=None, output="42")]
    assert events[-1].message_id == "a2"


def test_hidden_assistant_context_is_not_shown():
    stream = snap("h1", ["secret context"], is_visually_hidden_from_conversation=True) + "data: [DONE]\n\n"
    events, _ = decode([stream])
    assert text(events) == "" and events[-1].message_id is None


@pytest.mark.parametrize("kind,reason", [("max_tokens", "length"), ("interrupted", "interrupted"), ("stop", "stop")])
def test_finish_details(kind, reason):
    stream = snap("a1", ["x"], status="finished_successfully", finish_details={"type": kind}) + "data: [DONE]\n\n"
    events, _ = decode([stream])
    assert events[-1].finish_reason == reason


def test_in_stream_error_raises_provider_error():
    stream = snap("a1", ["x"]) + 'data: {"message": null, "conversation_id": "c", "error": "Our systems are busy"}\n\n'
    with pytest.raises(ProviderError, match="Our systems are busy"):
        decode([stream])


def test_moderation_blocked_raises_flagged_does_not():
    flagged = ('data: {"conversation_id": "c", "message_id": "a1", "is_completion": true, '
               '"moderation_response": {"flagged": true, "blocked": false}}\n\n')
    events, _ = decode([snap("a1", ["ok"]) + flagged + "data: [DONE]\n\n"])
    assert text(events) == "ok"
    blocked = flagged.replace('"blocked": false', '"blocked": true')
    with pytest.raises(ProviderError, match="moderation"):
        decode([snap("a1", ["ok"]) + blocked])
    with pytest.raises(ProviderError, match="moderation"):
        decode(['data: {"type": "moderation", "moderation_response": {"blocked": true}, "conversation_id": "c"}\n\n'])


def test_unfinished_stream_is_not_complete():
    _, dec = decode([snap("a1", ["partial"])])
    assert not dec.complete


def test_legacy_many_frames_are_deltas_of_only_the_new_text():
    pieces = [f"w{i} " for i in range(2000)]
    so_far, frames = "", []
    for p in pieces:
        so_far += p
        frames.append(snap("a1", [so_far]))
    events, _ = decode(frames + ["data: [DONE]\n\n"])
    deltas = [e.text for e in events if isinstance(e, ev.Delta)]
    assert deltas == pieces


# ----- delta v1 (§6) ---------------------------------------------------------------------


def spec_v1_example() -> str:
    from conftest import SHARED

    spec = (SHARED / "protocols" / "chatgpt.md").read_text()
    start = spec.index('event: delta_encoding\ndata: "v1"')
    return spec[start:spec.index("```", start)]


def test_v1_spec_example():
    events, dec = decode([spec_v1_example()])
    assert dec.encoding == "v1"
    assert text(events) == ("The primary colours of light are red, green and blue \u2014 mixing all three at full "
                            "strength gives white.")
    assert metas(events, "conversation_id") == ["6812f0a3-9c4e-8011-a7d2-5b3e9f1c0d24"]
    assert metas(events, "title") == ["Primary Colours of Light"]
    assert events[-1] == ev.Done(message_id="e2f9a6c3-7b14-4d58-a0c2-91d7b3e8f46a", finish_reason="stop")


def test_v1_patch_sticky_and_bare_list():
    doc = {"message": {"id": "a1", "author": {"role": "assistant"}, "content": {"content_type": "text", "parts": [""]},
                       "status": "in_progress", "metadata": {}, "recipient": "all"}, "conversation_id": "c",
           "error": None}
    frames = [
        ("delta_encoding", '"v1"'),
        ("delta", json.dumps({"v": doc, "c": 0})),
        ("delta", json.dumps({"p": "", "o": "patch", "v": [
            {"p": "/message/metadata", "o": "append", "v": {"content_references": []}},
            {"p": "/message/content/parts/0", "o": "append", "v": "Cyan, magenta"}]})),
        ("delta", json.dumps({"v": " and yellow"})),
        ("delta", json.dumps({"v": [{"p": "/message/status", "o": "replace", "v": "finished_successfully"},
                                    {"p": "/message/metadata", "o": "append",
                                     "v": {"finish_details": {"type": "max_tokens"}}}]})),
        (None, '{"type": "message_stream_complete", "conversation_id": "c"}'),
    ]
    dec = SSEDecoder()
    events = [e for name, data in frames for e in dec.feed(name, data)]
    assert text(events) == "Cyan, magenta and yellow"
    assert dec.complete and dec.state.done().finish_reason == "length"
    assert dec.v1.docs[0]["message"]["metadata"] == {"content_references": [], "finish_details": {"type": "max_tokens"}}


def test_v1_error_in_added_document_raises():
    dec = SSEDecoder()
    with pytest.raises(ProviderError, match="overloaded"):
        list(dec.feed("delta", json.dumps({"p": "", "o": "add", "v": {"message": None, "conversation_id": "c",
                                                                       "error": "overloaded"}, "c": 0})))


def test_v1_apply_operations():
    doc = {"message": {"content": {"parts": ["abc"]}, "metadata": {"a": 1}, "list": [1]}}
    v1.apply(doc, "/message/content/parts/0", "append", "def")
    v1.apply(doc, "/message/metadata", "append", {"b": 2})
    v1.apply(doc, "/message/list", "append", [2, 3])
    v1.apply(doc, "/message/list", "append", 4)
    v1.apply(doc, "/message/new/deep", "append", "x")  # missing target: created
    v1.apply(doc, "/message/status", "replace", "done")
    v1.apply(doc, "/message/content/parts/0", "truncate", 4)
    v1.apply(doc, "/message/list/0", "remove", None)
    v1.apply(doc, "/message/metadata/a", "remove", None)
    assert doc == {"message": {"content": {"parts": ["abcd"]}, "metadata": {"b": 2}, "list": [2, 3, 4],
                               "new": {"deep": "x"}, "status": "done"}}
    assert v1.apply(doc, "", "add", {"fresh": True}) == {"fresh": True}
    assert v1.split_path("/a~1b/c~0d") == ["a/b", "c~d"]


def test_v1_new_document_resets_sticky_pair():
    dec = SSEDecoder()
    mk = lambda mid: {"message": {"id": mid, "author": {"role": "assistant"}, "recipient": "all",  # noqa: E731
                                  "content": {"content_type": "text", "parts": [""]}}, "conversation_id": "c"}
    frames = [("delta", {"v": mk("a1"), "c": 0}), ("delta", {"p": "/message/status", "o": "replace", "v": "x"}),
              ("delta", {"v": mk("a2"), "c": 1}), ("delta", {"v": "hello"})]
    events = [e for name, f in frames for e in dec.feed(name, json.dumps(f))]
    assert text(events) == "hello"  # appended to parts/0 of document 1, not to /message/status
    assert dec.v1.docs[0]["message"]["status"] == "x"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30), st.booleans())
def test_any_byte_split_decodes_the_same(sizes, use_v1):
    zh = "你好，世界！🌍🎉 Ünïcödé"
    if use_v1:
        doc = {"message": {"id": "a1", "author": {"role": "assistant"}, "recipient": "all",
                           "content": {"content_type": "text", "parts": [""]}}, "conversation_id": "c"}
        raw = 'event: delta_encoding\r\ndata: "v1"\r\n\r\nevent: delta\r\ndata: ' + json.dumps({"v": doc, "c": 0})
        raw += '\r\n\r\nevent: delta\r\ndata: {"p": "/message/content/parts/0", "o": "append", "v": "\\u4f60"}\r\n\r\n'
        for ch in zh[1:]:
            raw += "event: delta\r\ndata: " + json.dumps({"v": ch}, ensure_ascii=False) + "\r\n\r\n"
        raw += "data: [DONE]\r\n\r\n"
    else:
        raw = "".join(snap("a1", [zh[:i]]).replace("\n", "\r\n") for i in range(len(zh) + 1)) + "data: [DONE]\r\n\r\n"
    data = raw.encode()
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        chunks.append(data[pos:pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    events, dec = decode(iter_text(chunks))
    assert text(events) == zh and dec.complete


# ----- WebSocket frames (§7) ---------------------------------------------------------------


def ws_frames():
    lines = transcript("chatgpt", "websocket-mode-2024-composed.txt").decode().splitlines()
    return [line[3:] for line in lines if line.startswith("<< ")]


def test_ws_transcript_frames_decode_to_the_legacy_transcript():
    frames = FrameDecoder(websocket_request_id="0b6f2a9e-5c3d-4e71-a8f4-9d2c1b0e7a65")
    bodies, acks = [], []
    for f in ws_frames():
        body = frames.feed(f)
        if body is not None:
            bodies.append(body)
        seq = frames.ack_due()
        if seq is not None:
            acks.append(seq)
    assert "".join(bodies) == transcript("chatgpt", "legacy-sse-2024-composed.txt").decode()
    assert frames.ended and acks == [10]  # 10 messages: one ack at the tenth, which is also the end


def test_ws_filtering_sequence_inside_data_and_bare_frames():
    body = base64.b64encode(b"data: [DONE]\n\n").decode()
    frames = FrameDecoder(websocket_request_id="mine")
    other = {"type": "message", "from": "group", "data": {"type": "http.response.body", "body": body,
                                                          "websocket_request_id": "other", "sequenceId": 4}}
    assert frames.feed(json.dumps(other)) is None and frames.last_seq == 4 and not frames.ended
    bare = FrameDecoder(reliable=False)
    assert bare.feed(json.dumps({"body": body, "more_body": False})) == "data: [DONE]\n\n"
    assert bare.ended and bare.ack_due() is None
    sysf = FrameDecoder()
    assert sysf.feed('{"type":"system","event":"disconnected","message":"bye"}') is None
    assert sysf.disconnected == "bye"


# ----- sentinel (§2) -------------------------------------------------------------------------


def test_proof_of_work_solves_and_verifies():
    token = sentinel.proof_token("0.42", "0fffff")
    assert token.startswith("gAAAAAB") and sentinel.verify(token, "0.42", "0fffff")
    assert not sentinel.verify("gAAAAABnope", "0.42", "000000")
    assert sentinel.requirements_token().startswith("gAAAAAC")


def test_unsolvable_proof_of_work_is_a_clear_error():
    with pytest.raises(ProviderError, match="proof-of-work"):
        sentinel.headers_for({"token": "t", "proofofwork": {"required": True, "seed": "1", "difficulty": "00000000"}},
                             max_tries=2000)


@pytest.mark.parametrize("name", ["turnstile", "arkose"])
def test_browser_challenges_are_actionable_errors(name):
    with pytest.raises(AuthError) as info:
        sentinel.headers_for({"token": "t", name: {"required": True, "dx": "x"}})
    assert "CHATGPT_BASE_URL" in info.value.hint


def test_sentinel_headers():
    h = sentinel.headers_for({"token": "tok", "proofofwork": {"required": True, "seed": "0.5", "difficulty": "0fffff"}})
    assert h["Openai-Sentinel-Chat-Requirements-Token"] == "tok"
    assert sentinel.verify(h["Openai-Sentinel-Proof-Token"], "0.5", "0fffff")
    assert sentinel.headers_for({"token": "tok", "proofofwork": {}, "turnstile": {}}) == {
        "Openai-Sentinel-Chat-Requirements-Token": "tok"}


# ----- history (§9) and errors (§10) ------------------------------------------------------------


def test_mapping_thread_from_current_node():
    detail = json.loads(transcript("chatgpt", "conversation-mapping-2023-12.json"))
    msgs = history.thread(detail)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["parent_id"] is None and msgs[1]["parent_id"] == msgs[0]["message_id"]
    assert msgs[0]["created_at"] == "2023-12-06T02:41:14.617Z" and msgs[1]["status"] == "complete"


def test_conversation_list():
    page = json.loads(transcript("chatgpt", "conversations-list-2023-12.json"))
    items = history.conversations(page)
    assert len(items) == 5 and items[3]["title"] == "前端开发助手支持"
    assert items[4]["updated_at"] == "2023-04-18T16:11:00.000Z"


def test_error_bodies():
    c = wire_errors.classify
    e = c(401, None, {"detail": {"code": "token_expired", "message": "expired"}}, "expired")
    assert isinstance(e, AuthError) and "expired" in e.message and "CHATGPT_ACCESS_TOKEN" in e.hint
    e = c(403, None, None, "an HTML page (Just a moment...)")
    assert isinstance(e, AuthError) and "Cloudflare" in e.message
    e = c(429, "model_cap_exceeded", {"detail": {"message": "Too many", "code": "model_cap_exceeded",
                                                 "clears_in": 11461}}, "Too many")
    assert isinstance(e, RateLimited) and e.retry_after == 11461 and "3h 11m" in e.message
    assert isinstance(c(404, None, {"detail": "Conversation not found"}, "Conversation not found"), NotFound)
    e = c(422, None, {"detail": [{"loc": ["body", 0], "msg": "Expecting value"}]}, "Expecting value")
    assert "Expecting value (at body.0)" in e.message and e.exit_code == 6
    assert c(413, None, {"detail": {"message": "too long"}}, "too long").exit_code == 6


# ----- the request -----------------------------------------------------------------------------


def test_body_and_parent_rules():
    turn = Turn(prompt="hi", user_message_id="u-1")
    body = build_body(turn, {"history_and_training_disabled": "true", "timezone_offset_min": -480},
                      model="auto", websocket_request_id="w-1", force_sse=True)
    assert body["messages"][0]["id"] == "u-1" and body["messages"][0]["content"]["parts"] == ["hi"]
    assert "conversation_id" not in body and body["history_and_training_disabled"] is True
    assert body["timezone_offset_min"] == -480 and body["supported_encodings"] == ["v1"]
    assert body["force_use_sse"] is True and body["websocket_request_id"] == "w-1"
    follow = Turn(prompt="x", conversation_id="c", parent_id="local", cursor={"parent_message_id": "a-9"})
    assert parent_for(follow) == "a-9"
    follow.branch, follow.parent_id = True, "a-3"
    assert parent_for(follow) == "a-3"


def test_device_id_is_stable_and_private(tmp_path):
    first = device_id(tmp_path / "s")
    assert device_id(tmp_path / "s") == first
    path = tmp_path / "s" / "chatgpt-device-id"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o700


_json = st.recursive(st.none() | st.booleans() | st.integers(-5, 50) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(
                         ["message", "content", "parts", "author", "role", "id", "status", "error", "v", "p", "o",
                          "type", "metadata", "recipient", "conversation_id"]), kids, max_size=4), max_leaves=12)
_frame = st.fixed_dictionaries({}, optional={
    "p": st.sampled_from(["", "/message/content/parts/0", "/message/status", "/message/metadata", "/message/author/role",
                          "/message/content/parts/-", "/message/content", "/x/0/y", "/message/id"]),
    "o": st.sampled_from(["add", "replace", "append", "patch", "truncate", "remove", "bogus"]),
    "v": _json, "c": st.integers(0, 3)})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["delta", None, "delta_encoding"]), _frame | _json), max_size=25))
def test_v1_decoder_never_crashes_on_odd_frames(frames):
    from chatcli.errors import ChatCliError

    dec = SSEDecoder()
    try:
        for name, frame in frames:
            list(dec.feed(name, json.dumps(frame)))
        list(dec.finish())
        dec.state.done()
    except ChatCliError:
        pass  # an `error` field or a blocked moderation is a designed failure


def test_expired_jwt_is_refused_before_sending():
    def jwt(claims):
        b64 = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).decode().rstrip("=")  # noqa: E731
        return b64({"alg": "RS256"}) + "." + b64(claims) + ".sig"

    assert wire_errors.token_expiry(jwt({"exp": 1700000000})) == 1700000000
    with pytest.raises(AuthError, match="expired at 2023-11-14"):
        wire_errors.check_token(jwt({"exp": 1700000000}), now=1800000000)
    wire_errors.check_token(jwt({"exp": 1900000000}), now=1800000000)
    wire_errors.check_token("not-a-jwt")
    wire_errors.check_token("eyJhbGciOiJSUzI1NiJ9.FAKE.SIG")


# ----- the v1 fast path (bare appends to parts/0) equals the general path ---------------------

_TP = "/message/content/parts/0"
_piece = st.sampled_from(["", "a", "bc", " de", "\n", "你好", "🌍", "x" * 40])


def _doc(mid, role="assistant", parts=("",), **extra):
    msg = {"id": mid, "author": {"role": role}, "recipient": "all", "channel": None, "status": "in_progress",
           "content": {"content_type": "text", "parts": list(parts)}, "metadata": {}}
    msg.update(extra)
    return {"message": msg, "conversation_id": "c1", "error": None}


_new_doc = st.builds(
    lambda mid, role, parts, extra, c, explicit: ({"p": "", "o": "add", "v": _doc(mid, role, parts, **extra), "c": c}
                                                 if explicit else {"v": _doc(mid, role, parts, **extra), "c": c}),
    st.sampled_from(["a1", "a2", "a3"]), st.sampled_from(["assistant", "assistant", "user", "tool"]),
    st.sampled_from([("",), ("hi",), ("", "x"), ("pre", {"img": 1})]),
    st.sampled_from([{}, {"recipient": "browser"}, {"channel": "analysis"}, {"channel": "final"},
                     {"metadata": {"is_visually_hidden_from_conversation": True}}]),
    st.integers(0, 3), st.booleans())
_OTHER_OPS = [
    {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
    {"p": "/message/end_turn", "o": "replace", "v": True},
    {"p": "/message/metadata", "o": "append", "v": {"finish_details": {"type": "max_tokens"}}},
    {"p": "/message/content/parts", "o": "append", "v": "tail"},
    {"p": "/message/content/parts/1", "o": "replace", "v": "second"},
    {"p": "/message/content/parts/0", "o": "remove"},
    {"p": "/message/content", "o": "replace", "v": {"content_type": "text", "parts": ["new"]}},
    {"p": "/message/content/content_type", "o": "replace", "v": "code"},
    {"p": "/message/recipient", "o": "replace", "v": "browser"},
    {"p": "/message/recipient", "o": "replace", "v": "all"},
    {"p": "/message/channel", "o": "replace", "v": "analysis"},
    {"p": "/message/metadata/is_visually_hidden_from_conversation", "o": "replace", "v": True},
    {"p": "/message/author/role", "o": "replace", "v": "tool"},
    {"p": "/message/id", "o": "replace", "v": "a9"},
    {"p": "/conversation_id", "o": "replace", "v": "c2"},
    {"p": "/message/status", "v": "x"},  # o from the sticky pair
    {"o": "append", "v": "y"},  # p from the sticky pair
    {"p": "/message/title", "o": "append", "v": "t"},
    {"p": "/message/content/content_type", "o": "replace", "v": "multimodal_text"},
    {"p": "/message/content/content_type", "o": "replace", "v": "thoughts"},
    {"p": "/message/author", "o": "remove"},
    {"p": "/message/metadata", "o": "replace", "v": None},
    {"p": "/message/channel", "o": "replace", "v": "final"},
    {"p": "/error", "o": "replace", "v": "boom"},
]
_other_op = st.sampled_from(_OTHER_OPS)
_text_op = st.one_of(
    st.builds(lambda v: {"p": _TP, "o": "append", "v": v}, _piece),
    st.builds(lambda v: {"p": _TP, "o": "replace", "v": v}, _piece),
    st.builds(lambda n: {"p": _TP, "o": "truncate", "v": n}, st.integers(0, 12)),
    st.builds(lambda v: {"p": "/message/content/parts/-1", "o": "append", "v": v}, _piece),
)
_patch = st.builds(lambda subs, bare: {"v": subs} if bare else {"p": "", "o": "patch", "v": subs},
                   st.lists(_text_op | _other_op, min_size=1, max_size=3), st.booleans())
# A patch that changes something else, then appends text: bare strings continue that append.
_patch_then_text = st.builds(lambda other, v, bare: ({"v": [other, {"p": _TP, "o": "append", "v": v}]} if bare else
                                                    {"p": "", "o": "patch", "v": [other, {"p": _TP, "o": "append",
                                                                                          "v": v}]}),
                             _other_op, st.sampled_from(["", "z"]), st.booleans())
_typed = st.sampled_from([
    {"type": "title_generation", "title": "T", "conversation_id": "c1"},
    {"type": "server_ste_metadata", "metadata": {"model_slug": "m"}, "conversation_id": "c3"},
    {"type": "message_marker", "conversation_id": "c1", "marker": "last_token"},
    {"type": "message_stream_complete", "conversation_id": "c1"},
])
_v1_frame = st.one_of(
    st.builds(lambda v: ("delta", {"v": v}), _piece),  # the fast path's frame (most of all)
    st.builds(lambda v: ("delta", {"v": v}), _piece),
    st.builds(lambda v: ("delta", {"v": v}), _piece),
    st.builds(lambda v, c: ("delta", {"v": v, "c": c}), _piece, st.integers(0, 3)),
    st.builds(lambda f: ("delta", f), _new_doc),
    st.builds(lambda f: ("delta", f), _text_op | _other_op),
    st.builds(lambda f: ("delta", f), _patch),
    st.builds(lambda f: ("delta", f), _patch_then_text),
    st.builds(lambda f: (None, f), _typed),
    st.builds(lambda mid, t: (None, _doc(mid, parts=(t,))), st.sampled_from(["a1", "a2"]), _piece),  # legacy
    st.just(("delta", {"p": "", "o": "add", "v": {"message": None, "conversation_id": "c1", "error": "boom"},
                       "c": 2})),
)


def _run_v1(frames, fast):
    dec = SSEDecoder()
    out = list(dec.feed("delta_encoding", '"v1"'))
    dec.v1.fast_path = fast
    error = None
    try:
        for name, frame in frames:
            out += list(dec.feed(name, json.dumps(frame, ensure_ascii=False)))
        out += list(dec.feed(None, "[DONE]"))
        out += list(dec.finish())
        out.append(dec.state.done())
    except ProviderError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return out, error, json.dumps(dec.v1.docs, sort_keys=True), dict(vars(dec.state))


# Streams that mostly stream an answer: each disturbing frame is followed by a run of bare appends.
_bare_run = st.lists(st.builds(lambda v: ("delta", {"v": v}), _piece), max_size=5)
_v1_stream = st.builds(
    lambda start, segments: start + [f for frame, run in segments for f in [frame, *run]],
    st.sampled_from([[], [("delta", {"v": _doc("a1"), "c": 0}), ("delta", {"p": _TP, "o": "append", "v": "Hi"})]]),
    st.lists(st.tuples(_v1_frame, _bare_run), max_size=12))


@settings(max_examples=600, deadline=None)
@given(_v1_stream)
def test_v1_fast_path_equals_general_path(frames):
    fast, general = _run_v1(frames, True), _run_v1(frames, False)
    assert fast == general


def test_v1_fast_path_engages_and_later_ops_see_the_whole_text():
    dec = SSEDecoder()
    frames = [("delta_encoding", '"v1"'), ("delta", json.dumps({"v": _doc("a1"), "c": 0})),
              ("delta", json.dumps({"p": _TP, "o": "append", "v": "Hello"}))]
    events = [e for name, data in frames for e in dec.feed(name, data)]
    assert dec.v1._fast is not None  # armed: bare strings now skip the pointer walk
    for piece in [",", " wor", "ld", "!"]:
        events += list(dec.feed("delta", json.dumps({"v": piece})))
    assert [e for e in events if isinstance(e, ev.Delta)] == [ev.Delta(t) for t in ["Hello", ",", " wor", "ld", "!"]]
    events += list(dec.feed("delta", json.dumps({"p": _TP, "o": "truncate", "v": 5})))  # sees "Hello, world!"
    assert dec.v1._fast is None
    assert events[-1] == ev.Replace("Hello")
    events += list(dec.feed("delta", json.dumps({"p": _TP, "o": "append", "v": " again"})))  # re-arms
    assert dec.v1._fast is not None
    events += list(dec.feed("delta", json.dumps({"v": "!"})))
    assert dec.v1.docs[0]["message"]["content"]["parts"] == ["Hello again!"]
    assert text(events) == "Hello again!" and dec.state.cur == "Hello again!"


_START = [("delta", {"v": _doc("a1"), "c": 0}), ("delta", {"p": _TP, "o": "append", "v": "Hi"}), ("delta", {"v": "!"})]
_AFTER = [("delta", {"v": "a"}), ("delta", {"v": "b"}), ("delta", {"p": _TP, "o": "truncate", "v": 3}),
          ("delta", {"p": _TP, "o": "append", "v": "c"}), ("delta", {"v": "d"})]


@pytest.mark.parametrize("piece", ["", "z"])
@pytest.mark.parametrize("op", _OTHER_OPS, ids=lambda op: f"{op.get('o')}:{op.get('p')}")
def test_v1_fast_path_equals_general_path_after_a_patch_that_changes_the_message(op, piece):
    # The patch's last sub-op appends to parts/0, so bare strings continue the append (§6.3);
    # whatever the first sub-op changed must be seen by the next bare frame as on the general path.
    frames = _START + [("delta", {"p": "", "o": "patch", "v": [op, {"p": _TP, "o": "append", "v": piece}]})] + _AFTER
    assert _run_v1(frames, True) == _run_v1(frames, False)


@pytest.mark.parametrize("frames", [
    # An empty new message does not end the streaming one: the next bare string goes to it.
    [("delta", {"v": _doc("a1"), "c": 0}), ("delta", {"p": _TP, "o": "append", "v": ""}),
     ("delta", {"v": _doc("a2"), "c": 1}), ("delta", {"v": "x"}), ("delta", {"v": "y"})],
    [*_START, ("delta", {"v": _doc("a2"), "c": 1}), ("delta", {"v": ""}), ("delta", {"v": "x"}), ("delta", {"v": "y"})],
    # A tool call that becomes the answer (pending tool of the same id).
    [("delta", {"v": _doc("a1", recipient="browser"), "c": 0}),
     ("delta", {"v": [{"p": "/message/recipient", "o": "replace", "v": "all"}, {"p": _TP, "o": "append", "v": "q"}]}),
     ("delta", {"v": "r"}), ("delta", {"v": "s"})],
    # Text in a second string part: parts/0 is not the end of the text.
    [*_START, ("delta", {"p": "/message/content/parts/1", "o": "replace", "v": "X"}),
     ("delta", {"p": _TP, "o": "append", "v": ""}), ("delta", {"v": "y"})],
    # A typed event or a legacy snapshot in between, another conversation id.
    [*_START, (None, {"type": "server_ste_metadata", "metadata": {"model_slug": "m"}, "conversation_id": "c9"}),
     ("delta", {"v": "y"}), (None, _doc("a1", parts=("Hi!y",))), ("delta", {"v": "z"})],
    [*_START, ("delta", {"v": "x", "c": 0}), ("delta", {"v": "y", "c": 1}), ("delta", {"v": "z"})],
])
def test_v1_fast_path_equals_general_path_edge_cases(frames):
    assert _run_v1(frames, True) == _run_v1(frames, False)


def test_negative_index_past_the_front_of_a_list_is_ignored() -> None:
    """`parts/-1` on an empty list names no element: no IndexError (found by the fast-path property)."""
    from chatcli.providers.chatgpt import v1

    doc = {"message": {"content": {"parts": []}}}
    assert v1.apply(doc, "/message/content/parts/-1", "replace", "x") == {"message": {"content": {"parts": []}}}
    doc = {"message": {"content": {"parts": ["a", "b"]}}}
    assert v1.apply(doc, "/message/content/parts/-1", "append", "c")["message"]["content"]["parts"] == ["a", "bc"]
