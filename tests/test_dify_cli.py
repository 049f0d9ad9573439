"""End-to-end: the real chatcli subprocess against the fake Dify (tests/loopback/dify.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import TRANSCRIPTS, transcript
from loopback.dify import KEY, FakeDify, Ids, agent_events, chatflow_events, frame, ping, stream_of

GOLDEN = Path(__file__).parent / "golden" / "dify"
UPDATE = bool(os.environ.get("CHATCLI_UPDATE_GOLDEN"))
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def dify(server):
    return FakeDify(server)


def ask(cli, dify, *args, env=None, cmd="ask"):
    return cli(cmd, "-p", "dify", "--base-url", dify.url, *args, env=dify.env(**(env or {})))


def normalized(events, local_cid=False):
    """Golden form: fresh local uuids (user message; a conversation the server never named)
    become placeholders."""
    out = []
    for e in events:
        e = dict(e)
        if local_cid and e.get("conversation_id"):
            e["conversation_id"] = "<local conversation id>"
        if e["type"] == "done" and e.get("parent_id") and UUID.match(e["parent_id"]):
            e["parent_id"] = "<local user message id>"
        out.append(e)
    return out


def check_golden(case, events, local_cid=False):
    path = GOLDEN / f"{case}.events.jsonl"
    events = normalized(events, local_cid)
    lines = [json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in events]
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert path.exists(), f"missing golden file {path} (CHATCLI_UPDATE_GOLDEN=1 writes it)"
    assert [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] == events


def with_pings(data: bytes) -> bytes:
    """A ping between every two events (keep-alives anywhere, §2.3)."""
    return b"".join(block + b"\n\n" + ping() for block in data.split(b"\n\n") if block)


VARIANTS = {
    "bytes1": lambda d: (d, 1),  # every multi-byte character is split
    "crlf7": lambda d: (d.replace(b"\n", b"\r\n"), 7),
    "pings": lambda d: (with_pings(d), 13),
}
SSE = sorted(p.name for p in (TRANSCRIPTS / "dify").glob("*.sse"))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", SSE)
def test_transcript_replay_matches_golden(cli, dify, name, variant):
    data, size = VARIANTS[variant](transcript("dify", name))
    dify.then_stream(data, size)
    r = ask(cli, dify, "--jsonl", "用一句话介绍杭州")
    failed = "error" in name
    assert r.code == (6 if failed else 0), r
    events = r.events
    assert [e["type"] for e in events].count("start") == 1 and events[0]["type"] == "start"
    assert events[-1]["type"] == ("error" if failed else "done")
    # Every variant must match the same golden file (written from whichever runs under UPDATE).
    check_golden(name.removesuffix(".sse"), events)
    assert "Traceback" not in r.stderr


def test_404_transcript_conversation_not_exists(cli, dify):
    raw = transcript("dify", "error_404_conversation_not_exists.http")
    head, body = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)
    status = int(head.split()[1])
    dify.then_error(status, body, content_type="application/json")
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 6, r
    check_golden("error_404_conversation_not_exists", r.events, local_cid=True)
    err = r.events[-1]
    assert err["code"] == "not_found" and err["status"] == 404
    assert "You have requested this URI" not in err["message"]
    assert r.stderr.count("chatcli: error:") == 1 and "chatcli ask" in r.stderr


def test_continue_of_a_conversation_gone_on_the_server(cli, dify):
    assert ask(cli, dify, "first").code == 0
    dify.conversations.clear()
    r = ask(cli, dify, "again", cmd="continue")
    assert r.code == 6 and "Conversation Not Exists." in r.stderr and "chatcli ask" in r.stderr


def test_text_mode_stdout_is_exactly_the_answer_and_one_newline(cli, dify):
    dify.then_stream(transcript("dify", "chat_streaming.sse"), 5)
    r = ask(cli, dify, "hi")
    assert r.code == 0, r
    assert r.stdout == "杭州是浙江省的省会，以西湖和悠久的历史文化闻名。\n"
    assert "conversation 430e3dd1-0a35-4183-9f83-b7781be200e5" in r.stderr


def test_request_shape_and_auth(cli, dify):
    r = ask(cli, dify, "--jsonl", "hello", "there")
    assert r.code == 0, r
    req = dify.chat_requests()[0]
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["content-type"] == "application/json"
    assert req.json == {"inputs": {}, "query": "hello there", "response_mode": "streaming", "conversation_id": "",
                        "user": "chatcli", "files": []}
    done = r.events[-1]
    assert done["text"] == dify.answer and UUID.match(done["message_id"])
    assert done["message_id"] == dify.conversations[done["conversation_id"]][0]["id"]


def test_inputs_option_and_dify_user(cli, dify):
    r = ask(cli, dify, "-o", 'inputs={"name": "Ada"}', "hi", env={"DIFY_USER": "alice"})
    assert r.code == 0, r
    assert dify.chat_requests()[0].json["inputs"] == {"name": "Ada"}
    assert dify.chat_requests()[0].json["user"] == "alice"


def test_continue_sends_the_stored_conversation_id_and_the_owning_user(cli, dify):
    r1 = ask(cli, dify, "--jsonl", "one")
    cid = r1.events[0]["conversation_id"]
    assert r1.code == 0 and cid in dify.conversations
    # A different DIFY_USER later must not orphan the conversation (Dify scopes it per user).
    r2 = ask(cli, dify, "--jsonl", "two", cmd="continue", env={"DIFY_USER": "someone-else"})
    assert r2.code == 0, r2
    body = dify.chat_requests()[1].json
    assert body["conversation_id"] == cid and body["user"] == "chatcli" and body["query"] == "two"
    assert r2.events[0]["conversation_id"] == cid
    h = cli("history", cid, "--jsonl")
    msgs = [json.loads(x) for x in h.stdout.splitlines()]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert [m["status"] for m in msgs] == ["complete"] * 4


def test_parent_is_refused(cli, dify):
    first = ask(cli, dify, "--jsonl", "one")
    assert first.code == 0
    r = ask(cli, dify, "--parent", first.events[-1]["message_id"], "two", cmd="continue")
    assert r.code == 2 and "--parent is not supported by the dify provider" in r.stderr
    assert len(dify.chat_requests()) == 1


@pytest.mark.parametrize("args,words", [
    (("-s", "be terse"), "--system is not supported by the dify provider"),
    (("-m", "gpt-4o"), "--model is not supported by the dify provider"),
    (("--temperature", "0.2"), "--temperature is not supported by the dify provider"),
    (("--max-tokens", "5"), "--max-tokens is not supported by the dify provider"),
    (("-o", "inputs=[1"), "inputs must be a JSON object"),
])
def test_options_dify_cannot_honour_are_refused(cli, dify, args, words, home):
    r = ask(cli, dify, *args, "hi")
    assert r.code == 2 and words in r.stderr and r.stderr.count("\n") == 1
    assert not dify.srv.requests
    assert cli("history", "--jsonl").stdout == ""


def test_agent_chat_tools_in_jsonl_and_text(cli, dify):
    ids = Ids()
    dify.then_stream(stream_of(agent_events(ids)), 9)
    r = ask(cli, dify, "--jsonl", "What is 100 USD in EUR today?")
    assert r.code == 0, r
    types = [e["type"] for e in r.events]
    assert types == ["start", "tool", "delta", "delta", "delta", "usage", "done"]
    assert r.events[1] == {"type": "tool", "name": "exchange_rate", "input": {"from": "USD", "to": "EUR"},
                           "output": "1 USD = 0.92 EUR (2026-05-17)"}
    assert r.events[-1]["text"] == "100 USD isabout 92 EUR at today's rate."
    dify.then_stream(stream_of(agent_events(Ids())), 9)
    t = ask(cli, dify, "again")
    assert t.stdout == "100 USD isabout 92 EUR at today's rate.\n"
    assert "tool exchange_rate" in t.stderr


def test_replace_and_file_and_usage_cost(cli, dify):
    ids = Ids()
    dify.then_stream(stream_of([
        ids.message("rude "), ids.message("words"),
        ids.env("message_replace", answer="Sorry.", reason="output_moderation"),
        ids.env("message_file", id="f1", type="image", belongs_to="assistant", url="/files/tools/f1.png?sign=s"),
        ids.message(" Bye."), ids.end(price="0.0012", currency="USD")]), 3)
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 0, r
    ev = r.events
    assert {"type": "replace", "text": "Sorry."} in ev
    tool = next(e for e in ev if e["type"] == "tool")
    assert tool["name"] == "message_file" and tool["output"]["url"] == dify.srv.url + "/files/tools/f1.png?sign=s"
    assert next(e for e in ev if e["type"] == "usage") == {
        "type": "usage", "input_tokens": 5, "output_tokens": 7, "total_tokens": 12, "cost": 0.0012, "currency": "USD"}
    assert ev[-1]["text"] == "Sorry. Bye."
    h = cli("history", ev[0]["conversation_id"], "--jsonl")
    assert json.loads(h.stdout.splitlines()[-1])["text"] == "Sorry. Bye."


@pytest.mark.parametrize("order", ["new", "old", "relay"])
def test_chatflow_orders(cli, dify, order):
    dify.then_stream(stream_of([ping()] + chatflow_events(Ids(), order=order)), 17)
    r = ask(cli, dify, "--jsonl", "flow")
    assert r.code == 0, r
    assert r.events[-1]["text"] == "Flow answer." and r.events[-1]["finish_reason"] == "stop"
    conv = cli("history", "--jsonl")
    assert json.loads(conv.stdout.splitlines()[0])["model"] == "qwen-test"


def test_chatflow_failure_is_a_provider_error_with_partial_saved(cli, dify):
    ids = Ids()
    dify.then_stream(stream_of(chatflow_events(ids, status="failed")))
    r = ask(cli, dify, "--jsonl", "flow")
    assert r.code == 6 and r.events[-1]["code"] == "provider" and "Run failed" in r.events[-1]["message"]
    h = cli("history", ids.conversation_id, "--jsonl")
    last = json.loads(h.stdout.splitlines()[-1])
    assert last["status"] == "failed" and last["text"] == "Flow answer." and last["message_id"] == ids.message_id


def test_error_midstream_keeps_the_partial_answer_as_failed(cli, dify):
    dify.then_stream(transcript("dify", "chat_error_midstream_v0.6.sse"), 2)
    r = ask(cli, dify, "介绍一下西湖")
    assert r.code == 6
    assert r.stdout == "好的，下面分三点说明：\n\n1. \n"
    assert r.stderr.count("chatcli: error:") == 1 and "completion_request_error" in r.stderr
    h = cli("history", "84e7e72a", "--jsonl")
    last = json.loads(h.stdout.splitlines()[-1])
    assert last["status"] == "failed" and last["text"] == "好的，下面分三点说明：\n\n1. "


@pytest.mark.parametrize("drop", [True, False])
def test_cut_off_stream_is_a_network_error(cli, dify, drop):
    ids = Ids()
    dify.then_stream(stream_of(ids.chat(["partial ", "answer"], end=False)), 11, drop=drop)
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 5, r
    assert r.events[-1]["type"] == "error" and r.events[-1]["code"] == "network"
    assert len(dify.chat_requests()) == 1  # never retried once answer text arrived
    h = cli("history", ids.conversation_id, "--jsonl")
    last = json.loads(h.stdout.splitlines()[-1])
    assert last["status"] == "failed" and last["text"] == "partial answer"


def test_tail_after_message_end_may_break(cli, dify):
    ids = Ids()
    dify.then_stream(stream_of(ids.chat(["all ", "here"]) + [ids.env("tts_message", audio="QUJD")]), 50, drop=True)
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 0, r
    assert r.events[-1]["text"] == "all here"


def test_silence_longer_than_timeout(cli, dify):
    ids = Ids()

    def stall(ex):
        ex.start(200, content_type="text/event-stream; charset=utf-8")
        ex.write(frame(ids.message("so far")))
        ex.sleep_or_gone(5)

    dify.plan.append(stall)
    r = ask(cli, dify, "--jsonl", "--timeout", "1", "hi")
    assert r.code == 5 and r.events[-1]["code"] == "timeout", r
    assert r.events[-2] == {"type": "delta", "text": "so far"}


def test_401_is_an_auth_error_without_retries(cli, dify):
    r = cli("ask", "-p", "dify", "--base-url", dify.url, "--jsonl", "hi", env={"DIFY_API_KEY": "app-WRONG-key-999"})
    assert r.code == 3, r
    assert r.events[-1] == {"type": "error", "code": "auth", "message": "dify: HTTP 401: Access token is invalid "
                            "(unauthorized)", "status": 401, "retryable": False}
    assert "DIFY_API_KEY" in r.stderr and "app-WRONG-key-999" not in r.stderr + r.stdout
    assert len(dify.chat_requests()) == 1


def test_missing_key_is_a_config_error(cli, dify):
    r = cli("ask", "-p", "dify", "--base-url", dify.url, "hi")
    assert r.code == 3 and "DIFY_API_KEY" in r.stderr and not dify.srv.requests


def test_429_retry_after_is_honoured_then_ok(cli, dify):
    dify.then_error(429, {"code": "too_many_requests", "message": "Too many requests. Please try again later.",
                          "status": 429}, headers={"Retry-After": "1"})
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 0, r
    assert len(dify.chat_requests()) == 2
    assert "retrying in 1.0s" in r.stderr
    assert r.events[-1]["text"] == dify.answer


def test_429_every_time_is_exit_4(cli, dify):
    for _ in range(2):
        dify.then_error(429, {"code": "too_many_requests", "message": "Too many requests.", "status": 429},
                        headers={"Retry-After": "0"})
    r = ask(cli, dify, "--jsonl", "--retries", "1", "hi")
    assert r.code == 4 and r.events[-1]["code"] == "rate_limit" and len(dify.chat_requests()) == 2


def test_400_quota_is_exit_4(cli, dify):
    dify.then_error(400, {"code": "provider_quota_exceeded",
                          "message": "Your quota for Dify Hosted OpenAI has been exhausted.", "status": 400})
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 4 and r.events[-1]["code"] == "rate_limit" and r.events[-1]["status"] == 400
    assert len(dify.chat_requests()) == 1


@pytest.mark.parametrize("code,message,hint", [
    ("invalid_param", "`name` is required in input form", None),
    ("app_unavailable", "App unavailable, please check your app configurations.", "published"),
    ("provider_not_initialize", "Model qwen credentials is not initialized.", "Model Provider"),
    ("model_currently_not_support", "Dify Hosted OpenAI trial currently not support the GPT-4 model.", None),
    ("completion_request_error", "[openai_api_compatible] Server Unavailable Error, refused", None),
])
def test_400_codes_are_clear_provider_errors(cli, dify, code, message, hint):
    dify.then_error(400, {"code": code, "message": message, "status": 400})
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 6, r
    err = r.events[-1]
    assert err["code"] == "provider" and err["status"] == 400 and message in err["message"] and code in err["message"]
    assert r.stderr.count("chatcli: error:") == 1 and (hint is None or hint in r.stderr)


def test_500_is_retried_then_exit_6(cli, dify):
    for _ in range(2):
        dify.then_error(500, {"code": "internal_server_error", "message": "Internal Server Error, please contact "
                              "support.", "status": 500})
    r = ask(cli, dify, "--jsonl", "--retries", "1", "hi")
    assert r.code == 6 and r.events[-1]["status"] == 500 and len(dify.chat_requests()) == 2


def test_html_error_page_and_html_200(cli, dify):
    dify.then_error(502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
                    content_type="text/html")
    r = ask(cli, dify, "--jsonl", "--retries", "0", "hi")
    assert r.code == 6 and "HTML page (502 Bad Gateway)" in r.events[-1]["message"]
    dify.then_error(200, "<html><head><title>Login</title></head></html>", content_type="text/html")
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 6 and r.events[-1]["code"] == "protocol" and "text/html" in r.events[-1]["message"]


def test_200_json_blocking_answer_and_200_json_error(cli, dify):
    ids = Ids()
    dify.then_error(200, {"event": "message", "task_id": ids.task_id, "id": ids.message_id,
                          "message_id": ids.message_id, "conversation_id": ids.conversation_id, "mode": "chat",
                          "answer": "A blocking answer.", "metadata": {"usage": {
                              "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "total_price": 0.5,
                              "currency": "USD"}}, "created_at": 1716340511})
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 0, r
    assert r.events[0]["conversation_id"] == ids.conversation_id
    assert r.events[-1]["text"] == "A blocking answer." and r.events[-1]["message_id"] == ids.message_id
    dify.then_error(200, {"code": "completion_request_error", "message": "[models] Connection Error, down",
                          "status": 400})
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 6 and "Connection Error" in r.events[-1]["message"]


def test_raw_shows_pings_and_tts_events(cli, dify):
    ids = Ids()
    dify.then_stream(ping() + stream_of(ids.chat(["x"]) + [ids.env("tts_message", audio="QUJD"),
                                                           ids.env("tts_message_end", audio="")]), 6)
    r = ask(cli, dify, "--raw", "hi")
    assert r.code == 0, r
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0] == {"event": "ping", "data": ""}
    assert [x["data"]["event"] for x in lines[1:]] == ["message", "message", "message_end", "tts_message",
                                                        "tts_message_end"]
    assert all(x["event"] is None for x in lines[1:])


def test_suggestions_come_before_done(cli, dify):
    dify.suggested = ["What else?", "Tell me more"]
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 0, r
    assert [e["type"] for e in r.events][-3:] == ["suggestion", "suggestion", "done"]
    assert [e["text"] for e in r.events if e["type"] == "suggestion"] == dify.suggested
    mid = r.events[-1]["message_id"]
    got = [q for q in dify.srv.requests if q.path == f"/v1/messages/{mid}/suggested"]
    assert got and got[0].query == {"user": "chatcli"}
    t = ask(cli, dify, "hi")
    assert "suggestion: What else?" in t.stderr and t.stdout == dify.answer + "\n"


def test_suggestions_disabled_are_asked_once_per_conversation(cli, dify):
    assert ask(cli, dify, "one").code == 0
    assert ask(cli, dify, "two", cmd="continue").code == 0
    asked = [q for q in dify.srv.requests if q.path.endswith("/suggested")]
    assert len(asked) == 1


def test_suggestions_failure_never_fails_the_answer(cli, dify):
    dify.srv.route("GET", r"/v1/messages/[^/]+/suggested", lambda ex: ex.drop())
    r = ask(cli, dify, "--jsonl", "hi")
    assert r.code == 0 and r.events[-1]["type"] == "done"


def test_stop_from_a_second_process(cli, dify):
    ids = Ids()
    dify.then_slow(ids)
    owner = cli.spawn("ask", "-p", "dify", "--base-url", dify.url, "--jsonl", "long story",
                      env=dify.env(DIFY_USER="stopper"))
    lines = []
    try:
        while True:
            line = owner.stdout.readline()
            assert line, owner.stderr.read()
            lines.append(json.loads(line))
            if lines[-1]["type"] == "delta":
                break
        s = cli("stop")
        assert s.code == 0, s
        out, err = owner.communicate(timeout=20)
    finally:
        if owner.poll() is None:
            owner.kill()
    assert owner.returncode == 130, err
    events = lines + [json.loads(x) for x in out.decode().splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "stopped"
    assert dify.srv.wait_for(lambda: dify.stop_requests())
    stop = dify.stop_requests()[0]
    assert stop.path == f"/v1/chat-messages/{ids.task_id}/stop" and stop.json == {"user": "stopper"}
    assert stop.headers["authorization"] == f"Bearer {KEY}"
    h = cli("history", ids.conversation_id, "--jsonl")
    last = json.loads(h.stdout.splitlines()[-1])
    assert last["status"] == "stopped" and last["text"].startswith("word0 ")
    assert last["text"] == events[-1]["text"]


def test_history_remote_pages_and_maps_messages(cli, dify):
    r = ask(cli, dify, "--jsonl", "newest question")
    cid = r.events[0]["conversation_id"]
    dify.add_history(cid, 230)
    dify.conversations[cid][1]["agent_thoughts"] = [
        {"id": "t2", "position": 2, "thought": "done", "tool": "", "tool_input": "", "observation": ""},
        {"id": "t1", "position": 1, "thought": "", "tool": "exchange_rate",
         "tool_input": '{"exchange_rate": {"from": "USD"}}', "observation": '{"exchange_rate": "0.92"}'}]
    # The conversation's user (the default one) wins over a DIFY_USER set later.
    h = cli("history", cid, "--remote", "--jsonl", env=dify.env(DIFY_USER="someone-else"))
    assert h.code == 0, h
    msgs = [json.loads(x) for x in h.stdout.splitlines()]
    assert len(msgs) == 2 * 231
    assert [m["role"] for m in msgs[:4]] == ["user", "assistant", "user", "assistant"]
    assert msgs[0]["text"] == "old question 0" and msgs[1]["text"] == "old answer 0"
    assert msgs[-2]["text"] == "newest question" and msgs[-1]["text"] == dify.answer
    assert msgs[0]["parent_id"] is None and msgs[1]["parent_id"] == msgs[0]["message_id"]
    assert msgs[2]["parent_id"] == msgs[1]["message_id"]
    assert msgs[0]["created_at"] == "2024-05-22T01:06:40Z"
    assert msgs[3]["tools"] == [{"name": "exchange_rate", "input": {"from": "USD"}, "output": "0.92"}]
    assert "tools" not in msgs[1]
    pages = [q for q in dify.srv.requests if q.path == "/v1/messages"]
    assert len(pages) == 3
    assert "first_id" not in pages[0].query and pages[1].query["first_id"] and pages[2].query["first_id"]
    assert all(p.query["user"] == "chatcli" and p.query["conversation_id"] == cid for p in pages)


def test_history_remote_of_the_v06_sample(cli, dify):
    dify.then_stream(transcript("dify", "chat_error_midstream_v0.6.sse"))
    assert ask(cli, dify, "hi").code == 6
    body = transcript("dify", "messages_history_v0.6.json")
    dify.srv.route("GET", r"/v1/messages", lambda ex: ex.send(200, body, content_type="application/json"))
    h = cli("history", "84e7e72a", "--remote", "--jsonl", env=dify.env())
    assert h.code == 0, h
    msgs = [json.loads(x) for x in h.stdout.splitlines()]
    assert [(m["role"], m["status"]) for m in msgs] == [("user", "complete"), ("assistant", "complete"),
                                                        ("user", "complete"), ("assistant", "failed"),
                                                        ("user", "complete"), ("assistant", "failed")]
    assert msgs[1]["text"] == "你好！有什么可以帮你的吗？" and msgs[2]["text"] == "介绍一下西湖"
    assert "Read timed out" in msgs[3]["error"] and msgs[3]["message_id"] == "9a4e1430-d2ef-4ce6-a66a-7191b177f0a6"


def test_remote_conversations_pages(dify, monkeypatch):
    from chatcli.config import Settings
    from chatcli.providers.dify import Dify

    for i in range(230):
        dify.record(Ids(), f"q{i}", "a")
    p = Dify(Settings(provider="dify", base_url=dify.url, api_key=KEY, timeout=10))
    try:
        convs = p.remote_conversations()
    finally:
        p.close()
    assert len(convs) == 230 and len({c["conversation_id"] for c in convs}) == 230
    assert len([q for q in dify.srv.requests if q.path == "/v1/conversations"]) == 3


def test_history_remote_without_id_lists_the_providers_conversations(cli, dify):
    r = ask(cli, dify, "--jsonl", "known locally")
    local = r.events[0]["conversation_id"]
    for i in range(3):
        dify.record(Ids(), f"only remote {i}", "a")
    env = dify.env(DIFY_BASE_URL=dify.url)
    h = cli("history", "--remote", "-p", "dify", "--jsonl", env=env)
    assert h.code == 0, h
    rows = [json.loads(x) for x in h.stdout.splitlines()]
    assert len(rows) == 4 and {r["provider"] for r in rows} == {"dify"}
    assert [r["local"] for r in rows if r["conversation_id"] == local] == [True]
    assert sum(not r["local"] for r in rows) == 3
    assert list(rows[0])[:7] == ["conversation_id", "provider", "title", "model", "created_at", "updated_at",
                                 "messages"]
    text = cli("history", "--remote", "-p", "dify", env=env)
    assert text.code == 0 and local in text.stdout and "only on the provider" in text.stderr
    assert KEY not in text.stdout + text.stderr + h.stdout + h.stderr


def test_the_key_never_appears_in_output_or_state(cli, dify, home):
    outputs = []
    dify.suggested = ["more?"]
    for args, cmd in ((("--jsonl", "one"), "ask"), (("--raw", "two"), "continue"), (("three",), "continue")):
        r = ask(cli, dify, *args, cmd=cmd)
        assert r.code == 0, r
        outputs += [r.stdout, r.stderr]
    dify.then_error(401, {"code": "unauthorized", "message": f"Access token is invalid: {KEY}", "status": 401})
    r = ask(cli, dify, "--jsonl", "four")
    assert r.code == 3
    outputs += [r.stdout, r.stderr]
    for args in (("history",), ("history", "--jsonl"), ("history", r.events[0]["conversation_id"], "--remote")):
        h = cli(*args, env=dify.env())
        outputs += [h.stdout, h.stderr]
    files = [p for p in home.rglob("*") if p.is_file()]
    assert files
    for text in outputs + [p.read_text(errors="replace") for p in files]:
        assert KEY not in text and "SECRET-dify" not in text


def test_stop_call_in_process(dify):
    from chatcli.config import Settings
    from chatcli.errors import AuthError
    from chatcli.providers.dify import Dify

    p = Dify(Settings(provider="dify", base_url=dify.url, api_key=KEY, timeout=10))
    try:
        assert p.stop({"task_id": "t-1", "user": "u-9"}) is None
        assert p.stop({}) is None  # no task id known yet: nothing to call
    finally:
        p.close()
    assert [(r.path, r.json) for r in dify.stop_requests()] == [("/v1/chat-messages/t-1/stop", {"user": "u-9"})]
    bad = Dify(Settings(provider="dify", base_url=dify.url, api_key="app-WRONG-key-000", timeout=10))
    try:
        with pytest.raises(AuthError):
            bad.stop({"task_id": "t-2", "user": "u"})
    finally:
        bad.close()
