"""Golden events for every shared ChatGPT transcript and for composed streams, through the
real chatcli subprocess against the loopback backend-api.

tests/golden/chatgpt/<case>.events.jsonl holds the expected --jsonl lines (the
client-chosen user message id is replaced by a placeholder);
CHATCLI_UPDATE_GOLDEN=1 rewrites them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import transcript

from loopback.chatgpt import TOKEN, backend_fixture, sse

chatgpt = backend_fixture()
ENV = {"CHATGPT_ACCESS_TOKEN": TOKEN}
GOLDEN = Path(__file__).parent / "golden" / "chatgpt"
# Read at import: the autouse isolation strips CHATCLI_* from the environment of each test.
UPDATE = bool(os.environ.get("CHATCLI_UPDATE_GOLDEN"))
CID = "0d5c3e71-2a4b-4c8d-9e1f-3a5b7c9d1e2f"


def check_golden(case: str, lines: list[dict]) -> None:
    path = GOLDEN / f"{case}.events.jsonl"
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path} (CHATCLI_UPDATE_GOLDEN=1 writes it)"
    assert path.read_text().splitlines() == text.splitlines()


def normalised(events: list[dict], backend) -> list[dict]:
    user = backend.sent[-1]["messages"][0]["id"]
    out = []
    for e in events:
        e = dict(e)
        for key, value in e.items():
            if value == user:
                e[key] = "<user-message-id>"
        out.append(e)
    return out


def run(cli, backend, *args):
    r = cli("ask", "-p", "chatgpt", "--base-url", backend.base_url, *args, env=ENV)
    assert r.code == 0, r
    return r


def title(home: Path) -> str:
    from chatcli import store

    return store.Store(home).list()[0]["title"]


def answer_of(events):
    return "".join(e["text"] for e in events if e["type"] == "delta")


# ----- the shared transcripts ----------------------------------------------------------------


def test_legacy_transcript(cli, chatgpt):
    chatgpt.raw_sse = transcript("chatgpt", "legacy-sse-2024-composed.txt")
    chatgpt.split = [7, 1, 13, 2]
    r = run(cli, chatgpt, "--jsonl", "Hello")
    check_golden("legacy-sse-2024-composed", normalised(r.events, chatgpt))
    assert r.events[-1]["text"] == "Hello! How can I help you today?"
    assert title(cli.home) == "Friendly Greeting"
    text = run(cli, chatgpt, "Hello")
    assert text.stdout == "Hello! How can I help you today?\n"


def ws_transcript(url: str):
    lines = transcript("chatgpt", "websocket-mode-2024-composed.txt").decode().splitlines()
    http = [line[6:] for line in lines if line.startswith("HTTP< {")]
    answer = json.loads(http[1])
    answer["wss_url"] = url
    frames = [line[3:] for line in lines if line.startswith("<< ") and '"type":"system"' not in line]
    return answer, frames


def test_websocket_transcript(cli, chatgpt):
    chatgpt.websocket_account = chatgpt.ignore_force_sse = True
    chatgpt.raw_ws = ws_transcript(chatgpt.ws.url())
    r = run(cli, chatgpt, "--jsonl", "Hello")
    check_golden("websocket-mode-2024-composed", normalised(r.events, chatgpt))
    assert r.events[-1]["text"] == "Hello! How can I help you today?"
    assert chatgpt.srv.wait_for(lambda: chatgpt.ws.acks == [10])


def test_conversation_mapping_transcript(cli, chatgpt):
    cid = "f283136e-f417-46d4-9cde-34f4360af94b"
    chatgpt.next_conversation_id = cid
    run(cli, chatgpt, "hi")
    chatgpt.raw_detail[cid] = transcript("chatgpt", "conversation-mapping-2023-12.json")
    r = cli("history", cid, "--remote", "--jsonl", env=ENV)
    assert r.code == 0, r
    check_golden("conversation-mapping-2023-12", r.events)
    text = cli("history", cid, "--remote", env=ENV)
    assert "当然可以" in text.stdout and "system" not in text.stdout


def test_conversation_list_transcript(chatgpt):
    from chatcli.config import Settings
    from chatcli.providers.chatgpt import ChatGPT

    chatgpt.raw_list = transcript("chatgpt", "conversations-list-2023-12.json")
    provider = ChatGPT(Settings(provider="chatgpt", base_url=chatgpt.base_url, api_key=TOKEN, timeout=10))
    try:
        items = provider.remote_conversations()
    finally:
        provider.close()
    check_golden("conversations-list-2023-12", items)
    assert len(chatgpt.srv.requests_to("/backend-api/conversations")) == 1  # 5 < 28: one page


# ----- composed streams ----------------------------------------------------------------------


def message(mid, parts, *, role="assistant", status="in_progress", recipient="all", ctype="text", **meta):
    content = {"content_type": ctype, "parts": parts}
    if ctype == "code":
        content = {"content_type": "code", "language": "python", "text": parts[0]}
    if ctype == "thoughts":
        content = {"content_type": "thoughts", "thoughts": [{"summary": "Plan", "content": parts[0]}]}
    return {"id": mid, "author": {"role": role, "name": meta.pop("name", None), "metadata": {}},
            "create_time": 1715420766.5, "update_time": None, "content": content, "status": status,
            "end_turn": True if status == "finished_successfully" and recipient == "all" else None, "weight": 1.0,
            "metadata": {"message_type": "next", "model_slug": "gpt-4o", **meta}, "recipient": recipient}


def legacy_frames(mid, pieces):
    so_far, out = "", []
    for p in pieces:
        so_far += p
        out.append(sse({"message": message(mid, [so_far]), "conversation_id": CID, "error": None}))
    out.append(sse({"message": message(mid, [so_far], status="finished_successfully",
                                       finish_details={"type": "stop", "stop_tokens": [200002]}, is_complete=True),
                    "conversation_id": CID, "error": None}))
    return out


def test_legacy_2000_frames(cli, chatgpt):
    pieces = [f"t{i:04d} " for i in range(2000)]
    chatgpt.raw_sse = "".join(legacy_frames("a2000000-0000-4000-8000-000000000001", pieces) + [
        sse({"type": "title_generation", "title": "Counting", "conversation_id": CID}), sse("[DONE]")]).encode()
    chatgpt.split = [4096, 333]
    r = run(cli, chatgpt, "--jsonl", "count")
    check_golden("composed-legacy-2000-frames", normalised(r.events, chatgpt))
    assert [e["text"] for e in r.events if e["type"] == "delta"] == pieces


def test_chinese_and_emoji_split_across_chunks(cli, chatgpt):
    pieces = ["你好", "，世界", "！🌍", "🎉 中文", "和 emoji 👩‍👩‍👧 混合", "。"]
    chatgpt.raw_sse = "".join(legacy_frames("a3000000-0000-4000-8000-000000000002", pieces)
                              + ["data: 2024-04-27 12:34:56.123456\n\n", sse("[DONE]")]).replace("\n", "\r\n").encode()
    chatgpt.split = [1, 2, 3, 5]  # every split point, inside escapes and CRLF pairs
    r = run(cli, chatgpt, "--jsonl", "greet")
    check_golden("composed-chinese-emoji-split", normalised(r.events, chatgpt))
    assert answer_of(r.events) == "".join(pieces)
    # the same text sent as raw UTF-8 (ensure_ascii=False), split inside multi-byte characters
    raw = "".join(legacy_frames("a3000000-0000-4000-8000-000000000002", pieces) + [sse("[DONE]")])
    chatgpt.raw_sse = json_unescape(raw).encode()
    r2 = run(cli, chatgpt, "greet")
    assert r2.stdout == "".join(pieces) + "\n"


def json_unescape(text: str) -> str:
    """Rewrite each data line with ensure_ascii=False (raw UTF-8 on the wire)."""
    out = []
    for line in text.split("\n"):
        if line.startswith("data: {"):
            line = "data: " + json.dumps(json.loads(line[6:]), ensure_ascii=False)
        out.append(line)
    return "\n".join(out)


def test_v1_patches_of_several_paths(cli, chatgpt):
    a1, tool, a2 = ("a4000000-0000-4000-8000-00000000000" + c for c in "123")
    think = "a4000000-0000-4000-8000-000000000009"
    doc = lambda m, c: sse({"v": {"message": m, "conversation_id": CID, "error": None}, "c": c}, "delta")  # noqa: E731
    delta = lambda f: sse(f, "delta")  # noqa: E731
    stream = [
        sse('"v1"', "delta_encoding"),
        sse({"type": "resume_conversation_token", "kind": "conduit", "token": "opaque-RESUME-TOKEN-not-a-jwt",
             "conversation_id": CID}),
        delta({"p": "", "o": "add", "v": {"message": message("s0", [""], role="system", status="finished_successfully",
                                                             is_visually_hidden_from_conversation=True),
                                          "conversation_id": CID, "error": None}, "c": 0}),
        doc(message(think, [""], ctype="thoughts", channel=None), 1),
        delta({"p": "/message/content/thoughts/0/content", "o": "append", "v": "The user wants colours"}),
        delta({"v": ", so list them."}),
        doc(message(a1, [""]), 2),
        delta({"p": "/message/content/parts/0", "o": "append", "v": "Red, "}),
        delta({"v": "green"}),
        sse({"type": "message_marker", "conversation_id": CID, "message_id": a1, "marker": "user_visible_token",
             "event": "first"}),
        delta({"v": " and blue."}),
        sse({"type": "title_generation", "title": "Colours (draft)", "conversation_id": CID}),
        delta({"p": "", "o": "patch", "v": [
            {"p": "/message/metadata", "o": "append", "v": {"citations": []}},
            {"p": "/message/content/parts/0", "o": "append", "v": " Let me check"}]}),
        delta({"v": " with code."}),
        delta({"p": "", "o": "patch", "v": [{"p": "/message/status", "o": "replace", "v": "finished_successfully"},
                                           {"p": "/message/end_turn", "o": "replace", "v": False}]}),
        doc(message(tool, ["print(sorted(['red', 'green', 'blue']))"], ctype="code", recipient="python"), 3),
        delta({"p": "/message/status", "o": "replace", "v": "finished_successfully"}),
        doc(message(a2, [""]), 4),
        delta({"p": "/message/content/parts/0", "o": "append", "v": "Sorted: blue, green, red!!"}),
        delta({"p": "/message/content/parts/0", "o": "truncate", "v": 24}),
        delta({"v": [{"p": "/message/content/parts/0", "o": "append", "v": "."},
                     {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
                     {"p": "/message/metadata", "o": "append",
                      "v": {"finish_details": {"type": "stop", "stop_tokens": [200002]}, "is_complete": True}}]}),
        sse({"type": "title_generation", "title": "Primary Colours", "conversation_id": CID}),
        sse({"type": "server_ste_metadata", "metadata": {"model_slug": "gpt-5-2", "message_id": a2},
             "conversation_id": CID}),
        sse({"type": "message_stream_complete", "conversation_id": CID}),
        sse("[DONE]"),
    ]
    chatgpt.raw_sse = "".join(stream).encode()
    chatgpt.split = [17, 3]
    r = run(cli, chatgpt, "--jsonl", "colours")
    events = normalised(r.events, chatgpt)
    check_golden("composed-v1-patches", events)
    assert r.events[-1]["text"] == "Red, green and blue. Let me check with code.\n\nSorted: blue, green, red."
    kinds = [e["type"] for e in r.events]
    assert kinds.count("replace") == 1 and kinds.count("tool") == 1 and kinds.count("reasoning") == 2
    assert title(cli.home) == "Primary Colours"
    assert "RESUME-TOKEN" not in r.stdout + r.stderr
    raw = run(cli, chatgpt, "--raw", "colours")
    lines = [json.loads(line) for line in raw.stdout.splitlines()]
    assert lines[0] == {"event": "delta_encoding", "data": "v1"} and lines[-1] == {"event": None, "data": "[DONE]"}
    assert lines[1]["data"]["token"] == "[REDACTED]" and "RESUME-TOKEN" not in raw.stdout


def test_every_shared_transcript_has_a_golden_file():
    from conftest import TRANSCRIPTS

    names = sorted(p.name for p in (TRANSCRIPTS / "chatgpt").iterdir() if not p.name.endswith(".source.txt"))
    assert names, "no shared chatgpt transcripts found"
    for name in names:
        stem = name.rsplit(".", 1)[0]
        assert (GOLDEN / f"{stem}.events.jsonl").exists(), name
