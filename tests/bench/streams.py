"""Long answers on each provider's wire, built in memory for the benchmark.

Each builder returns `Wire(body, deltas, text)`: the SSE body as the server sends it, the
number of answer-text events it carries and the answer text a correct decoder must
reproduce. Shapes follow shared/protocols/*.md and the transcripts next to them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Wire:
    body: bytes
    deltas: int
    text: str


def _sse(data: object, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def _tokens(n: int) -> list[str]:
    """n small pieces of answer text (~5 bytes), some non-ASCII so UTF-8 handling is exercised."""
    words = ["lorem", " ipsum", " dolor", " sit", " amet,", " 杭州", " café", " naïve", "\n"]
    return [words[i % len(words)] for i in range(n)]


def openai(n: int = 20_000, piece: int | None = None) -> Wire:
    """`/v1/chat/completions` chunks (openai_compat.md); `piece` chars each when given."""
    parts = _tokens(n) if piece is None else ["x" * (piece - 1) + "\n"] * n
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench-model"}
    out = [_sse(head | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                      "finish_reason": None}]})]
    for p in parts:
        out.append(_sse(head | {"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}))
    out.append(_sse(head | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out.append(_sse(head | {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n,
                                                     "total_tokens": n + 5}}))
    out.append(_sse("[DONE]"))
    return Wire("".join(out).encode(), n, "".join(parts))


def dify(n: int = 20_000) -> Wire:
    """Chat-app `message` events, then `message_end` (dify.md; transcripts/dify/chat_streaming.sse)."""
    parts = _tokens(n)
    ids = {"conversation_id": "430e3dd1-0a35-4183-9f83-b7781be200e5",
           "message_id": "3a47ceec-c41e-4464-9e82-8ba9d78f7cf6", "created_at": 1779000002,
           "task_id": "700bd2d1-3d14-4ff6-bed8-2b33eae351d0", "id": "3a47ceec-c41e-4464-9e82-8ba9d78f7cf6"}
    out = ["event: ping\n\n"]
    for p in parts:
        out.append(_sse({"event": "message"} | ids | {"answer": p, "from_variable_selector": None}))
    usage = {"prompt_tokens": 21, "completion_tokens": n, "total_tokens": n + 21, "total_price": "0.0",
             "currency": "USD", "latency": 1.0}
    out.append(_sse({"event": "message_end"} | ids | {"metadata": {"annotation_reply": None,
                                                                     "retriever_resources": [],
                                                                     "usage": usage}, "files": None}))
    return Wire("".join(out).encode(), n, "".join(parts))


def coze(n: int = 20_000) -> Wire:
    """v3 `/v3/chat` events: chat.created .. message.delta x n .. chat.completed, done (coze.md)."""
    parts = _tokens(n)
    chat = {"id": "7512345678901234567", "conversation_id": "7512345678901230001",
            "bot_id": "7498765432109876543", "created_at": 1748000000, "last_error": {"code": 0, "msg": ""},
            "section_id": "7512345678901230001"}
    msg = {"id": "7512345679000000001", "conversation_id": chat["conversation_id"], "bot_id": chat["bot_id"],
           "role": "assistant", "type": "answer", "content_type": "text", "chat_id": chat["id"],
           "section_id": chat["section_id"]}
    out = [_sse(chat | {"status": "created", "usage": {"token_count": 0, "output_count": 0, "input_count": 0}},
                "conversation.chat.created"),
           _sse(chat | {"status": "in_progress"}, "conversation.chat.in_progress")]
    for p in parts:
        out.append(_sse(msg | {"content": p}, "conversation.message.delta"))
    out.append(_sse(msg | {"content": "".join(parts)}, "conversation.message.completed"))
    out.append(_sse(chat | {"status": "completed", "completed_at": 1748000009,
                            "usage": {"token_count": n + 9, "output_count": n, "input_count": 9}},
                    "conversation.chat.completed"))
    out.append(_sse('"[DONE]"', "done"))
    return Wire("".join(out).encode(), n, "".join(parts))


_CG_CONV = "6a1f3c2e-4b8d-4e0a-9c31-2f7d8e5b1a90"


def _cg_message(text: str, status: str) -> dict[str, object]:
    return {"id": "4c9e1d27-0a6b-4f3e-b8d5-71a2c3e4f560",
            "author": {"role": "assistant", "name": None, "metadata": {}},
            "create_time": 1715420766.123456, "update_time": None,
            "content": {"content_type": "text", "parts": [text]}, "status": status,
            "end_turn": True if status == "finished_successfully" else None, "weight": 1.0,
            "metadata": {"citations": [], "gizmo_id": None, "message_type": "next", "model_slug": "gpt-4o",
                         "parent_id": "aaa2b7c1-93e4-4f0d-8a52-6c1e0f4d9b37",
                         **({"finish_details": {"type": "stop"}, "is_complete": True}
                            if status == "finished_successfully" else {})},
            "recipient": "all"}


def chatgpt_legacy(frames: int = 2_000) -> Wire:
    """Legacy SSE: every frame repeats the whole message with a growing parts[0] (chatgpt.md §5)."""
    parts = _tokens(frames)
    out, text = [], ""
    for p in parts:
        text += p
        out.append(_sse({"message": _cg_message(text, "in_progress"), "conversation_id": _CG_CONV,
                         "error": None}))
    out.append(_sse({"message": _cg_message(text, "finished_successfully"), "conversation_id": _CG_CONV,
                     "error": None}))
    out.append(_sse("[DONE]"))
    return Wire("".join(out).encode(), frames, text)


def chatgpt_v1(n: int = 20_000) -> Wire:
    """Delta encoding v1: an `add` document, one explicit append, then bare `{"v": ...}` appends (§6)."""
    parts = _tokens(n)
    out = [_sse('"v1"', "delta_encoding"),
           _sse({"p": "", "o": "add", "v": {"message": _cg_message("", "in_progress"),
                                             "conversation_id": _CG_CONV, "error": None}, "c": 0}, "delta"),
           _sse({"p": "/message/content/parts/0", "o": "append", "v": parts[0]}, "delta")]
    for p in parts[1:]:
        out.append(_sse({"v": p}, "delta"))
    out.append(_sse({"p": "", "o": "patch", "v": [
        {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
        {"p": "/message/end_turn", "o": "replace", "v": True},
        {"p": "/message/metadata", "o": "append", "v": {"finish_details": {"type": "stop"},
                                                         "is_complete": True}}]}, "delta"))
    out.append(_sse({"type": "message_stream_complete", "conversation_id": _CG_CONV}))
    out.append(_sse("[DONE]"))
    return Wire("".join(out).encode(), n, "".join(parts))
