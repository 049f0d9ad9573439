"""Retries and timeouts, counted at the server.

Retries happen only before the first answer byte, with jittered exponential backoff,
honouring Retry-After up to a cap, never on 401/403 or on "one message at a time"
(Coze 4016, ChatGPT "Only one message at a time"), within a total deadline, each one noted
on stderr. The connect timeout (profile `connect_timeout`) is separate from `--timeout`
(the longest silence once connected).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from conftest import PEERS, require
from reliability import harness
from reliability.faults import PARTIAL, FaultServer
from reliability.wire import OPENAI, WIRES

RETRY_NOTE = re.compile(r"^chatcli: warning: .*retrying in (\d+\.\d)s \(attempt (\d) of (\d)\)$", re.M)


def _wire(provider: str):
    wire = WIRES[provider]
    if not wire.available():
        pytest.fail(f"{wire.module} is missing: every provider is part of chatcli")
    return wire


def _ask(cli, fs: FaultServer, *extra: str, timeout: str = "10") -> harness.Run:
    return harness.run(cli, ["ask", *fs.args(), "--jsonl", "--timeout", timeout, *extra, "hi"], env=fs.env(),
                       timeout=60)


FIRST_FAULTS = ["http_503", "http_502", "http_500", "html_error_502", "stall_before_headers", "stall_after_headers"]
# Every first fault for openai; two for the other providers (each stall costs --timeout).
# (Not stall_after_headers for the stateful services: their headers already mean the turn
# was recorded, e.g. ChatGPT's stop handle, so no retry is right there.)
CASES = [("openai", f) for f in FIRST_FAULTS] + [(p, f) for p in WIRES if p != "openai"
                                                 for f in ("http_503", "stall_before_headers")]


@pytest.mark.parametrize(("provider", "first"), CASES)
def test_retry_before_the_first_byte_then_succeed(cli, provider: str, first: str) -> None:
    with FaultServer(_wire(provider)) as fs:
        fs.fault = [first, "ok"]
        r = _ask(cli, fs, "--retries", "2", timeout="1.5")
        assert len(fs.answer_requests) == 2, r
    assert r.code == 0, r
    notes = RETRY_NOTE.findall(r.stderr)
    assert len(notes) == 1 and notes[0][1:] == ("2", "3"), r.stderr
    assert harness.error_lines(r.stderr) == []
    events = r.events
    assert [e["type"] for e in events].count("start") == 1, events
    assert events[-1]["type"] == "done" and events[-1]["text"] == "Hello, wörld 日本語!"
    msgs = harness.messages(cli)
    assert [(m["role"], m["status"]) for m in msgs] == [("user", "complete"), ("assistant", "complete")]


@pytest.mark.parametrize("provider", list(WIRES))
def test_retries_exhausted(cli, provider: str) -> None:
    with FaultServer(_wire(provider)) as fs:
        fs.fault = "http_503"
        r = _ask(cli, fs, "--retries", "2")
        assert len(fs.answer_requests) == 3, r
    harness.assert_designed_failure(r, 6, "provider")
    assert [n[1:] for n in RETRY_NOTE.findall(r.stderr)] == [("2", "3"), ("3", "3")], r.stderr


@pytest.mark.parametrize("provider", list(WIRES))
@pytest.mark.parametrize("fault", ["stall_mid_answer", "drop_mid_event", "eof_mid_answer", "truncated_utf8"])
def test_never_retry_after_the_first_answer_byte(cli, provider: str, fault: str) -> None:
    with FaultServer(_wire(provider)) as fs:
        fs.fault = [fault, "ok"]
        r = _ask(cli, fs, "--retries", "3", timeout="1.5")
        assert len(fs.answer_requests) == 1, r
    assert r.code == 5, r
    assert not RETRY_NOTE.search(r.stderr), r.stderr
    msgs = harness.messages(cli)
    assert msgs[-1]["status"] == "failed" and msgs[-1]["text"] == PARTIAL


@pytest.mark.parametrize("provider", list(WIRES))
def test_never_retry_once_the_service_recorded_the_turn(cli, provider: str) -> None:
    """The first events named the conversation/message (Dify, Coze, ChatGPT): the question
    is in the remote conversation, so a retry would ask it twice. openai keeps nothing: retried."""
    from reliability.faults import FAULTS

    def accepted_then_drop(w, ex):
        ex.start(200)
        ex.write(w.preamble())
        ex.drop()

    FAULTS.setdefault("accepted_then_drop", accepted_then_drop)
    with FaultServer(_wire(provider)) as fs:
        fs.fault = ["accepted_then_drop", "ok"]
        r = _ask(cli, fs, "--retries", "2")
        n = len(fs.answer_requests)
    if provider == "openai":
        assert n == 2 and r.code == 0, r
    else:
        assert n == 1, r
        harness.assert_designed_failure(r, 5, "network")


@pytest.mark.parametrize("provider", list(WIRES))
@pytest.mark.parametrize("status", [401, 403])
def test_never_retry_auth(cli, provider: str, status: int) -> None:
    from reliability.faults import FAULTS, _error

    FAULTS.setdefault(f"http_{status}", _error(status))
    with FaultServer(_wire(provider)) as fs:
        fs.fault = f"http_{status}"
        r = _ask(cli, fs, "--retries", "3")
        assert len(fs.answer_requests) == 1, r
    harness.assert_designed_failure(r, 3, None)
    assert not RETRY_NOTE.search(r.stderr)


def test_retry_after_is_honoured(cli) -> None:
    with FaultServer(OPENAI) as fs:
        fs.fault = ["http_429_retry_after", "ok"]  # Retry-After: 1
        r = _ask(cli, fs, "--retries", "1")
        assert len(fs.answer_requests) == 2, r
    assert r.code == 0, r
    assert [n[0] for n in RETRY_NOTE.findall(r.stderr)] == ["1.0"], r.stderr


def test_retry_after_beyond_the_cap_is_not_waited_for(cli) -> None:
    from reliability.faults import FAULTS, _error

    FAULTS.setdefault("http_429_retry_after_3600", _error(429, {"Retry-After": "3600"}))
    with FaultServer(OPENAI) as fs:
        fs.fault = ["http_429_retry_after_3600", "ok"]
        r = _ask(cli, fs, "--retries", "3")
        assert len(fs.answer_requests) == 1, r
    harness.assert_designed_failure(r, 4, "rate_limit")
    assert r.events[-1]["retryable"] is True


def test_backoff_is_jittered_and_grows(cli) -> None:
    with FaultServer(OPENAI) as fs:
        fs.fault = ["http_500", "http_500", "ok"]
        r = _ask(cli, fs, "--retries", "2")
        assert len(fs.answer_requests) == 3
    delays = [float(n[0]) for n in RETRY_NOTE.findall(r.stderr)]
    # 0.5 s * 2**attempt, times a jitter factor in [0.5, 1.5)
    assert 0.2 <= delays[0] <= 0.8 and 0.4 <= delays[1] <= 1.5, delays


def test_retry_delay_rules_unit() -> None:
    """The pure rules of run._Turn._retry_delay: deadline, cap, first byte, flags."""
    import time

    from chatcli import run
    from chatcli.config import Settings
    from chatcli.errors import AuthError, ProviderError, RateLimited

    t = run._Turn.__new__(run._Turn)
    t.answer_started = False
    t.accepted = False
    s = Settings(provider="openai", retries=5)
    far = time.monotonic() + 1000
    assert t._retry_delay(ProviderError("x", retryable=True), 0, s, far) is not None
    assert t._retry_delay(ProviderError("x", retryable=False), 0, s, far) is None
    assert t._retry_delay(AuthError("x", retryable=True), 0, s, far) is None  # never on 401/403
    assert t._retry_delay(ProviderError("x", retryable=True), 5, s, far) is None  # attempts used up
    assert t._retry_delay(ProviderError("x", retryable=True), 0, s, time.monotonic()) is None  # deadline
    assert t._retry_delay(RateLimited("x", retryable=True, retry_after=7.0), 0, s, far) == 7.0
    assert t._retry_delay(RateLimited("x", retryable=True, retry_after=run.RETRY_AFTER_CAP + 1), 0, s, far) is None
    for attempt in range(4):
        d = t._retry_delay(ProviderError("x", retryable=True), attempt, s, far)
        assert 0.25 * 2**attempt <= d < min(8.0, 0.5 * 2**attempt) * 1.5
    t.answer_started = True
    assert t._retry_delay(ProviderError("x", retryable=True), 0, s, far) is None


def test_one_message_at_a_time_is_not_retried_coze(cli) -> None:
    wire = _wire("coze")
    with FaultServer(wire) as fs:
        fs.srv.route(wire.method, wire.path, lambda ex: ex.send_json(
            200, {"code": 4016, "msg": "a chat is already running in this conversation"}))
        r = _ask(cli, fs, "--retries", "3")
        assert len(fs.srv.requests_to(wire.path)) == 1, r
    assert r.code in (4, 6), r
    assert not RETRY_NOTE.search(r.stderr)


def test_one_message_at_a_time_is_not_retried_chatgpt(cli) -> None:
    wire = _wire("chatgpt")
    detail = ("Only one message at a time. Please allow any other responses to complete before sending another "
              "message, or wait one minute.")
    with FaultServer(wire) as fs:
        fs.srv.route(wire.method, wire.path, lambda ex: ex.send_json(429, {"detail": detail}))
        r = _ask(cli, fs, "--retries", "3")
        assert len(fs.srv.requests_to(wire.path)) == 1, r
    assert r.code in (4, 6), r
    assert not RETRY_NOTE.search(r.stderr)
    assert r.events[-1]["retryable"] is False


# ----- connect timeout vs --timeout ------------------------------------------------------------


@pytest.fixture
def blackhole():
    """A port whose accept queue is full: a connect() to it hangs (SYNs are dropped)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    yield f"http://127.0.0.1:{port}/v1"
    for c in fillers:
        c.close()
    srv.close()


