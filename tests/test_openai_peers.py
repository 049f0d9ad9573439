"""chatcli's openai provider against real third-party servers (tests/peers.py):
llama-cpp-python's OpenAI-compatible server with a real model, and llmock's scripted faults."""

from __future__ import annotations

import json
import signal

import pytest

from peers import MODEL_ALIAS, get, lcp_server, llmock_server, post_json  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def convs(home):
    return [json.loads(p.read_text()) for p in sorted((home / "conversations").glob("*.json"))]


# ----- llama-cpp-python[server] + SmolLM2-135M -----------------------------------------------


def test_real_model_ask_continue_deterministic(cli, lcp_server, home):
    ask = ("ask", "-p", "openai", "--base-url", lcp_server.url, "-t", "0", "--max-tokens", "8", "--jsonl",
           "What is the capital of France?")
    r = cli(*ask, timeout=120)
    assert r.code == 0, (r, lcp_server.log_tail())
    events = r.events
    assert events[0]["type"] == "start" and events[0]["model"] == MODEL_ALIAS  # asked /v1/models
    text = "".join(e["text"] for e in events if e["type"] == "delta")
    assert text.strip() and events[-1]["type"] == "done" and events[-1]["text"] == text
    assert events[-1]["finish_reason"] in ("stop", "length")
    r = cli("continue", "-t", "0", "--max-tokens", "8", "And of Germany?", timeout=120)
    assert r.code == 0 and r.stdout.strip(), r
    (conv,) = [c for c in convs(home)]
    assert [m["role"] for m in conv["messages"]] == ["user", "assistant", "user", "assistant"]
    assert conv["model"] == MODEL_ALIAS and conv["base_url"] == lcp_server.url
    # temperature 0: the same question gets the same answer
    r = cli(*ask, timeout=120)
    assert r.code == 0 and "".join(e["text"] for e in r.events if e["type"] == "delta") == text


def test_real_model_prompt_longer_than_the_context(cli, lcp_server, home):
    """llama-cpp-python answers 200 text/event-stream with no data at all when the prompt does not fit."""
    r = cli("ask", "-p", "openai", "--base-url", lcp_server.url, "--max-tokens", "4", "--jsonl",
            "word " * 3000, timeout=120)
    assert r.code == 5, r
    assert r.events[-1]["code"] == "network" and "without sending anything" in r.events[-1]["message"]
    assert convs(home)[0]["messages"][-1]["status"] == "failed"


def test_real_model_ctrl_c(cli, lcp_server, home):
    proc = cli.spawn("ask", "-p", "openai", "--base-url", lcp_server.url, "-t", "0", "--max-tokens", "400",
                     "--jsonl", "Write a long story about a dragon.")
    lines = [json.loads(proc.stdout.readline())]
    while lines[-1]["type"] != "delta":
        lines.append(json.loads(proc.stdout.readline()))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines += [json.loads(line) for line in out.decode().splitlines()]
    assert lines[-1]["type"] == "done" and lines[-1]["finish_reason"] == "stopped"
    msg = convs(home)[0]["messages"][-1]
    assert msg["status"] == "stopped" and msg["text"] == lines[-1]["text"] != ""
    # the server is still healthy and answers the next request
    assert get(lcp_server.url + "/models")[0] == 200


# ----- llmock faults --------------------------------------------------------------------------


@pytest.fixture
def llmock(llmock_server):
    post_json(llmock_server.url[:-3] + "/_llmock/reset", {})
    return llmock_server


def script(peer, *behaviors):
    post_json(peer.url[:-3] + "/_llmock/scenario", {"behaviors": list(behaviors)})


def served(peer) -> list[dict]:
    status, body = get(peer.url[:-3] + "/_llmock/requests", timeout=10)
    assert status == 200
    return [r for r in json.loads(body)["requests"] if r["path"].endswith("/chat/completions")]


def llmock_ask(cli, peer, *args):
    return cli("ask", "-p", "openai", "--base-url", peer.url, "-m", "gpt-4o-mini", "--jsonl", *args,
               "hello there", env={"OPENAI_API_KEY": "sk-SECRET-llmock-0001"}, timeout=60)


def test_llmock_429_retry_after_then_answer(cli, llmock):
    script(llmock, {"type": "fail", "status": 429, "retry_after": 1})
    r = llmock_ask(cli, llmock)
    assert r.code == 0, r
    assert "retrying in 1.0s" in r.stderr
    assert [q["status"] for q in served(llmock)] == [429, 200]
    assert r.events[-1]["text"].startswith("Simulated answer")
    assert "sk-SECRET-llmock-0001" not in r.stdout + r.stderr


def test_llmock_429_every_time(cli, llmock):
    script(llmock, {"type": "fail", "status": 429, "retry_after": 0.2, "times": 5})
    r = llmock_ask(cli, llmock, "--retries", "1")
    assert r.code == 4 and r.events[-1]["code"] == "rate_limit", r
    assert [q["status"] for q in served(llmock)] == [429, 429]


@pytest.mark.parametrize(("kind", "exit_code", "code"), [("disconnect", 5, "network"), ("truncate", 5, "network"),
                                                         ("malformed", 6, "protocol")])
def test_llmock_stream_faults(cli, llmock, home, kind, exit_code, code):
    script(llmock, {"type": "stream_fault", "kind": kind, "after_chunks": 2})
    r = llmock_ask(cli, llmock)
    assert r.code == exit_code and r.events[-1]["code"] == code, r
    assert len(served(llmock)) == 1  # the answer had begun: never retried
    msg = convs(home)[0]["messages"][-1]
    partial = "".join(e["text"] for e in r.events if e["type"] == "delta")
    assert msg["status"] == "failed" and msg["text"] == partial


def test_llmock_stall_times_out(cli, llmock, home):
    script(llmock, {"type": "stream_fault", "kind": "stall", "after_chunks": 2, "stall_seconds": 10})
    r = llmock_ask(cli, llmock, "--timeout", "1")
    assert r.code == 5 and r.events[-1]["code"] == "timeout", r
    assert convs(home)[0]["messages"][-1]["status"] == "failed"


def test_llmock_slow_first_token_within_the_timeout(cli, llmock):
    script(llmock, {"type": "slow_first_token", "seconds": 0.5})
    r = llmock_ask(cli, llmock, "--timeout", "5")
    assert r.code == 0 and r.events[-1]["type"] == "done", r
