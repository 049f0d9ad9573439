"""The user-facing contract (shared/CONTRACT.md), end to end: the real chatcli in a subprocess
against the fake OpenAI-compatible server (tests/loopback/openai.py) on real sockets."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loopback import openai as fo

SECRET = "sk-SECRET-contract-4242"
LISTED = {
    "start": ("schema", "provider", "model", "conversation_id", "parent_id"),
    "delta": ("text",), "replace": ("text",), "reasoning": ("text",), "tool": ("name", "input", "output"),
    "suggestion": ("text",),
    "usage": ("input_tokens", "output_tokens", "total_tokens", "cost", "currency"),
    "done": ("conversation_id", "message_id", "parent_id", "finish_reason", "text"),
    "error": ("code", "message", "status", "retryable"),
}


@pytest.fixture
def fake(server):
    return fo.FakeOpenAI(server)


def ask(cli, fake, *args, env=None, **kw):
    return cli("ask", "-p", "openai", "--base-url", fake.base_url, *args, env=env, **kw)


def convs(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((home / "conversations").glob("*.json"))]


def only_conv(home: Path) -> dict:
    (conv,) = convs(home)
    return conv


def check_jsonl(r, terminal: str) -> list[dict]:
    events = r.events
    assert events, r
    assert events[0]["type"] == "start" and events[0]["schema"] == 1, r
    kinds = [e["type"] for e in events]
    assert kinds.count("done") + kinds.count("error") == 1 and kinds[-1] == terminal, r
    for e in events:
        assert next(iter(e)) == "type"
        for key in LISTED[e["type"]]:
            assert key in e, (key, e)
    return events


def one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("chatcli: error: ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r
    return lines[0]


# ----- output ---------------------------------------------------------------------------


def test_text_mode_stdout_is_exactly_the_answer_and_one_newline(cli, fake, home):
    fake.push(fo.answer("  lead", " ünïcödé 🌍 ", "日本語", "trail  \n"))
    r = ask(cli, fake, "hi", env={"OPENAI_API_KEY": SECRET})
    assert r.code == 0, r
    assert r.stdout == "  lead ünïcödé 🌍 日本語trail  \n\n"
    assert only_conv(home)["conversation_id"] in r.stderr
    assert "error" not in r.stderr
    assert SECRET not in r.stdout + r.stderr


def test_jsonl_schema_and_exact_text(cli, fake):
    fake.push(fo.stream(fo.frames([fo.chunk("", role=True), fo.chunk(reasoning="hmm"), fo.chunk(" a "),
                                   fo.chunk("b\n"), fo.chunk(finish="length"),
                                   fo.chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 2,
                                                                 "total_tokens": 5})])))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 0, r
    events = check_jsonl(r, "done")
    assert [e["type"] for e in events] == ["start", "reasoning", "delta", "delta", "usage", "done"]
    assert events[-1]["text"] == " a b\n" == "".join(e["text"] for e in events if e["type"] == "delta")
    assert events[-1]["finish_reason"] == "length"
    assert events[0]["provider"] == "openai" and events[0]["parent_id"] is None
    assert events[-1]["conversation_id"] == events[0]["conversation_id"]
    assert r.stdout.endswith("\n") and all(line.startswith('{"type":') for line in r.stdout.splitlines())


def test_raw_lines_are_the_wire_events(cli, fake):
    fake.push(fo.answer("x", "y"))
    r = ask(cli, fake, "--raw", "hi", env={"OPENAI_API_KEY": SECRET})
    assert r.code == 0, r
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(list(obj) == ["event", "data"] for obj in lines)
    assert lines[-1] == {"event": None, "data": "[DONE]"}
    assert [obj["data"]["choices"][0]["delta"].get("content") for obj in lines[1:3]] == ["x", "y"]
    assert SECRET not in r.stdout + r.stderr


def test_jsonl_error_before_the_request_still_starts_with_start(cli, fake):
    r = ask(cli, fake, "--jsonl", "   ")
    assert r.code == 2, r
    events = check_jsonl(r, "error")
    assert events[-1]["code"] == "config"
    one_error_line(r)


# ----- bad input and configuration --------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt(cli, fake, prompt):
    r = ask(cli, fake, prompt)
    assert r.code == 2 and "empty" in one_error_line(r)
    assert not fake.chats


def test_unknown_provider_option_is_usage_env_or_config_is_configuration(cli, fake, home):
    r = cli("ask", "-p", "nosuch", "hi")
    assert r.code == 2 and "nosuch" in one_error_line(r)
    r = cli("ask", "hi", env={"CHATCLI_PROVIDER": "nosuch"})
    assert r.code == 3 and "nosuch" in one_error_line(r)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('[profiles.bad]\nprovider = "nosuch"\n')
    r = cli("ask", "--profile", "bad", "hi")
    assert r.code == 3, r


@pytest.mark.parametrize(("provider", "var"), [("dify", "DIFY_API_KEY"), ("coze", "COZE_API_TOKEN"),
                                               ("chatgpt", "CHATGPT_ACCESS_TOKEN")])
def test_missing_key_for_a_provider_that_needs_one(cli, provider, var):
    r = cli("ask", "-p", provider, "--base-url", "http://127.0.0.1:9", "--jsonl", "hi")
    assert r.code == 3, r
    assert var in one_error_line(r)
    assert r.events[-1]["code"] == "config"


def test_openai_without_key_sends_no_authorization(cli, fake):
    r = ask(cli, fake, "hi")
    assert r.code == 0, r
    assert "authorization" not in fake.chat_requests[0].headers


def test_nothing_configured(cli):
    r = cli("ask", "hi")
    assert r.code == 3 and "OPENAI_BASE_URL" in one_error_line(r)


# ----- HTTP errors and retries ------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_never_retried(cli, fake, status):
    fake.push(*[fo.http_error(status, {"error": {"message": "Invalid API Key", "type": "authentication_error"}})] * 4)
    r = ask(cli, fake, "--retries", "3", "--jsonl", "hi", env={"OPENAI_API_KEY": SECRET})
    assert r.code == 3, r
    assert r.events[-1]["code"] == "auth" and r.events[-1]["status"] == status
    assert len(fake.chats) == 1
    assert SECRET not in r.stdout + r.stderr


def test_404_is_not_found(cli, fake, home):
    fake.push(fo.http_error(404, {"error": {"message": "The model `x` does not exist.", "code": 404}}))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 6 and r.events[-1]["code"] == "not_found" and r.events[-1]["status"] == 404
    assert only_conv(home)["messages"][-1]["status"] == "failed"


def test_429_retry_after_is_honoured_then_success(cli, fake):
    fake.push(fo.http_error(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"}))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 0, r
    assert len(fake.chats) == 2
    assert "retrying in 1.0s" in r.stderr
    check_jsonl(r, "done")


def test_429_retry_after_ms(cli, fake):
    fake.push(fo.http_error(429, {"error": {"message": "slow down"}}, headers={"retry-after-ms": "200"}))
    r = ask(cli, fake, "hi")
    assert r.code == 0 and len(fake.chats) == 2 and "retrying in 0.2s" in r.stderr


def test_429_with_a_long_retry_after_is_not_waited_for(cli, fake):
    fake.push(fo.http_error(429, {"error": {"message": "quota"}}, headers={"Retry-After": "3600"}))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 4 and r.events[-1]["code"] == "rate_limit" and len(fake.chats) == 1


def test_429_without_retry_after_retries_then_exits_4(cli, fake):
    fake.push(*[fo.http_error(429, {"error": {"message": "busy", "code": "rate_limit_exceeded"}})] * 3)
    r = ask(cli, fake, "--retries", "1", "--jsonl", "hi")
    assert r.code == 4, r
    assert len(fake.chats) == 2
    assert r.events[-1]["status"] == 429 and r.events[-1]["retryable"] is True


def test_rate_limit_after_the_first_answer_byte_is_not_retried(cli, fake, home):
    fake.push(fo.stream(fo.frames([fo.chunk("Sure"), {"error": {"message": "Rate limit", "code": "429"}}],
                                  done=False)))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 4 and len(fake.chats) == 1
    msg = only_conv(home)["messages"][-1]
    assert (msg["status"], msg["text"]) == ("failed", "Sure")


def test_5xx_is_retried_then_exits_6(cli, fake):
    fake.push(*[fo.http_error(503, {"error": {"message": "Loading model", "type": "unavailable_error"}})] * 3)
    r = ask(cli, fake, "--retries", "1", "--jsonl", "hi")
    assert r.code == 6, r
    assert len(fake.chats) == 2
    assert r.events[-1]["code"] == "provider" and r.events[-1]["status"] == 503
    assert "Loading model" in one_error_line(r)


def test_5xx_then_success(cli, fake):
    fake.push(fo.http_error(500, "Internal Server Error"))
    r = ask(cli, fake, "--retries", "1", "hi")
    assert r.code == 0 and r.stdout == "Hello from the fake.\n" and len(fake.chats) == 2


def test_html_error_page(cli, fake):
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    fake.push(fo.http_error(502, page, content_type="text/html"))
    r = ask(cli, fake, "--retries", "0", "--jsonl", "hi")
    assert r.code == 6 and r.events[-1]["status"] == 502
    line = one_error_line(r)
    assert "502 Bad Gateway" in line and "<html" not in line


def test_html_with_status_200_instead_of_a_stream(cli, fake):
    fake.push(fo.http_error(200, "<html><title>Login</title></html>", content_type="text/html"))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 6 and r.events[-1]["code"] == "protocol", r


def test_200_with_a_json_error_instead_of_a_stream(cli, fake):
    fake.push(fo.http_error(200, {"error": {"message": "model is overloaded", "type": "server_error"}}))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 6 and r.events[-1]["code"] == "provider" and "overloaded" in r.events[-1]["message"]


def test_200_with_a_whole_json_answer(cli, fake):
    """A server that ignores stream:true still gets its answer shown."""
    fake.push(fo.http_error(200, {"choices": [{"message": {"role": "assistant", "content": "whole"},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
    r = ask(cli, fake, "hi")
    assert r.code == 0 and r.stdout == "whole\n", r


def test_malformed_json_in_one_event(cli, fake, home):
    body = fo.frames([fo.chunk("", role=True), fo.chunk("good ")], done=False)
    body += b'data: {"choices":[{"index":0,"delta":{"content":"bro\n\n' + fo.frames([fo.chunk(finish="stop")])
    fake.push(fo.stream(body))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 6 and r.events[-1]["code"] == "protocol", r
    msg = only_conv(home)["messages"][-1]
    assert (msg["status"], msg["text"]) == ("failed", "good ")


def test_stream_cut_off_mid_answer(cli, fake, home):
    fake.push(fo.cut_after(fo.frames([fo.chunk("", role=True), fo.chunk("half an ")], done=False)))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 5 and r.events[-1]["code"] == "network", r
    assert len(fake.chats) == 1  # never retried once the answer began
    msg = only_conv(home)["messages"][-1]
    assert (msg["status"], msg["text"]) == ("failed", "half an ")
    # text mode: the partial answer, its newline, then one error line
    fake.push(fo.cut_after(fo.frames([fo.chunk("half")], done=False)))
    r = ask(cli, fake, "hi")
    assert r.code == 5 and r.stdout == "half\n"
    one_error_line(r)


def test_connection_refused(cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = cli("ask", "-p", "openai", "--base-url", f"http://127.0.0.1:{port}/v1", "-m", "m", "--retries", "0",
            "--jsonl", "hi")
    assert r.code == 5 and r.events[-1]["code"] == "network", r
    assert "cannot connect" in one_error_line(r)


def test_stall_times_out(cli, fake, home):
    fake.push(fo.stall_after(fo.frames([fo.chunk("", role=True), fo.chunk("wait")], done=False), 30))
    r = ask(cli, fake, "--timeout", "1", "--jsonl", "hi", timeout=30)
    assert r.code == 5 and r.events[-1]["code"] == "timeout", r
    msg = only_conv(home)["messages"][-1]
    assert (msg["status"], msg["text"]) == ("failed", "wait")
    assert fake.srv.wait_for(lambda: len(fake.srv.disconnects) == 1)


# ----- conversations ---------------------------------------------------------------------


def _seed(home: Path, *ids: str, base_url: str = "http://127.0.0.1:9/v1") -> None:
    from chatcli import store as st

    store = st.Store(home)
    for cid in ids:
        store.save(st.new_conversation(cid, {"provider": "openai", "base_url": base_url, "model": "m"}))


def test_unknown_and_ambiguous_cid(cli, fake, home):
    _seed(home, "abc111", "abc222", base_url=fake.base_url)
    r = cli("continue", "--cid", "zzz", "hi")
    assert r.code == 2 and "zzz" in one_error_line(r)
    r = cli("continue", "--cid", "abc", "--jsonl", "hi")
    assert r.code == 2 and "ambiguous" in one_error_line(r) and r.events[-1]["code"] == "not_found"
    assert not fake.chats
    r = cli("continue", "--cid", "abc2", "hi")
    assert r.code == 0, r
    assert len(convs(home)[1]["messages"]) == 2 and not convs(home)[0]["messages"]


def test_stop_with_nothing_in_flight(cli):
    r = cli("stop")
    assert r.code == 2 and "nothing in flight" in one_error_line(r)


def test_corrupt_state_file_is_moved_aside(cli, fake, home):
    assert ask(cli, fake, "hi").code == 0
    path = next((home / "conversations").glob("*.json"))
    path.write_bytes(b'{"version": 1, "conversation_id": "x", "messa')
    r = cli("continue", "--jsonl", "again")
    assert r.code == 7 and r.events[-1]["code"] == "state", r
    aside = list((home / "conversations").glob(path.name + ".corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b'{"version": 1, "conversation_id": "x", "messa'
    assert not path.exists()
    assert not fake.chats[1:]


def test_unwritable_state_dir(cli, fake, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    r = ask(cli, fake, "--jsonl", "hi", env={"CHATCLI_HOME": str(blocker / "home")})
    assert r.code == 7 and r.events[-1]["code"] == "state", r
    one_error_line(r)
    if os.geteuid() != 0:  # root ignores permissions; the file-as-parent case above covers it
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        r = ask(cli, fake, "hi", env={"CHATCLI_HOME": str(ro)})
        assert r.code == 7, r


def test_sigint_mid_answer(cli, fake, home):
    fake.push(fo.slow_answer(["one ", "two ", "three ", "four "] * 20, 0.2))
    proc = cli.spawn("ask", "-p", "openai", "--base-url", fake.base_url, "--jsonl", "hi")
    lines = [json.loads(proc.stdout.readline())]
    while lines[-1]["type"] != "delta":
        lines.append(json.loads(proc.stdout.readline()))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    lines += [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 130, err
    assert lines[-1]["type"] == "done" and lines[-1]["finish_reason"] == "stopped"
    text = "".join(e["text"] for e in lines if e["type"] == "delta")
    assert lines[-1]["text"] == text and text.startswith("one ")
    msg = only_conv(home)["messages"][-1]
    assert (msg["status"], msg["text"]) == ("stopped", text)
    assert not list((home / "inflight").glob("*.json"))
    assert fake.srv.wait_for(lambda: len(fake.srv.disconnects) == 1)


# ----- stdin -------------------------------------------------------------------------------


def test_dash_reads_stdin(cli, fake):
    r = ask(cli, fake, "-", input="from stdin\n")
    assert r.code == 0 and fake.chats[-1]["messages"][-1]["content"] == "from stdin\n"


def test_piped_stdin_without_words(cli, fake):
    r = ask(cli, fake, input="  piped question  ")
    assert r.code == 0 and fake.chats[-1]["messages"][-1]["content"] == "  piped question  "


def test_words_and_piped_stdin_prepends_context(cli, fake):
    r = ask(cli, fake, "summarise", "this", input="line 1\nline 2\n")
    assert r.code == 0
    assert fake.chats[-1]["messages"][-1]["content"] == "line 1\nline 2\n\nsummarise this"


def test_words_with_a_silent_pipe_do_not_hang(cli, fake):
    read_end, write_end = os.pipe()
    try:
        r = ask(cli, fake, "just", "words", stdin=read_end, timeout=20)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert r.code == 0, r
    assert fake.chats[-1]["messages"][-1]["content"] == "just words"


def test_no_prompt_on_a_tty(cli, fake):
    master, slave = pty.openpty()
    try:
        r = ask(cli, fake, stdin=slave, timeout=20)
    finally:
        os.close(slave)
        os.close(master)
    assert r.code == 2 and "no prompt" in one_error_line(r)
    assert not fake.chats


# ----- continue, branching, history ---------------------------------------------------------


def test_continue_reuses_provider_base_url_and_model_and_resends_history(cli, fake, home):
    fake.push(fo.answer("A1"), fo.answer("A2"))
    r = cli("ask", "-p", "openai", "--base-url", fake.base_url, "-m", "model-one", "-s", "be terse", "Q1")
    assert r.code == 0, r
    r = cli("continue", "Q2")  # no provider, no base URL, no model: all from the conversation
    assert r.code == 0 and r.stdout == "A2\n", r
    assert fake.chats[1]["model"] == "model-one"
    assert fake.chats[1]["messages"] == [{"role": "system", "content": "be terse"},
                                         {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
                                         {"role": "user", "content": "Q2"}]
    conv = only_conv(home)
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    assert conv["provider"] == "openai" and conv["base_url"] == fake.base_url and conv["model"] == "model-one"


def test_cid_unique_prefix_and_parent_branching(cli, fake, home):
    fake.push(fo.answer("A1"), fo.answer("A2"), fo.answer("O1"), fo.answer("B2"))
    assert ask(cli, fake, "-m", "m", "Q1").code == 0
    cid = only_conv(home)["conversation_id"]
    assert cli("continue", "Q2").code == 0
    conv = only_conv(home)
    a1 = conv["messages"][1]["message_id"]
    assert conv["messages"][1]["text"] == "A1"
    # another conversation becomes the last used one; --cid picks ours by prefix
    assert ask(cli, fake, "-m", "m", "other").code == 0
    r = cli("continue", "--cid", cid[:8], "--parent", a1[:10], "--jsonl", "Q2b")
    assert r.code == 0, r
    assert r.events[0]["conversation_id"] == cid and r.events[0]["parent_id"] == a1
    assert fake.chats[-1]["messages"] == [{"role": "user", "content": "Q1"},
                                          {"role": "assistant", "content": "A1"},
                                          {"role": "user", "content": "Q2b"}]
    # continuing the branch follows it (not the older Q2/A2 thread)
    r = cli("continue", "--cid", cid, "Q3")
    assert r.code == 0
    assert [m["content"] for m in fake.chats[-1]["messages"]] == ["Q1", "A1", "Q2b", "B2", "Q3"]
    r = cli("history", cid, "--jsonl")
    assert [m["text"] for m in r.events] == ["Q1", "A1", "Q2b", "B2", "Q3", "Hello from the fake."]


def test_unknown_parent(cli, fake):
    assert ask(cli, fake, "Q1").code == 0
    r = cli("continue", "--parent", "nope", "Q2")
    assert r.code == 2 and "nope" in one_error_line(r)


def test_history_list_show_and_jsonl(cli, fake, home):
    fake.push(fo.answer("first answer"), fo.answer("second answer"), fo.answer("follow-up answer"))
    assert ask(cli, fake, "-m", "m1", "first question").code == 0
    assert ask(cli, fake, "-m", "m2", "second question").code == 0
    first = [c for c in convs(home) if c["title"] == "first question"][0]["conversation_id"]
    assert cli("continue", "--cid", first, "more").code == 0  # now the most recently used
    r = cli("history", "--jsonl")
    assert r.code == 0
    rows = r.events
    assert [row["title"] for row in rows] == ["first question", "second question"]
    for row in rows:
        assert list(row)[:7] == ["conversation_id", "provider", "title", "model", "created_at", "updated_at",
                                 "messages"]
        assert row["created_at"].endswith("Z") and row["provider"] == "openai"
    assert (rows[0]["messages"], rows[0]["model"], rows[1]["messages"]) == (4, "m1", 2)
    r = cli("history", first[:6], "--jsonl")
    msgs = r.events
    assert [(m["role"], m["text"], m["status"]) for m in msgs] == [
        ("user", "first question", "complete"), ("assistant", "first answer", "complete"),
        ("user", "more", "complete"), ("assistant", "follow-up answer", "complete")]
    for m in msgs:
        assert list(m)[:6] == ["message_id", "parent_id", "role", "text", "created_at", "status"]
    assert msgs[0]["parent_id"] is None and msgs[1]["parent_id"] == msgs[0]["message_id"]
    r = cli("history")
    # The list shows the shortest unique id prefix (at least 8 characters).
    assert r.code == 0 and r.stdout.splitlines()[0].startswith(first[:8]) and "second question" in r.stdout
    r = cli("history", first)
    assert r.code == 0 and "follow-up answer" in r.stdout
    r = cli("history", "nosuch")
    assert r.code == 2


# ----- configuration --------------------------------------------------------------------------


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)


def test_profile_and_precedence(cli, fake, home, server):
    other = fo.FakeOpenAI(server, prefix="/other")
    write_config(home, f'default_profile = "work"\n[profiles.work]\nprovider = "openai"\n'
                       f'base_url = "{other.base_url}"\nmodel = "profile-model"\n'
                       f'[profiles.home]\nprovider = "openai"\nbase_url = "{fake.base_url}"\nmodel = "home-model"\n')
    assert cli("ask", "q").code == 0  # default profile
    assert other.chats[-1]["model"] == "profile-model"
    assert cli("ask", "q", env={"CHATCLI_PROFILE": "home"}).code == 0
    assert fake.chats[-1]["model"] == "home-model"
    assert cli("ask", "--profile", "work", "q", env={"CHATCLI_PROFILE": "home"}).code == 0  # option > env
    assert other.chats[-1]["model"] == "profile-model"
    # environment > profile, option > environment
    assert cli("ask", "q", env={"CHATCLI_MODEL": "env-model"}).code == 0
    assert other.chats[-1]["model"] == "env-model"
    assert cli("ask", "-m", "opt-model", "q", env={"CHATCLI_MODEL": "env-model"}).code == 0
    assert other.chats[-1]["model"] == "opt-model"
    assert cli("ask", "q", env={"OPENAI_BASE_URL": fake.base_url}).code == 0
    assert fake.chats[-1]["model"] == "profile-model"
    r = cli("ask", "--profile", "nosuch", "q")
    assert r.code == 2 and "nosuch" in one_error_line(r)
    r = cli("ask", "q", env={"CHATCLI_PROFILE": "nosuch"})
    assert r.code == 3


def test_api_key_env_and_api_key_cmd(cli, fake, home):
    key_env, key_cmd = "sk-SECRET-from-env-777", "sk-SECRET-from-cmd-888"
    write_config(home, f'[profiles.e]\nprovider = "openai"\nbase_url = "{fake.base_url}"\napi_key_env = "MY_KEY"\n'
                       f'[profiles.c]\nprovider = "openai"\nbase_url = "{fake.base_url}"\n'
                       f'api_key_cmd = "echo {key_cmd}"\n'
                       f'[profiles.bad]\nprovider = "openai"\nbase_url = "{fake.base_url}"\napi_key_cmd = "exit 3"\n')
    assert cli("ask", "--profile", "e", "q", env={"MY_KEY": key_env}).code == 0
    assert fake.chat_requests[-1].headers["authorization"] == f"Bearer {key_env}"
    assert cli("ask", "--profile", "c", "q").code == 0
    assert fake.chat_requests[-1].headers["authorization"] == f"Bearer {key_cmd}"
    # OPENAI_API_KEY (environment) beats the profile's command
    assert cli("ask", "--profile", "c", "q", env={"OPENAI_API_KEY": SECRET}).code == 0
    assert fake.chat_requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    r = cli("ask", "--profile", "bad", "q")
    assert r.code == 3 and "api_key_cmd" in one_error_line(r)
    # continue reuses the profile, hence its key
    assert cli("continue", "--cid", convs(home)[0]["conversation_id"], "again", env={"MY_KEY": key_env}).code == 0
    for path in home.rglob("*"):
        if path.is_file() and path.name != "config.toml":
            text = path.read_text(errors="replace")
            assert key_env not in text and key_cmd not in text and SECRET not in text


def test_chatcli_provider_and_openai_env(cli, fake):
    r = cli("ask", "q", env={"CHATCLI_PROVIDER": "openai", "OPENAI_BASE_URL": fake.base_url,
                             "OPENAI_API_KEY": SECRET})
    assert r.code == 0 and r.stdout == "Hello from the fake.\n", r
    assert fake.chat_requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    # OPENAI_BASE_URL alone picks the openai provider (the only one configured)
    r = cli("ask", "q", env={"OPENAI_BASE_URL": fake.base_url})
    assert r.code == 0 and len(fake.chats) == 2


def test_temperature_and_max_tokens_are_sent(cli, fake):
    assert ask(cli, fake, "-t", "0", "--max-tokens", "17", "q").code == 0
    body = fake.chats[-1]
    assert body["temperature"] == 0 and body["max_tokens"] == 17
    assert body["stream_options"] == {"include_usage": True}


def test_help_and_history_do_not_import_httpx(tmp_path):
    code = ("import sys, runpy; sys.argv=['chatcli','history']\n"
            "try:\n runpy.run_module('chatcli', run_name='__main__')\nexcept SystemExit: pass\n"
            "print('httpx' in sys.modules)")
    env = dict(os.environ, CHATCLI_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip().splitlines()[-1] == "False", out


def test_old_llamacpp_error_line_end_to_end(cli, fake, home):
    body = (fo.frames([fo.chunk("", role=True), fo.chunk("Once upon")], done=False)
            + b'error: {"code":500,"message":"Context size has been exceeded.","type":"server_error"}\n\n'
            + b"data: [DONE]\n\n")
    fake.push(fo.stream(body, crlf=True))
    r = ask(cli, fake, "--jsonl", "hi")
    assert r.code == 6 and r.events[-1]["code"] == "provider", r
    assert "Context size has been exceeded" in one_error_line(r)
    msg = only_conv(home)["messages"][-1]
    assert (msg["status"], msg["text"]) == ("failed", "Once upon")


def test_end_without_done_after_a_finish_reason_is_a_success(cli, fake):
    fake.push(fo.answer("all", " there", done=False))
    r = ask(cli, fake, "hi")
    assert r.code == 0 and r.stdout == "all there\n", r


def test_sigterm_in_text_mode_keeps_the_partial_answer_on_stdout(cli, fake, home):
    fake.push(fo.slow_answer(["alpha ", "beta ", "gamma "] * 30, 0.2))
    proc = cli.spawn("ask", "-p", "openai", "--base-url", fake.base_url, "hi")
    assert proc.stdout.read(6) == b"alpha "
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    stdout = "alpha " + out.decode()
    msg = only_conv(home)["messages"][-1]
    assert msg["status"] == "stopped" and stdout == msg["text"] + "\n"
    assert "stopped" in err.decode() and "Traceback" not in err.decode()


def test_base_url_without_v1_gets_a_hint(cli, server):
    fake = fo.FakeOpenAI(server)  # serves /v1/...; the user forgot the /v1
    r = cli("ask", "-p", "openai", "--base-url", server.url, "-m", "m", "--jsonl", "hi")
    assert r.code == 6 and r.events[-1]["code"] == "not_found", r
    line = one_error_line(r)
    assert "/v1" in line and "--base-url" in line
    assert not fake.chats


def test_in_stream_rate_limit_before_any_answer_is_retried(cli, fake):
    fake.push(fo.stream(fo.frames([fo.chunk("", role=True), {"error": {"message": "Rate limit", "code": "429",
                                                                      "type": "throttling_error"}}], done=False)))
    r = ask(cli, fake, "--retries", "1", "hi")
    assert r.code == 0 and r.stdout == "Hello from the fake.\n", r
    assert len(fake.chats) == 2


def test_jsonl_same_bytes_on_a_terminal_and_a_pipe(cli, fake):
    import re

    def norm(data: bytes) -> bytes:
        return re.sub(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", b"<id>", data)

    fake.push(fo.answer("same ", "bytes"), fo.answer("same ", "bytes"))
    piped = ask(cli, fake, "--jsonl", "hi")
    assert piped.code == 0
    master, slave = pty.openpty()
    import termios

    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no \n -> \r\n translation: compare what chatcli wrote
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    proc = cli.spawn("ask", "-p", "openai", "--base-url", fake.base_url, "--jsonl", "hi", stdout=slave,
                     env={"TERM": "xterm-256color"})
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    os.close(master)
    assert proc.wait(timeout=20) == 0
    assert norm(out) == norm(piped.stdout.encode())


def test_error_after_reasoning_is_still_its_own_stderr_line(cli, fake, home):
    fake.push(fo.stream(fo.frames([fo.chunk(reasoning="let me think"), {"error": {"message": "engine died"}}])))
    r = ask(cli, fake, "hi")
    assert r.code == 6, r
    assert r.stdout == ""
    assert "engine died" in one_error_line(r)
    assert "let me think" in r.stderr
    assert only_conv(home)["messages"][-1]["reasoning"] == "let me think"
