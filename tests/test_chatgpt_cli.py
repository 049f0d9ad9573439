"""The chatgpt provider end to end: the real chatcli subprocess against the loopback
backend-api (tests/loopback/chatgpt.py) in text and --jsonl modes, with the contract's
exit codes, plus in-process checks of socket clean-up."""

from __future__ import annotations

import json
import threading
import os
import time
from pathlib import Path

import pytest

from loopback.chatgpt import TOKEN, WS_TOKEN, backend_fixture

chatgpt = backend_fixture()
ENV = {"CHATGPT_ACCESS_TOKEN": TOKEN}
SECRETS = (TOKEN, WS_TOKEN, "SECRET123", "WSSECRET456")


def ask(cli, backend, *args, cmd="ask", env=None, **kw):
    return cli(cmd, "-p", "chatgpt", "--base-url", backend.base_url, *args, env={**ENV, **(env or {})}, **kw)


def no_secrets(result, home: Path) -> None:
    for secret in SECRETS:
        assert secret not in result.stdout and secret not in result.stderr
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_text(errors="replace")
            for secret in SECRETS:
                assert secret not in data, path


def deltas(events):
    return "".join(e["text"] for e in events if e["type"] == "delta")


def stored(home: Path, cid: str | None = None) -> tuple[dict, list[dict]]:
    """The saved conversation (newest, or `cid`) and its thread, read with chatcli.store
    in-process (the `history` command itself is exercised by test_history_remote_...)."""
    from chatcli import store

    st = store.Store(home)
    conv = st.load(cid or st.list()[0]["conversation_id"])
    return conv, store.thread(conv)


def last_thread(home: Path) -> list[dict]:
    return stored(home)[1]


def one_error_line(r, code):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("chatcli: error: "), r.stderr
    assert "Traceback" not in r.stderr
    assert r.events[-1]["type"] == "error" and r.events[-1]["code"] == code


# ----- answers in the three encodings ------------------------------------------------------


@pytest.mark.parametrize("encoding", ["legacy", "v1"])
def test_ask_and_continue_sse(cli, chatgpt, home, encoding):
    chatgpt.encoding = encoding
    chatgpt.answer = "Bonjour ! 你好 🌍"
    chatgpt.split = [1, 3, 2]  # inside multi-byte characters
    chatgpt.crlf = encoding == "v1"
    chatgpt.keepalive = True
    r = ask(cli, chatgpt, "--jsonl", "hello", "there")
    assert r.code == 0, r
    ev = r.events
    assert ev[0]["type"] == "start" and ev[0]["provider"] == "chatgpt" and ev[0]["model"] == "auto"
    assert deltas(ev) == "Bonjour ! 你好 🌍" == ev[-1]["text"]
    done = ev[-1]
    cid = next(iter(chatgpt.conversations))
    assert done["type"] == "done" and done["conversation_id"] == cid == ev[0]["conversation_id"]
    assert done["finish_reason"] == "stop"
    mapping = chatgpt.conversations[cid]["mapping"]
    assert done["message_id"] == chatgpt.conversations[cid]["current_node"]
    first = chatgpt.sent[0]
    assert done["parent_id"] == first["messages"][0]["id"]
    assert "conversation_id" not in first and first["model"] == "auto" and first["force_use_sse"] is True
    assert first["supported_encodings"] == ["v1"] and first["parent_message_id"] not in mapping

    r2 = cli("continue", "again", env=ENV)  # text mode; provider and base URL come from the conversation
    assert r2.code == 0, r2
    assert r2.stdout == "Bonjour ! 你好 🌍\n"
    second = chatgpt.sent[1]
    assert second["conversation_id"] == cid and second["parent_message_id"] == done["message_id"]
    assert second["model"] == "auto" and second["websocket_request_id"] != first["websocket_request_id"]
    conv, hist = stored(home, cid)
    assert [m["role"] for m in hist] == ["user", "assistant", "user", "assistant"]
    assert hist[2]["message_id"] == second["messages"][0]["id"]
    assert chatgpt.conversations[cid]["title"] == "Hello There" == conv["title"]
    no_secrets(r, home)