def _profile(cli, **keys: object) -> None:
    cli.home.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in keys.items())
    (cli.home / "config.toml").write_text(f"[profiles.t]\nprovider = 'openai'\nmodel = 'm'\n{body}\n")


def test_connect_timeout_is_its_own_setting(cli, blackhole) -> None:
    probe = socket.create_connection
    try:  # the kernel may accept into the backlog anyway: then this box cannot black-hole loopback
        s = probe(("127.0.0.1", int(blackhole.rsplit(":", 1)[1].split("/")[0])), timeout=0.5)
        s.close()
        pytest.skip("loopback connections are not held back on this kernel")
    except (TimeoutError, OSError):
        pass
    _profile(cli, connect_timeout=0.5)
    r = harness.run(cli, ["ask", "--profile", "t", "--base-url", blackhole, "--jsonl", "--timeout", "60",
                          "--retries", "0", "hi"], timeout=20)
    harness.assert_designed_failure(r, 5, "timeout")
    assert "connecting" in r.events[-1]["message"], r
    assert r.seconds < 15  # bounded by connect_timeout, not --timeout 60 (generous: not a timing test)


def test_read_timeout_is_not_the_connect_timeout(cli) -> None:
    from reliability.faults import FAULTS

    def slow_first_byte(w, ex):
        ex.start(200)
        if not ex.sleep_or_gone(1.0):
            ex.write(w.answer(["late but fine"]))

    FAULTS.setdefault("slow_first_byte", slow_first_byte)
    _profile(cli, connect_timeout=0.2)
    with FaultServer(OPENAI) as fs:
        fs.fault = "slow_first_byte"
        r = harness.run(cli, ["ask", "--profile", "t", "--base-url", fs.base_url, "--jsonl", "--timeout", "10",
                              "--retries", "0", "hi"], env=fs.env(), timeout=30)
    assert r.code == 0, r
    assert r.events[-1]["text"] == "late but fine"


