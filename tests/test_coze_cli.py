"""The real chatcli against a fake Coze server (tests/loopback/coze.py), v3 and v2.

Every transcript in shared/transcripts/coze/ is replayed with awkward chunk splits and
compared with tests/golden/coze/<case>.events.jsonl (CHATCLI_UPDATE_GOLDEN=1 rewrites
them); composed cases cover what the transcripts do not. The fake token must never show
up in any output or state file.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from conftest import TRANSCRIPTS, transcript
from loopback.coze import CANCEL, MESSAGES, V2_CHAT, V3_CHAT, CozeServer, v2_frame, v3_frame

TOKEN = "pat_SECRET_coze_123"
BOT = "7498765432109876543"
CONV, CHAT = "7512345678901230001", "7512345678901234567"
GOLDEN = Path(__file__).parent / "golden" / "coze"
CASES = sorted(p.name for p in (TRANSCRIPTS / "coze").glob("*") if not p.name.endswith(".source.txt"))
UPDATE = bool(os.environ.get("CHATCLI_UPDATE_GOLDEN"))  # read before the autouse fixture strips CHATCLI_*
EXIT = {"auth": 3, "config": 3, "rate_limit": 4, "network": 5, "timeout": 5, "provider": 6, "not_found": 6,
        "protocol": 6}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def coze(server) -> CozeServer:
    return CozeServer(server)


def run(cli, coze, *args, mode="--jsonl", env=None, cmd="ask"):
    r = cli(cmd, "-p", "coze", "--bot-id", BOT, "--base-url", coze.url, *([mode] if mode else []), *args,
            env={"COZE_API_TOKEN": TOKEN, **(env or {})})
    assert_no_secret(cli, r)
    return r


def assert_no_secret(cli, r) -> None:
    assert TOKEN not in r.stdout and TOKEN not in r.stderr
    assert "Traceback" not in r.stderr
    for path in Path(cli.home).rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def version_of(case: str) -> list[str]:
    return ["--api-version", "v2"] if case.startswith(("v2_", "web_")) else []


def normalise(events: list[dict], raw: bytes) -> list[dict]:
    """Local uuids (user message ids, generated ids) differ per run; Coze's ids do not."""
    def fix(value):
        if isinstance(value, str) and UUID.fullmatch(value) and value.encode() not in raw:
            return "<local-uuid>"
        return value
    return [{k: fix(v) for k, v in e.items()} for e in events]


def history(cli, *args):
    r = cli("history", *args, "--jsonl", env={"COZE_API_TOKEN": TOKEN})
    assert r.code == 0, r
    assert_no_secret(cli, r)
    return r.events


# ----- every transcript: golden events, exit codes, text mode ------------------------------


@pytest.mark.parametrize("case", CASES)
def test_transcript_golden_jsonl(cli, coze, case):
    raw = transcript("coze", case)
    coze.queue_transcript(raw)
    r = run(cli, coze, *version_of(case), "What is the capital of France?")
    events = normalise(r.events, raw)
    golden = GOLDEN / f"{case}.events.jsonl"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))
    expected = [json.loads(line) for line in golden.read_text().splitlines()]
    assert events == expected
    last = events[-1]
    assert [e["type"] for e in events].count("start") == 1 and events[0]["type"] == "start"
    assert r.code == (0 if last["type"] == "done" else EXIT[last["code"]]), r
    if last["type"] == "done":
        deltas = "".join(e["text"] for e in events if e["type"] == "delta")
        assert deltas == last["text"]
    # What chatcli sent.
    req = coze.server.requests[-1]
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    if version_of(case):
        assert req.path == V2_CHAT and req.json["query"] == "What is the capital of France?"
        assert req.json["bot_id"] == BOT and req.json["user"] == "chatcli" and req.json["stream"] is True
    else:
        assert req.path == V3_CHAT and "conversation_id" not in req.query
        assert req.json == {"bot_id": BOT, "user_id": "chatcli", "stream": True, "auto_save_history": True,
                            "additional_messages": [{"role": "user", "content": "What is the capital of France?",
                                                     "content_type": "text"}]}