def test_headers_device_id_language_and_options(cli, chatgpt, home):
    r = ask(cli, chatgpt, "-m", "gpt-4o", "-o", "history_and_training_disabled=true", "-o", "language=fr-FR",
            "-o", "timezone_offset_min=-480", "hi")
    assert r.code == 0, r
    r = ask(cli, chatgpt, "hi")
    assert r.code == 0, r
    sends = chatgpt.srv.requests_to("/backend-api/conversation", "POST")
    h1, h2 = sends[0].headers, sends[1].headers
    assert h1["authorization"] == f"Bearer {TOKEN}" and h1["accept"] == "text/event-stream"
    assert h1["oai-device-id"] == h2["oai-device-id"] == (home / "chatgpt-device-id").read_text().strip()
    assert oct((home / "chatgpt-device-id").stat().st_mode & 0o777) == "0o600"
    assert h1["oai-language"] == "fr-FR" and h2["oai-language"] == "en-US"
    assert h1["openai-sentinel-chat-requirements-token"].startswith("gAAAAABloopback-")
    b1, b2 = chatgpt.sent
    assert b1["model"] == "gpt-4o" and b1["history_and_training_disabled"] is True and b1["timezone_offset_min"] == -480
    assert b2["model"] == "auto" and b2["history_and_training_disabled"] is False
    reqs = chatgpt.srv.requests_to("/backend-api/sentinel/chat-requirements")
    assert len(reqs) == 2 and json.loads(reqs[0].body)["p"].startswith("gAAAAAC")


def test_profile_sets_history_disabled(cli, chatgpt, home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[profiles.gpt]\nprovider = "chatgpt"\nbase_url = "{chatgpt.base_url}"\n'
        'api_key_env = "MY_GPT_TOKEN"\nhistory_and_training_disabled = true\n')
    r = cli("ask", "--profile", "gpt", "hi", env={"MY_GPT_TOKEN": TOKEN})
    assert r.code == 0, r
    assert chatgpt.sent[0]["history_and_training_disabled"] is True


def test_system_prompt_is_refused_before_sending(cli, chatgpt):
    r = ask(cli, chatgpt, "--jsonl", "-s", "be terse", "hi")
    assert r.code == 2, r
    one_error_line(r, "config")
    assert not chatgpt.sent and "system" in r.stderr


def test_branch_with_parent(cli, chatgpt):
    assert ask(cli, chatgpt, "one").code == 0
    first_answer = next(iter(chatgpt.conversations.values()))["current_node"]
    assert ask(cli, chatgpt, "two", cmd="continue").code == 0
    r = ask(cli, chatgpt, "--jsonl", "--parent", first_answer, "two again", cmd="continue")
    assert r.code == 0, r
    assert chatgpt.sent[2]["parent_message_id"] == first_answer
    assert r.events[0]["parent_id"] == first_answer
    # a plain continue follows the branch just made
    assert ask(cli, chatgpt, "three", cmd="continue").code == 0
    assert chatgpt.sent[3]["parent_message_id"] == r.events[-1]["message_id"]
    # the server's tree has both branches; the remote thread follows current_node
    remote = cli("history", r.events[-1]["conversation_id"], "--remote", "--jsonl", env=ENV).events
    assert [m["text"] for m in remote if m["role"] == "user"] == ["one", "two again", "three"]


@pytest.mark.parametrize("preconnect", [True, False])
def test_websocket_mode(cli, chatgpt, home, preconnect):
    chatgpt.websocket_account = True
    if not preconnect:
        chatgpt.ignore_force_sse = True  # an old server that answers JSON anyway
    chatgpt.answer = " ".join(f"w{i}" for i in range(25))
    args = ["-o", "websocket=true"] if preconnect else []
    r = ask(cli, chatgpt, "--jsonl", *args, "hi")
    assert r.code == 0, r
    assert deltas(r.events) == chatgpt.answer
    body = chatgpt.sent[0]
    assert ("force_use_sse" not in body) is preconnect
    assert chatgpt.ws.offered[0] == ["json.reliable.webpubsub.azure.v1", "json.webpubsub.azure.v1"]
    assert chatgpt.srv.wait_for(lambda: chatgpt.ws.acks and chatgpt.ws.acks[-1] >= 30)
    assert chatgpt.ws.acks[0] == 10  # batched, then the last one at the end
    assert len(chatgpt.srv.requests_to("/backend-api/register-websocket")) == (1 if preconnect else 0)
    no_secrets(r, home)
    raw = ask(cli, chatgpt, "--raw", *args, "again", cmd="continue")
    assert raw.code == 0, raw
    lines = [json.loads(line) for line in raw.stdout.splitlines()]
    assert lines[0]["data"]["wss_url"].endswith("access_token=[REDACTED]")
    no_secrets(raw, home)


