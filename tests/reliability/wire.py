"""Per-provider wire formats for the fault suite: one table entry per provider.

A `Wire` says how to point chatcli at a loopback server (route, base URL, env vars, extra
arguments) and how that provider frames a good answer (preamble, one text delta, the
terminal frames), a malformed event and an HTTP error body. The fault server
(`faults.py`) builds every fault out of these pieces, so a new provider plugs in with one
entry in `WIRES`. Sources: shared/protocols/<provider>.md (sections cited per entry).

Fake secrets follow the suite-wide convention checked by `secrets_guard.py`: every fake
token carries `SECRET` right after its usual prefix (sk-SECRET-..., app-SECRET-...,
pat_SECRET..., eyJSECRET... for JWT-like tokens, tok-SECRET-... for anything else).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loopback import sse_frame

CONV = "5e0d8a31-7c42-4b9f-a16e-3d8f2b7c9e04"
MSG = "c41f7b29-0e8d-4a53-9b62-71e5d3a8f0c6"
TASK = "8b2e6d90-4f17-4c3a-b5d8-2a9c0e7f1b43"


def _j(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


@dataclass
class Wire:
    provider: str
    module: str                      # chatcli.providers.<module>: missing -> the wire is skipped
    method: str
    path: str                        # the route the answer is requested on
    base: str                        # appended to the server URL for --base-url
    token: str
    env: Callable[[str], dict[str, str]]
    preamble: Callable[[], bytes]    # frames before any text
    delta: Callable[[str], bytes]    # one frame carrying new answer text
    ending: Callable[[str], bytes]   # terminal frames, given the whole answer
    malformed: bytes                 # a frame whose JSON is broken
    error_body: Callable[[int, str], tuple[bytes, str]]  # (body, content type) of an HTTP error
    args: list[str] = field(default_factory=list)
    extra_routes: Callable[[Any], None] | None = None
    # Delta frames whose text is cumulative (ChatGPT legacy snapshots) get the text so far.
    cumulative: bool = False

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def answer(self, parts: list[str]) -> bytes:
        """A complete good answer built of `parts`."""
        out = self.preamble()
        so_far = ""
        for p in parts:
            so_far += p
            out += self.delta(so_far if self.cumulative else p)
        return out + self.ending(so_far)


# ----- openai (shared/protocols/openai_compat.md: chunks, finish_reason, [DONE]) -------------

def _oa_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


OPENAI = Wire(
    provider="openai",
    module="chatcli.providers.openai",
    method="POST",
    path="/v1/chat/completions",
    base="/v1",
    token="sk-SECRET-openai-1234567890",
    env=lambda url: {"OPENAI_BASE_URL": url, "OPENAI_API_KEY": OPENAI.token},
    preamble=lambda: sse_frame(_oa_chunk({"role": "assistant", "content": ""})),
    delta=lambda text: sse_frame(_oa_chunk({"content": text})),
    ending=lambda text: sse_frame(_oa_chunk({}, "stop")) + b"data: [DONE]\n\n",
    malformed=b'data: {"id": "chatcmpl-1", "choices": [{"delta": {"content": "x"\n\n',
    error_body=lambda status, msg: (_j({"error": {"message": msg, "type": "server_error", "code": status}}).encode(),
                                    "application/json"),
    args=["-p", "openai", "-m", "m"],
)


# ----- dify (shared/protocols/dify.md §2.3 framing, §2.4 envelope, §3.1 message/message_end, §6.1) ---

def _dify(event: str, **kw: Any) -> bytes:
    obj = {"event": event, "conversation_id": CONV, "message_id": MSG, "created_at": 1779003120,
           "task_id": TASK, "id": MSG, **kw}
    return sse_frame(obj)


def _dify_routes(srv: Any) -> None:
    # Metadata a client may read first (dify.md §0 `GET /v1/`, §5.7 info/parameters/meta).
    srv.route("GET", r"/v1/?", lambda ex: ex.send_json(200, {"welcome": "Dify OpenAPI", "api_version": "v1",
                                                            "server_version": "1.14.0"}))
    srv.route("GET", r"/v1/info", lambda ex: ex.send_json(200, {"name": "app", "description": "", "tags": [],
                                                                "mode": "chat", "author_name": "t"}))
    srv.route("GET", r"/v1/parameters", lambda ex: ex.send_json(200, {"opening_statement": "",
                                                                      "suggested_questions": [],
                                                                      "suggested_questions_after_answer":
                                                                          {"enabled": False}}))
    srv.route("GET", r"/v1/meta", lambda ex: ex.send_json(200, {"tool_icons": {}}))


DIFY = Wire(
    provider="dify",
    module="chatcli.providers.dify",
    method="POST",
    path="/v1/chat-messages",
    base="/v1",
    token="app-SECRET-dify-123456",
    env=lambda url: {"DIFY_BASE_URL": url, "DIFY_API_KEY": DIFY.token},
    preamble=lambda: b"event: ping\n\n" + _dify("message", answer=""),
    delta=lambda text: _dify("message", answer=text),
    ending=lambda text: _dify("message_end", metadata={"usage": {"prompt_tokens": 1, "completion_tokens": 2,
                                                                 "total_tokens": 3}}),
    malformed=b'data: {"event": "message", "answer": "x", "conversation_id": \n\n',
    error_body=lambda status, msg: (_j({"code": "internal_server_error", "message": msg, "status": status}).encode(),
                                    "application/json"),
    args=["-p", "dify"],
    extra_routes=_dify_routes,
)


# ----- coze (shared/protocols/coze.md §2.2 framing, §2.3 events, §2.6 examples, §0.1/§4 errors) ---

CHAT = "7512345678901234567"
COZE_CONV = "7512345678901230001"
BOT = "7498765432109876543"


def _coze_chat(status: str) -> dict[str, Any]:
    return {"id": CHAT, "conversation_id": COZE_CONV, "bot_id": BOT, "created_at": 1748000000,
            "last_error": {"code": 0, "msg": ""}, "status": status,
            "usage": {"token_count": 3, "output_count": 2, "input_count": 1}, "section_id": COZE_CONV}


def _coze_msg(text: str) -> dict[str, Any]:
    return {"id": "7512345679000000001", "conversation_id": COZE_CONV, "bot_id": BOT, "role": "assistant",
            "type": "answer", "content": text, "content_type": "text", "chat_id": CHAT, "section_id": COZE_CONV}


def _coze_frame(event: str, data: Any) -> bytes:
    # Coze writes `event:` and `data:` without a space after the colon (transcripts/coze/*.sse).
    return f"event:{event}\ndata:{data if isinstance(data, str) else _j(data)}\n\n".encode()


COZE = Wire(
    provider="coze",
    module="chatcli.providers.coze",
    method="POST",
    path="/v3/chat",
    base="",
    token="pat_SECRET_coze_1234567890",
    env=lambda url: {"COZE_BASE_URL": url, "COZE_API_TOKEN": COZE.token, "COZE_BOT_ID": BOT},
    preamble=lambda: _coze_frame("conversation.chat.created", _coze_chat("created"))
    + _coze_frame("conversation.chat.in_progress", _coze_chat("in_progress")),
    delta=lambda text: _coze_frame("conversation.message.delta", _coze_msg(text)),
    ending=lambda text: _coze_frame("conversation.message.completed", _coze_msg(text))
    + _coze_frame("conversation.chat.completed", _coze_chat("completed"))
    + _coze_frame("done", '"[DONE]"'),
    malformed=b'event:conversation.message.delta\ndata:{"id": "75", "content": "x", \n\n',
    error_body=lambda status, msg: (_j({"code": 5000, "msg": msg}).encode(), "application/json"),
    args=["-p", "coze"],
)


# ----- chatgpt (shared/protocols/chatgpt.md §3.4 content types, §5 legacy SSE, §10 errors) --------

GPT_CONV = "6a1f3c2e-4b8d-4e0a-9c31-2f7d8e5b1a90"
GPT_MSG = "4c9e1d27-0a6b-4f3e-b8d5-71a2c3e4f560"


def _gpt_snapshot(text: str, status: str = "in_progress") -> bytes:
    msg = {"id": GPT_MSG, "author": {"role": "assistant", "name": None, "metadata": {}},
           "create_time": 1715420766.1, "update_time": None, "content": {"content_type": "text", "parts": [text]},
           "status": status, "end_turn": True if status == "finished_successfully" else None, "weight": 1.0,
           "metadata": {"model_slug": "gpt-4o", "parent_id": "aaa2b7c1-93e4-4f0d-8a52-6c1e0f4d9b37",
                        **({"finish_details": {"type": "stop"}} if status != "in_progress" else {})},
           "recipient": "all"}
    return sse_frame({"message": msg, "conversation_id": GPT_CONV, "error": None})


def _gpt_routes(srv: Any) -> None:
    # Sentinel (chatgpt.md §2.2): nothing required, so a client goes straight to the send call.
    srv.route("POST", r"/backend-api/sentinel/chat-requirements(/prepare)?",
              lambda ex: ex.send_json(200, {"token": "tok-SECRET-sentinel", "proofofwork": {"required": False},
                                            "turnstile": {"required": False}, "arkose": {"required": False}}))


CHATGPT = Wire(
    provider="chatgpt",
    module="chatcli.providers.chatgpt",
    method="POST",
    path="/backend-api/conversation",
    base="/backend-api",
    token="eyJSECRET-chatgpt-header.eyJSECRET-payload.SECRET-signature",
    env=lambda url: {"CHATGPT_BASE_URL": url, "CHATGPT_ACCESS_TOKEN": CHATGPT.token},
    preamble=lambda: _gpt_snapshot(""),
    delta=lambda text: _gpt_snapshot(text),
    ending=lambda text: _gpt_snapshot(text, "finished_successfully") + b"data: [DONE]\n\n",
    malformed=b'data: {"message": {"id": "4c9e", "content": {"parts": ["x"\n\n',
    error_body=lambda status, msg: (_j({"detail": msg}).encode(), "application/json"),
    args=["-p", "chatgpt"],
    extra_routes=_gpt_routes,
    cumulative=True,
)

WIRES: dict[str, Wire] = {w.provider: w for w in (OPENAI, DIFY, COZE, CHATGPT)}
FAKE_TOKENS = [w.token for w in WIRES.values()]