@pytest.mark.parametrize("case", CASES)
def test_transcript_text_mode(cli, coze, case):
    raw = transcript("coze", case)
    coze.queue_transcript(raw)
    r = run(cli, coze, *version_of(case), "hi", mode=None)
    golden = [json.loads(line) for line in (GOLDEN / f"{case}.events.jsonl").read_text().splitlines()]
    last = golden[-1]
    errors = [line for line in r.stderr.splitlines() if line.startswith("chatcli: error:")]
    if last["type"] == "done":
        assert r.code == 0 and r.stdout == last["text"] + "\n" and not errors
        for s in (e["text"] for e in golden if e["type"] == "suggestion"):
            assert f"chatcli: suggestion: {s}" in r.stderr
    else:
        assert r.code == EXIT[last["code"]] and len(errors) == 1 and last["message"] in errors[0]
        text = "".join(e["text"] for e in golden if e["type"] == "delta")
        assert r.stdout == (text + "\n" if text else "")


def test_crlf_and_keep_alive_comments(cli, coze):
    raw = transcript("coze", "v3_chat_stream_answer_verbose_follow_up.sse")
    body = raw.replace(b"\n\n", b"\n\n:keep-alive\n\n").replace(b"\n", b"\r\n")
    coze.queue_stream(body)
    r = run(cli, coze, "q")
    assert r.code == 0, r
    assert normalise(r.events, raw) == [json.loads(line) for line in
                                        (GOLDEN / "v3_chat_stream_answer_verbose_follow_up.sse.events.jsonl")
                                        .read_text().splitlines()]


def test_raw_mode_shows_verbose_and_done(cli, coze):
    coze.queue_transcript(transcript("coze", "v3_chat_stream_answer_verbose_follow_up.sse"))
    r = run(cli, coze, "hi", mode="--raw")
    assert r.code == 0, r
    lines = r.events
    assert lines[0]["event"] == "conversation.chat.created"
    verbose = [e for e in lines if isinstance(e["data"], dict) and e["data"].get("type") == "verbose"]
    assert verbose and "generate_answer_finish" in verbose[0]["data"]["content"]
    assert lines[-1] == {"event": "done", "data": "[DONE]"}


# ----- conversation: ids, continue, settings ---------------------------------------------------


def test_ask_then_continue_uses_coze_conversation_id(cli, coze):
    raw = transcript("coze", "v3_chat_stream_answer_verbose_follow_up.sse")
    coze.queue_transcript(raw)
    coze.queue_transcript(raw.replace(b"7512345679000000001", b"7512345679000000901"))
    first = run(cli, coze, "Capital of France?")
    assert first.code == 0 and first.events[-1]["conversation_id"] == CONV
    r = cli("continue", "--jsonl", "And Germany?", env={"COZE_API_TOKEN": TOKEN})
    assert_no_secret(cli, r)
    assert r.code == 0, r
    req = coze.server.requests_to(V3_CHAT)[-1]
    assert req.query == {"conversation_id": CONV}
    assert req.json["additional_messages"][0]["content"] == "And Germany?"
    assert r.events[0]["conversation_id"] == CONV
    msgs = history(cli, CONV)
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[1]["message_id"] == "7512345679000000001" and msgs[1]["status"] == "complete"
    assert msgs[1]["text"] == "Paris is the capital of France."


@pytest.mark.parametrize("args,word", [(["--api-version", "v9"], "v9"), (["--system", "be terse"], "--system")])
def test_usage_errors_send_nothing(cli, coze, args, word):
    r = run(cli, coze, *args, "hi")
    assert r.code == 2 and word in r.stderr and r.events[-1]["type"] == "error"
    assert not coze.server.requests