def test_websocket_fallback_url_then_sse(cli, chatgpt):
    chatgpt.websocket_account = chatgpt.ignore_force_sse = True
    chatgpt.fault = "ws_primary_broken"
    r = ask(cli, chatgpt, "--jsonl", "hi")
    assert r.code == 0, r
    assert [p.split("?")[0] for p in chatgpt.ws.connects] == ["/broken", "/client/hubs/conversations"]
    chatgpt.fault = "ws_all_broken"
    chatgpt.ignore_force_sse = False  # the retry with force_use_sse: true is answered with SSE
    r = ask(cli, chatgpt, "--jsonl", "-o", "websocket=false", "hi")
    assert r.code == 0, r
    assert deltas(r.events) == "You said: hi"


def test_websocket_closing_early_is_a_network_error(cli, chatgpt, home):
    chatgpt.websocket_account = chatgpt.ignore_force_sse = True
    chatgpt.fault = "ws_close_early"
    r = ask(cli, chatgpt, "--jsonl", "hi there friend")
    assert r.code == 5, r
    one_error_line(r, "network")
    assert last_thread(home)[-1]["status"] == "failed"


def test_json_answer_without_wss_url(cli, chatgpt):
    chatgpt.websocket_account = chatgpt.ignore_force_sse = True
    chatgpt.fault = "no_wss_url"
    r = ask(cli, chatgpt, "--jsonl", "hi")
    assert r.code == 6, r
    one_error_line(r, "protocol")
    assert "wss_url" in r.stderr


def test_websocket_timeout(cli, chatgpt):
    chatgpt.websocket_account = chatgpt.ignore_force_sse = True
    chatgpt.delay = 3.0
    r = ask(cli, chatgpt, "--jsonl", "--timeout", "0.5", "hi")
    assert r.code == 5, r
    one_error_line(r, "timeout")


def test_sse_timeout(cli, chatgpt):
    chatgpt.delay = 3.0
    r = ask(cli, chatgpt, "--jsonl", "--timeout", "0.5", "hi")  # accepted by the server: never resent
    assert r.code == 5, r
    one_error_line(r, "timeout")


# ----- sentinel ----------------------------------------------------------------------------------


def test_proof_of_work_is_solved_and_verified(cli, chatgpt):
    chatgpt.pow_difficulty = "0fffff"
    r = ask(cli, chatgpt, "hi")
    assert r.code == 0, r
    send = chatgpt.srv.requests_to("/backend-api/conversation", "POST")[0]
    assert send.headers["openai-sentinel-proof-token"].startswith("gAAAAAB")


def test_turnstile_required_is_actionable(cli, chatgpt):
    chatgpt.turnstile = True
    r = ask(cli, chatgpt, "--jsonl", "hi")
    assert r.code == 3, r
    one_error_line(r, "auth")
    assert "Turnstile" in r.stderr and "CHATGPT_BASE_URL" in r.stderr
    assert not chatgpt.sent


def test_host_without_sentinel(cli, chatgpt):
    chatgpt.sentinel_404 = True
    r = ask(cli, chatgpt, "hi")
    assert r.code == 0, r
    assert "openai-sentinel-chat-requirements-token" not in chatgpt.srv.requests_to(
        "/backend-api/conversation", "POST")[0].headers


# ----- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault,code,exit_code,words", [
    ("401", "auth", 3, ["expired", "CHATGPT_ACCESS_TOKEN"]),
    ("403html", "auth", 3, ["Cloudflare"]),
    ("429", "rate_limit", 4, ["too many messages", "3h 11m"]),
    ("413", "provider", 6, ["too long"]),
    ("422", "provider", 6, ["field required"]),
    ("stream_error", "provider", 6, ["unusual activity"]),
    ("drop", "network", 5, ["connection"]),
    ("moderation_blocked", "provider", 6, ["moderation"]),
])
def test_errors(cli, chatgpt, home, fault, code, exit_code, words):
    chatgpt.fault = fault
    chatgpt.encoding = "legacy"
    chatgpt.answer = "one two three four five six"
    r = ask(cli, chatgpt, "--jsonl", "--retries", "0", "hi")
    assert r.code == exit_code, r
    one_error_line(r, code)
    for w in words:
        assert w.lower() in r.stderr.lower()
    assert "<html" not in r.stderr.lower() and len(r.stderr) < 600
    no_secrets(r, home)
    if fault in ("403html", "429", "drop"):  # text mode: the same one line, the same exit code
        text = ask(cli, chatgpt, "--retries", "0", "hi")
        assert text.code == exit_code and text.stderr.count("chatcli: error:") == 1


