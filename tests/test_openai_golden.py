"""Every shared openai transcript replayed through the real chatcli against the fake server.

Streams are sent split at awkward places (inside UTF-8 characters), with CRLF line ends and
`: keep-alive` comments between events; the `--jsonl` events must equal
tests/golden/openai/<case>.events.jsonl (ids replaced by placeholders; regenerate with
CHATCLI_UPDATE_GOLDEN=1 and review), the exit code must be the contract's, and the stored
answer must have the right status and text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import TRANSCRIPTS, transcript
from loopback import openai as fo

GOLDEN = Path(__file__).parent / "golden" / "openai"
# Read at import: the autouse isolation strips CHATCLI_* from the environment of each test.
UPDATE = bool(os.environ.get("CHATCLI_UPDATE_GOLDEN"))
NAMES = sorted(p.name for p in (TRANSCRIPTS / "openai").glob("*") if p.suffix in (".sse", ".json")
               and not p.name.startswith("models_")) if (TRANSCRIPTS / "openai").is_dir() else []

# transcript -> (exit code, stored answer status or None when no answer was stored)
EXPECTED = {
    "stream_openai_with_usage.sse": (0, "complete"),
    "stream_llamacpp_reasoning.sse": (0, "complete"),
    "stream_ollama.sse": (0, "complete"),
    "stream_tool_calls.sse": (0, "complete"),
    "stream_error_vllm.sse": (6, "failed"),
    "stream_error_llamacpp.sse": (6, "failed"),
    "stream_error_litellm.sse": (4, "failed"),
    "stream_truncated_ollama.sse": (5, "failed"),
    "http_error_openai_401.json": (3, "failed"),
    "http_error_dashscope_401.json": (3, "failed"),
    "http_error_litellm_429.json": (4, "failed"),
    "http_error_llamacpp_400_context.json": (6, "failed"),
    "http_error_ollama_404.json": (6, "failed"),
    "http_error_vllm_404.json": (6, "failed"),
    "http_error_vllm_legacy_400.json": (6, "failed"),
}


def test_every_transcript_has_an_expectation():
    assert NAMES, "no shared openai transcripts found (set CHATCLI_SHARED)"
    assert set(NAMES) == set(EXPECTED)


def normalise(events: list[dict], conv: dict) -> list[dict]:
    msgs = {m["message_id"]: m for m in conv["messages"]}
    names = {conv["conversation_id"]: "<conversation>"}
    for m in conv["messages"]:
        names[m["message_id"]] = f"<{m['role']}>"
    out = []
    for e in events:
        e = dict(e)
        for key in ("conversation_id", "message_id", "parent_id"):
            if e.get(key) is not None:
                assert e[key] in names, f"{key} {e[key]} is not a stored id"
                e[key] = names[e[key]]
        out.append(e)
    assert msgs
    return out


def stored(home: Path) -> dict:
    files = list((home / "conversations").glob("*.json"))
    assert len(files) == 1
    return json.loads(files[0].read_text())


@pytest.mark.parametrize("name", NAMES)
def test_transcript_golden(name, cli, server, home):
    fake = fo.FakeOpenAI(server)
    data = transcript("openai", name)
    if name.endswith(".sse"):
        fake.push(fo.stream(data, crlf=True, keepalive=True))
    else:
        fake.push(fo.http_error(fo.status_of(name), data))
    secret = "sk-SECRET-openai-golden-123"
    r = cli("ask", "-p", "openai", "--base-url", fake.base_url, "-m", "test-model", "--retries", "0", "--jsonl",
            "What?", env={"OPENAI_API_KEY": secret})
    code, status = EXPECTED[name]
    assert r.code == code, r
    events = r.events
    assert events[0]["type"] == "start" and events[-1]["type"] in ("done", "error")
    assert [e["type"] for e in events].count("done") + [e["type"] for e in events].count("error") == 1
    conv = stored(home)
    answer = conv["messages"][-1]
    assert answer["role"] == "assistant" and answer["status"] == status
    answer_text = "".join(e["text"] for e in events if e["type"] == "delta")
    assert answer["text"] == answer_text
    if events[-1]["type"] == "done":
        assert events[-1]["text"] == answer_text
    else:
        assert r.stderr.count("chatcli: error: ") == 1 and "Traceback" not in r.stderr
    # What was sent: one request, the key as a bearer token, never echoed anywhere.
    assert len(fake.chats) == 1
    assert fake.chat_requests[0].headers["authorization"] == f"Bearer {secret}"
    assert fake.chats[0]["messages"] == [{"role": "user", "content": "What?"}]
    assert fake.chats[0]["model"] == "test-model" and fake.chats[0]["stream"] is True
    for path in home.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace")
    assert secret not in r.stdout + r.stderr

    got = normalise(events, conv)
    golden = GOLDEN / (name.rsplit(".", 1)[0] + ".events.jsonl")
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in got))
    expected = [json.loads(line) for line in golden.read_text().splitlines() if line.strip()]
    assert got == expected


@pytest.mark.parametrize("name", ["models_vllm.json", "models_ollama.json", "models_llamacpp.json"])
def test_model_from_models_list(name, cli, server, home):
    """No --model: a self-hosted server is asked which model it serves (data[0].id, §7)."""
    body = transcript("openai", name)
    fake = fo.FakeOpenAI(server, models=body)
    first = json.loads(body)["data"][0]["id"]
    r = cli("ask", "-p", "openai", "--base-url", fake.base_url, "--jsonl", "hi")
    assert r.code == 0, r
    assert fake.chats[0]["model"] == first
    assert r.events[0]["model"] == first
    assert stored(home)["model"] == first
    if name != "models_vllm.json":
        return
    # continue sends the same model without asking again
    r = cli("continue", "--jsonl", "more")
    assert r.code == 0, r
    assert fake.chats[1]["model"] == first
    assert len(server.requests_to("/v1/models")) == 1