# ----- llmock: a third-party fault injector -------------------------------------------------------


LLMOCK = PEERS / "llmock-venv" / "bin" / "llmock"


@pytest.fixture
def llmock():
    require(LLMOCK.exists(), "llmock (tests/peers/llmock-faults.sh)")
    import time
    import urllib.request

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen([str(LLMOCK), "serve", "-h", "127.0.0.1", "-p", str(port), "--stream-chunk-delay-ms", "1",
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/v1/models", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("llmock exited at start")
                time.sleep(0.05)

        def scenario(*behaviors: dict) -> None:
            import json

            req = urllib.request.Request(base + "/_llmock/scenario", data=json.dumps({"behaviors": list(behaviors)})
                                         .encode(), headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=5).read()

        yield base, scenario
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _llm_ask(cli, base: str, *extra: str) -> harness.Run:
    return harness.run(cli, ["ask", "-p", "openai", "-m", "m", "--base-url", base + "/v1", "--jsonl", "--timeout", "5",
                             *extra, "hi"], env={"OPENAI_API_KEY": OPENAI.token}, timeout=60)


def test_llmock_faults(cli, llmock) -> None:
    base, scenario = llmock
    # 429 with Retry-After: 1 (and retry-after-ms), then a scripted answer: one retry, honoured.
    scenario({"type": "fail", "status": 429, "retry_after": 1}, {"type": "reply", "text": "Scripted answer: 42"})
    r = _llm_ask(cli, base, "--retries", "2")
    assert r.code == 0 and r.events[-1]["text"] == "Scripted answer: 42", r
    assert [n[0] for n in RETRY_NOTE.findall(r.stderr)] == ["1.0"], r.stderr
    # A TCP drop after 2 chunks: exit 5, no retry (the answer had started), partial kept.
    scenario({"type": "stream_fault", "kind": "disconnect", "after_chunks": 2}, {"type": "reply", "text": "no"})
    r = _llm_ask(cli, base, "--retries", "2")
    harness.assert_designed_failure(r, 5, "network")
    assert not RETRY_NOTE.search(r.stderr)
    # A clean EOF without finish_reason or [DONE]: cut off -> network.
    scenario({"type": "stream_fault", "kind": "truncate", "after_chunks": 2})
    r = _llm_ask(cli, base, "--retries", "0")
    harness.assert_designed_failure(r, 5, "network")
    # A chunk cut mid-JSON: protocol error.
    scenario({"type": "stream_fault", "kind": "malformed", "after_chunks": 2})
    r = _llm_ask(cli, base, "--retries", "0")
    harness.assert_designed_failure(r, 6, "protocol")
    # A 2 s stall mid-answer with --timeout 1: timeout.
    scenario({"type": "stream_fault", "kind": "stall", "after_chunks": 2, "stall_seconds": 3})
    r = harness.run(cli, ["ask", "-p", "openai", "-m", "m", "--base-url", base + "/v1", "--jsonl", "--timeout", "1",
                          "--retries", "0", "hi"], env={"OPENAI_API_KEY": OPENAI.token}, timeout=60)
    harness.assert_designed_failure(r, 5, "timeout")
    msgs = [m for m in harness.messages(cli, harness.conversations(cli)[0]["conversation_id"])]
    assert msgs[-1]["status"] == "failed"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