def test_in_stream_error_v1_and_partial_answer_saved(cli, chatgpt, home):
    chatgpt.fault = "stream_error"
    chatgpt.answer = "one two three four"
    r = ask(cli, chatgpt, "--jsonl", "hi")
    assert r.code == 6, r
    assert deltas(r.events) == "one two"
    hist = last_thread(home)
    assert hist[-1]["status"] == "failed" and hist[-1]["text"] == "one two"


def test_unknown_conversation_is_not_found(cli, chatgpt):
    assert ask(cli, chatgpt, "hi").code == 0
    chatgpt.conversations.clear()  # deleted on the server
    r = ask(cli, chatgpt, "--jsonl", "again", cmd="continue")
    assert r.code == 6, r
    one_error_line(r, "not_found")
    assert "Conversation not found" in r.stderr


# ----- stop and history --------------------------------------------------------------------------


@pytest.mark.parametrize("websocket", [False, True])
def test_stop_from_another_process(cli, chatgpt, home, websocket):
    chatgpt.answer = " ".join(f"word{i}" for i in range(60))
    chatgpt.delay = 0.1
    if websocket:
        chatgpt.websocket_account = True
    args = ["-o", "websocket=true"] if websocket else []
    proc = cli.spawn("ask", "-p", "chatgpt", "--base-url", chatgpt.base_url, "--jsonl", *args, "count",
                     env=ENV)
    inflight = home / "inflight"

    def has_handle():
        for f in inflight.glob("*.json") if inflight.exists() else ():
            try:
                if json.loads(f.read_text()).get("stop"):
                    return True
            except ValueError:
                pass
        return False

    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, b"")), daemon=True)
    reader.start()
    try:
        assert chatgpt.srv.wait_for(has_handle, timeout=20)
        # Stop once some answer text is out (read from the owner's own stdout, not a sleep).
        assert chatgpt.srv.wait_for(lambda: any(b'"delta"' in x for x in list(lines)), timeout=20)
        r = cli("stop")
        assert r.code == 0, r
        proc.wait(timeout=30)
        reader.join(timeout=10)
        out, err = b"".join(lines), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "stopped"
    partial = events[-1]["text"]
    assert partial and partial == deltas(events) and partial != chatgpt.answer, (err, events)
    body = chatgpt.sent[0]
    cid = next(iter(chatgpt.conversations))
    handle = {"conversation_id": cid, "websocket_request_id": body["websocket_request_id"]}
    if not websocket:  # a delta-v1 SSE turn: the 2025 shape of spec §8 as well
        handle["exclude_async_types"] = []
    assert chatgpt.stops == [handle]
    hist = stored(home, cid)[1]
    assert hist[-1]["status"] == "stopped" and hist[-1]["text"] == partial
    conv = chatgpt.conversations[cid]
    assert chatgpt.srv.wait_for(lambda: conv["mapping"][conv["current_node"]]["message"]["metadata"]
                                .get("finish_details", {}).get("type") == "interrupted", timeout=10)


def test_history_remote_walks_the_mapping(cli, chatgpt):
    assert ask(cli, chatgpt, "first").code == 0
    assert ask(cli, chatgpt, "second", cmd="continue").code == 0
    cid = next(iter(chatgpt.conversations))
    r = cli("history", cid, "--remote", "--jsonl", env=ENV)
    assert r.code == 0, r
    msgs = r.events
    assert [(m["role"], m["text"]) for m in msgs] == [
        ("user", "first"), ("assistant", "You said: first"), ("user", "second"), ("assistant", "You said: second")]
    local = cli("history", cid, "--jsonl").events
    assert [m["message_id"] for m in msgs] == [m["message_id"] for m in local]
    chatgpt.conversations.clear()
    r = cli("history", cid, "--remote", "--jsonl", env=ENV)
    assert r.code == 6 and "Can't load conversation" in r.stderr


# ----- in-process: sockets are closed with the generator -----------------------------------------


def _provider(chatgpt, **extra):
    from chatcli.config import Settings
    from chatcli.providers.chatgpt import ChatGPT

    return ChatGPT(Settings(provider="chatgpt", base_url=chatgpt.base_url, api_key=TOKEN, timeout=10,
                            connect_timeout=5, extra=extra))