def test_lost_done_after_chat_completed_is_still_complete(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "Fine.")), TAIL[0]],
                      drop=True)
    r = run(cli, coze, "q")
    assert r.code == 0 and r.events[-1]["finish_reason"] == "stop" and r.events[-1]["text"] == "Fine."


def test_v2_continue_keeps_v2_and_sends_history(cli, coze):
    coze.queue_transcript(transcript("coze", "v2_chat_stream.sse"))
    coze.queue_transcript(transcript("coze", "v2_chat_stream.sse"))
    assert run(cli, coze, "--api-version", "v2", "Hi").code == 0
    r = cli("continue", "--jsonl", "Joke please", env={"COZE_API_TOKEN": TOKEN})
    assert r.code == 0, r
    first, second = coze.server.requests_to(V2_CHAT)
    assert "chat_history" not in first.json
    # The conversation id the v2 server echoed is the one used from then on.
    assert second.json["conversation_id"] == "a3f4c2e1-7d1b-4c55-9a0e-6b2d7e9f1c30"
    assert second.json["chat_history"] == [
        {"role": "user", "content": "Hi", "content_type": "text"},
        {"role": "assistant", "type": "answer", "content": "Hello! How can I help you today?", "content_type": "text"}]


# ----- composed streams -------------------------------------------------------------------------


def chat_obj(status, **kw):
    return {"id": CHAT, "conversation_id": CONV, "bot_id": BOT, "created_at": 1748000000,
            "last_error": {"code": 0, "msg": ""}, "status": status,
            "usage": {"token_count": 0, "output_count": 0, "input_count": 0}, **kw}


def message(kind, content, mid="7512345679000000001", **kw):
    return {"id": mid, "conversation_id": CONV, "bot_id": BOT, "role": "assistant", "type": kind,
            "content": content, "content_type": "text", "chat_id": CHAT, **kw}


HEAD = [v3_frame("conversation.chat.created", chat_obj("created")),
        v3_frame("conversation.chat.in_progress", chat_obj("in_progress"))]
TAIL = [v3_frame("conversation.chat.completed", chat_obj("completed", usage={
    "token_count": 30, "output_count": 10, "input_count": 20})), v3_frame("done", '"[DONE]"')]


def test_two_follow_ups_in_order(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "Yes.")),
                       v3_frame("conversation.message.completed", message("answer", "Yes.")),
                       v3_frame("conversation.message.completed", message("follow_up", "First?", mid="2")),
                       v3_frame("conversation.message.completed", message("follow_up", "Second?", mid="3")), *TAIL])
    # A pasted endpoint URL is reduced to the site root; COZE_USER is the user_id.
    r = cli("ask", "-p", "coze", "--bot-id", BOT, "--base-url", coze.url + "/v3/chat", "q",
            env={"COZE_API_TOKEN": TOKEN, "COZE_USER": "ann"})
    assert_no_secret(cli, r)
    assert r.code == 0 and r.stdout == "Yes.\n"
    assert r.stderr.index("suggestion: First?") < r.stderr.index("suggestion: Second?")
    assert "tokens in 20, out 10" in r.stderr
    req = coze.server.requests_to(V3_CHAT)[-1]
    assert req.json["user_id"] == "ann"


def test_reasoning_goes_to_stderr_never_stdout(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "", reasoning_content="Hmm, ")),
                       v3_frame("conversation.message.delta", message("answer", "", reasoning_content="13×17.")),
                       v3_frame("conversation.message.delta", message("answer", "No.")),
                       v3_frame("conversation.message.completed", message("answer", "No.")), *TAIL])
    r = run(cli, coze, "Is 221 prime?", mode=None)
    assert r.code == 0 and r.stdout == "No.\n" and "Hmm, 13×17." in r.stderr