def test_closing_the_generator_closes_the_websocket(chatgpt):
    from chatcli.events import Delta
    from chatcli.providers.base import Turn

    chatgpt.websocket_account = True
    chatgpt.delay = 0.2
    chatgpt.answer = " ".join(["slow"] * 40)
    provider = _provider(chatgpt, websocket=True)
    gen = provider.stream(Turn(prompt="hi", user_message_id="aaa2-test"))
    for event in gen:
        if isinstance(event, Delta):
            break
    assert len(chatgpt.ws.conns) == 1
    gen.close()
    assert chatgpt.srv.wait_for(lambda: not chatgpt.ws.conns, timeout=5)
    provider.close()


def test_closing_the_generator_closes_the_sse_stream(chatgpt):
    from chatcli.events import Delta
    from chatcli.providers.base import Turn

    chatgpt.delay = 0.2
    chatgpt.answer = " ".join(["slow"] * 40)
    provider = _provider(chatgpt)
    gen = provider.stream(Turn(prompt="hi", user_message_id="aaa2-test"))
    for event in gen:
        if isinstance(event, Delta):
            break
    gen.close()
    assert chatgpt.srv.wait_for(lambda: chatgpt.srv.disconnects, timeout=5)
    provider.close()


def test_remote_conversations(chatgpt):
    for cid in ("c-1", "c-2"):
        chatgpt.next_conversation_id = cid
        provider = _provider(chatgpt)
        from chatcli.providers.base import Turn

        list(provider.stream(Turn(prompt=f"hello {cid}", user_message_id=f"u-{cid}")))
        provider.close()
    provider = _provider(chatgpt)
    convs = provider.remote_conversations()
    provider.close()
    assert [c["conversation_id"] for c in convs] == ["c-2", "c-1"]
    assert convs[0]["title"] == "Hello C-2" and convs[0]["created_at"].endswith("Z")
    assert os.environ.get("CHATGPT_ACCESS_TOKEN") is None


def test_failure_before_the_send_is_retried_but_nothing_is_sent(cli, chatgpt):
    chatgpt.fault = "sentinel_500"
    r = ask(cli, chatgpt, "--jsonl", "--retries", "1", "hi")
    assert r.code == 6, r
    assert r.events[-1]["code"] == "provider" and r.events[-1]["status"] == 500
    assert "retrying" in r.stderr and len(chatgpt.srv.requests_to("/backend-api/sentinel/chat-requirements")) == 2
    assert not chatgpt.sent


def test_expired_token_is_refused_without_a_request(cli, chatgpt, home):
    import base64

    b64 = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).decode().rstrip("=")  # noqa: E731
    expired = b64({"alg": "RS256"}) + "." + b64({"exp": 1700000000, "sub": "u"}) + ".SECRETSIG789"
    r = ask(cli, chatgpt, "--jsonl", "hi", env={"CHATGPT_ACCESS_TOKEN": expired})
    assert r.code == 3, r
    one_error_line(r, "auth")
    assert "expired at 2023-11-14" in r.stderr and "api/auth/session" in r.stderr
    assert not chatgpt.srv.requests
    assert "SECRETSIG789" not in r.stdout + r.stderr


def test_loopback_session_and_patch_endpoints(chatgpt):
    import httpx

    with httpx.Client(base_url=chatgpt.srv.url) as c:
        assert c.get("/api/auth/session").json() == {}
        session = c.get("/api/auth/session", headers={"Cookie": "__Secure-next-auth.session-token=x"}).json()
        assert session["accessToken"].count(".") == 2
        from chatcli.providers.chatgpt.wire_errors import token_expiry

        assert token_expiry(session["accessToken"]) > time.time()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/backend-api/conversations", headers={"Authorization": "Bearer nope"}).status_code == 401
        provider = _provider(chatgpt)
        from chatcli.providers.base import Turn

        list(provider.stream(Turn(prompt="x", user_message_id="u-1")))
        provider.close()
        cid = next(iter(chatgpt.conversations))
        assert c.patch(f"/backend-api/conversation/{cid}", json={"title": "Renamed"}, headers=auth).json() == {
            "success": True}
        listing = c.get("/backend-api/conversations", headers=auth).json()
        assert listing["items"][0]["title"] == "Renamed" and listing["has_missing_conversations"] is False