def test_chinese_split_across_chunks_jsonl(cli, coze):
    text = "巴黎是法国的首都，塞纳河流经这里。"
    coze.queue_frames([*HEAD, *(v3_frame("conversation.message.delta", message("answer", text[i:i + 3]))
                                for i in range(0, len(text), 3)),
                       v3_frame("conversation.message.completed", message("answer", text)), *TAIL], sizes=1)
    r = run(cli, coze, "巴黎？")
    assert r.code == 0, r
    assert r.events[-1]["text"] == text
    assert "".join(e["text"] for e in r.events if e["type"] == "delta") == text


def test_completed_repairs_lost_tail_without_printing_twice(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "Paris is")),
                       v3_frame("conversation.message.completed", message("answer", "Paris is the capital.")), *TAIL])
    r = run(cli, coze, "q", mode=None)
    assert r.code == 0 and r.stdout == "Paris is the capital.\n"


def test_completed_differs_replace(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "Pari5")),
                       v3_frame("conversation.message.completed", message("answer", "Paris.")), *TAIL])
    r = run(cli, coze, "q")
    assert r.code == 0
    assert [e for e in r.events if e["type"] == "replace"] == [{"type": "replace", "text": "Paris."}]
    assert r.events[-1]["text"] == "Paris."
    assert history(cli, CONV)[-1]["text"] == "Paris."


def test_plugin_steps_are_tool_events(cli, coze):
    call = json.dumps({"name": "currency-convert", "arguments": {"amount": 100}, "plugin_id": 1, "api_id": 2})
    resp = json.dumps({"content_type": 1, "response_for_model": "100 USD = 15230 JPY", "type_for_model": 1})
    coze.queue_frames([*HEAD, v3_frame("conversation.message.completed", message("function_call", call, mid="5")),
                       v3_frame("conversation.message.completed", message("tool_response", resp, mid="6")),
                       v3_frame("conversation.message.delta", message("answer", "About 15,230 JPY.")),
                       v3_frame("conversation.message.completed", message("answer", "About 15,230 JPY.")), *TAIL])
    r = run(cli, coze, "100 USD in JPY?")
    assert r.code == 0
    assert [e for e in r.events if e["type"] == "tool"] == [
        {"type": "tool", "name": "currency-convert", "input": {"amount": 100}, "output": "100 USD = 15230 JPY"}]


def test_failure_after_partial_text_is_saved_failed(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "Half an ans")),
                       v3_frame("conversation.chat.failed", chat_obj("failed", last_error={
                           "code": 5000, "msg": "event interval error"}))])
    r = run(cli, coze, "q")
    assert r.code == 6
    assert r.events[-1] == {"type": "error", "code": "provider", "message": "coze: event interval error (code 5000)",
                            "status": None, "retryable": False}
    last = history(cli, CONV)[-1]
    assert last["status"] == "failed" and last["text"] == "Half an ans"
    assert len(coze.server.requests_to(V3_CHAT)) == 1  # never retried once the chat existed


def test_cut_off_stream_is_exit_5_and_keeps_the_partial(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "Cut he"))], drop=True)
    r = run(cli, coze, "q")
    assert r.code == 5, r
    assert r.events[-1]["code"] == "network"
    assert history(cli, CONV)[-1] == {**history(cli, CONV)[-1], "status": "failed", "text": "Cut he"}
    assert len(coze.server.requests_to(V3_CHAT)) == 1


def test_clean_end_without_terminal_event_is_exit_5(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "Cut"))])
    r = run(cli, coze, "q", mode=None)
    assert r.code == 5 and r.stdout == "Cut\n" and "ended before the answer was complete" in r.stderr


def test_requires_action_text_mode(cli, coze):
    coze.queue_transcript(transcript("coze", "v3_chat_stream_requires_action.sse"))
    r = run(cli, coze, "weather?", mode=None)
    assert r.code == 0 and r.stdout == "\n"
    assert "tool local_data_assistant" in r.stderr and "finish_reason: tool_call" in r.stderr


# ----- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code,exit_code,kind,hint", [
    (4100, 3, "auth", "COZE_API_TOKEN"), (4101, 3, "auth", "COZE_API_TOKEN"), (700012006, 3, "auth", "pat_"),
    (4013, 4, "rate_limit", None), (4028, 4, "rate_limit", None),
    (4200, 6, "not_found", "api.coze.cn"), (4016, 6, "provider", "chatcli stop"), (4000, 6, "provider", None),
])
def test_json_rejection_families(cli, coze, code, exit_code, kind, hint):
    coze.queue_json({"code": code, "msg": f"coze says {code}", "detail": {"logid": "LOG-42"}})
    r = run(cli, coze, "q", "--retries", "0")
    assert r.code == exit_code, r
    errors = [line for line in r.stderr.splitlines() if line.startswith("chatcli: error:")]
    assert len(errors) == 1 and f"coze says {code}" in errors[0] and f"code {code}" in errors[0]
    assert "LOG-42" in errors[0]
    if hint:
        assert hint in errors[0]
    assert [e["type"] for e in r.events] == ["start", "error"] and r.events[-1]["code"] == kind
    assert len(coze.server.requests_to(V3_CHAT)) == 1


def test_rate_limit_is_retried_then_answers(cli, coze):
    coze.queue_json({"code": 4013, "msg": "slow down"})
    coze.queue_transcript(transcript("coze", "v3_chat_stream_answer_verbose_follow_up.sse"))
    r = run(cli, coze, "q", "--retries", "1", mode=None)
    assert r.code == 0 and r.stdout == "Paris is the capital of France.\n" and "retrying" in r.stderr


def test_http_401(cli, coze):
    coze.queue(lambda ex: ex.send(401, "Unauthorized", content_type="text/plain"))
    r = run(cli, coze, "q")
    assert r.code == 3 and r.events[-1]["code"] == "auth" and r.events[-1]["status"] == 401


def test_http_401_with_coze_body(cli, coze):
    coze.queue_json({"code": 4100, "msg": "authentication is invalid"}, status=401)
    r = run(cli, coze, "q", mode=None)
    assert r.code == 3 and "authentication is invalid (code 4100)" in r.stderr


def test_unreachable_server_is_exit_5(cli):
    r = cli("ask", "-p", "coze", "--bot-id", BOT, "--base-url", "http://127.0.0.1:9", "--retries", "0", "q",
            env={"COZE_API_TOKEN": TOKEN})
    assert r.code == 5 and "chatcli: error:" in r.stderr


def test_missing_bot_id_is_exit_3(cli, coze):
    r = cli("ask", "-p", "coze", "--base-url", coze.url, "q", env={"COZE_API_TOKEN": TOKEN})
    assert r.code == 3 and "bot" in r.stderr


# ----- stop -------------------------------------------------------------------------------------------


def _spawn_and_wait_for_delta(cli, coze):
    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "Partial answer"))],
                      sizes=4096, hold=20)
    proc = cli.spawn("ask", "-p", "coze", "--bot-id", BOT, "--base-url", coze.url, "--jsonl", "long story",
                     env={"COZE_API_TOKEN": TOKEN})
    line = b""
    while b'"delta"' not in line:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
    return proc


def test_chatcli_stop_cancels_on_coze(cli, coze):
    proc = _spawn_and_wait_for_delta(cli, coze)
    r = cli("stop")
    assert r.code == 0, r
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    cancel = coze.server.requests_to(CANCEL)
    assert len(cancel) == 1 and cancel[0].json == {"conversation_id": CONV, "chat_id": CHAT}
    assert cancel[0].headers["authorization"] == f"Bearer {TOKEN}"
    last = json.loads(out.splitlines()[-1])
    assert last["type"] == "done" and last["finish_reason"] == "stopped" and last["text"] == "Partial answer"
    assert last["message_id"] == "7512345679000000001"
    assert TOKEN.encode() not in out + err
    assert history(cli, CONV)[-1]["status"] == "stopped"
    assert coze.server.wait_for(lambda: coze.server.disconnects)


def test_stop_too_late_is_reported_plainly(cli, coze):
    coze.cancel_answer = {"code": 4104, "msg": "chat can not be canceled"}
    proc = _spawn_and_wait_for_delta(cli, coze)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    text = err.decode()
    assert "could not cancel the chat any more" in text and "4104" in text and "error" not in text.lower()
    assert json.loads(out.splitlines()[-1])["finish_reason"] == "stopped"


# ----- history --remote -------------------------------------------------------------------------------


def test_history_remote_pages_through_messages(cli, coze):
    coze.queue_transcript(transcript("coze", "v3_chat_stream_answer_verbose_follow_up.sse"))
    assert run(cli, coze, "Capital of France?").code == 0
    coze.messages = [
        {"id": str(7512345679000000000 + i), "conversation_id": CONV, "chat_id": CHAT,
         "role": "user" if i % 2 else "assistant", "type": "question" if i % 2 else "answer",
         "content": f"m{i}", "content_type": "text", "created_at": 1748000000 + i} for i in range(1, 6)]
    msgs = history(cli, CONV, "--remote")
    assert [m["text"] for m in msgs] == ["m1", "m2", "m3", "m4", "m5"]
    assert msgs[0]["role"] == "user" and msgs[0]["parent_id"] is None
    assert msgs[1]["parent_id"] == msgs[0]["message_id"]
    assert msgs[0]["created_at"] == "2025-05-23T11:33:21Z" and msgs[0]["status"] == "complete"
    pages = coze.server.requests_to(MESSAGES)
    assert len(pages) == 3 and all(p.query == {"conversation_id": CONV} for p in pages)
    assert "after_id" not in pages[0].json and pages[1].json["after_id"] == "7512345679000000004"


def test_history_remote_error_code(cli, coze):
    coze.queue_transcript(transcript("coze", "v3_chat_stream_answer_verbose_follow_up.sse"))
    assert run(cli, coze, "q").code == 0
    coze.server.route("POST", MESSAGES, lambda ex: ex.send_json(200, {"code": 4101, "msg": "no permission"}))
    r = cli("history", CONV, "--remote", env={"COZE_API_TOKEN": TOKEN})
    assert r.code == 3 and "no permission (code 4101)" in r.stderr


# ----- v2 composed ------------------------------------------------------------------------------------


def v2_msg(kind, content, index=0, finish=False, cid="v2-conv-1"):
    return v2_frame({"event": "message", "message": {"role": "assistant", "type": kind, "content": content,
                                                     "content_type": "text"},
                     "is_finish": finish, "index": index, "conversation_id": cid, "seq_id": 0})


def test_v2_chinese_tools_and_follow_ups(cli, coze):
    text = "你好！我能帮你什么？"
    call = json.dumps({"name": "search", "arguments": {"q": "天气"}})
    coze.queue_frames([v2_msg("function_call", call, 0, True), v2_msg("tool_response", "晴", 1, True),
                       *(v2_msg("answer", text[i:i + 2], 2) for i in range(0, len(text), 2)),
                       v2_msg("answer", "", 2, True), v2_msg("follow_up", "一?", 3, True),
                       v2_msg("follow_up", "二?", 4, True), v2_frame({"event": "done"})], sizes=1)
    r = run(cli, coze, "--api-version", "v2", "你好")
    assert r.code == 0, r
    assert [e["type"] for e in r.events] == ["start", "tool", *["delta"] * 5, "suggestion", "suggestion", "done"]
    assert r.events[1] == {"type": "tool", "name": "search", "input": {"q": "天气"}, "output": "晴"}
    assert r.events[-1]["text"] == text and r.events[-1]["conversation_id"] == "v2-conv-1"
    assert [e["text"] for e in r.events if e["type"] == "suggestion"] == ["一?", "二?"]


def test_v2_cut_off_is_exit_5(cli, coze):
    coze.queue_frames([v2_msg("answer", "Hal", 0)], drop=True)
    r = run(cli, coze, "--api-version", "v2", "q", mode=None)
    assert r.code == 5 and r.stdout == "Hal\n" and r.stderr.count("chatcli: error:") == 1


def test_v2_json_rejection(cli, coze):
    coze.queue_json({"code": 4101, "msg": "The token you entered is incorrect."})
    r = run(cli, coze, "--api-version", "v2", "q")
    assert r.code == 3 and r.events[-1]["code"] == "auth"
    assert coze.server.requests_to(V2_CHAT)


def test_v2_stop_has_no_cancel_endpoint(cli, coze):
    coze.queue_frames([v2_msg("answer", "Partial", 0)], sizes=4096, hold=20)
    proc = cli.spawn("ask", "-p", "coze", "--bot-id", BOT, "--base-url", coze.url, "--api-version", "v2",
                     "--jsonl", "q", env={"COZE_API_TOKEN": TOKEN})
    while b'"delta"' not in (line := proc.stdout.readline()):
        assert line, proc.stderr.read()
    assert cli("stop").code == 0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and json.loads(out.splitlines()[-1])["text"] == "Partial"
    assert not coze.server.requests_to(CANCEL)


# ----- in-process provider: remote lists, stop(), closing the stream ---------------------------------


def provider_for(coze):
    from chatcli.config import Settings
    from chatcli.providers.coze import Coze

    return Coze(Settings(provider="coze", base_url=coze.url, api_key=TOKEN, bot_id=BOT, timeout=10))


def test_remote_conversations_pages(coze):
    coze.conversations = [{"id": str(7500 + i), "name": f"c{i}", "created_at": 1748000000 + i,
                           "updated_at": 1748000100 + i} for i in range(3)]
    p = provider_for(coze)
    try:
        convs = p.remote_conversations()
    finally:
        p.close()
    assert [c["conversation_id"] for c in convs] == ["7500", "7501", "7502"]
    assert convs[0] == {"conversation_id": "7500", "title": "c0", "created_at": "2025-05-23T11:33:20Z",
                        "updated_at": "2025-05-23T11:35:00Z"}
    reqs = coze.server.requests_to("/v1/conversations")
    assert [r.query["page_num"] for r in reqs] == ["1", "2"] and reqs[0].query["bot_id"] == BOT


@pytest.mark.parametrize("answer,expect", [
    ({"code": 0, "msg": "", "data": {"status": "canceled"}}, None),
    ({"code": 4104, "msg": "chat can not be canceled"}, "4104"),
])
def test_stop_calls_cancel(coze, answer, expect):
    coze.cancel_answer = answer
    p = provider_for(coze)
    try:
        note = p.stop({"conversation_id": CONV, "chat_id": CHAT})
    finally:
        p.close()
    assert (note is None) if expect is None else (expect in note)
    assert coze.server.requests_to(CANCEL)[0].json == {"conversation_id": CONV, "chat_id": CHAT}


def test_stop_failure_raises(coze):
    from chatcli.errors import AuthError

    coze.cancel_answer = {"code": 4101, "msg": "no cancelChat permission"}
    p = provider_for(coze)
    try:
        with pytest.raises(AuthError, match="no cancelChat permission"):
            p.stop({"conversation_id": CONV, "chat_id": CHAT})
    finally:
        p.close()


def test_closing_the_stream_hangs_up(coze):
    from chatcli.providers.base import Turn

    coze.queue_frames([*HEAD, v3_frame("conversation.message.delta", message("answer", "x"))], sizes=4096, hold=20)
    p = provider_for(coze)
    try:
        gen = p.stream(Turn(prompt="q"))
        kinds = [type(next(gen)).__name__ for _ in range(3)]
        assert kinds == ["Meta", "Start", "Meta"]
        gen.close()
        assert coze.server.wait_for(lambda: coze.server.disconnects)
    finally:
        p.close()
