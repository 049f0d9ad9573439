"""A fake Dify service API on a LoopbackServer (real sockets), for chatcli's tests.

`FakeDify` answers POST /v1/chat-messages (scripted per request with `plan`, or a
generated chat stream that is also recorded as history), the stop endpoint, GET
/v1/messages (newest page first, oldest first inside a page, `first_id` paging; §5.1),
GET /v1/conversations (`last_id` paging; §5.2) and GET /v1/messages/:id/suggested. Every
route checks the Bearer key like Dify does (401 `unauthorized`). The builders compose
streams in Dify's wire shapes (orjson-compact or 0.6.x json.dumps serialisation).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from loopback import Exchange, LoopbackServer

KEY = "app-SECRET-dify-123"


def frame(obj: Any, *, crlf: bool = False, compact: bool = True) -> bytes:
    """One Dify data event: `data: <json>` + blank line (§2.3)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) if compact else json.dumps(obj)
    nl = "\r\n" if crlf else "\n"
    return f"data: {text}{nl}{nl}".encode()


def ping(crlf: bool = False) -> bytes:
    return b"event: ping\r\n\r\n" if crlf else b"event: ping\n\n"


class Ids:
    """The ids of one answer, and envelope builders (§2.4)."""

    def __init__(self, conversation_id: str | None = None) -> None:
        self.conversation_id = conversation_id or str(uuid.uuid4())
        self.message_id = str(uuid.uuid4())
        self.task_id = str(uuid.uuid4())
        self.created_at = 1779000002

    def env(self, event: str, task: bool = True, **payload: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {"event": event, "conversation_id": self.conversation_id,
                               "message_id": self.message_id, "created_at": self.created_at}
        if task:
            obj["task_id"] = self.task_id
        obj.update(payload)
        return obj

    def message(self, answer: str, event: str = "message") -> dict[str, Any]:
        return self.env(event, id=self.message_id, answer=answer, from_variable_selector=None)

    def end(self, prompt_tokens: int = 5, completion_tokens: int = 7, price: Any = "0.0001234",
            currency: str = "USD", files: Any = None) -> dict[str, Any]:
        usage = {"prompt_tokens": prompt_tokens, "prompt_unit_price": "0.0", "prompt_price_unit": "0.0",
                 "prompt_price": "0.0", "completion_tokens": completion_tokens, "completion_unit_price": "0.0",
                 "completion_price_unit": "0.0", "completion_price": "0.0",
                 "total_tokens": prompt_tokens + completion_tokens, "total_price": price, "currency": currency,
                 "latency": 0.5}
        return self.env("message_end", id=self.message_id,
                        metadata={"annotation_reply": None, "retriever_resources": [], "usage": usage}, files=files)

    def error(self, code: str, message: str, status: int = 400) -> dict[str, Any]:
        return self.env("error", task=False, code=code, status=status, message=message)

    def chat(self, pieces: Iterable[str], *, end: bool = True) -> list[dict[str, Any]]:
        events = [self.message("")] + [self.message(p) for p in pieces]
        return events + ([self.end()] if end else [])


def stream_of(events: Iterable[dict[str, Any] | bytes], *, crlf: bool = False) -> bytes:
    return b"".join(e if isinstance(e, bytes) else frame(e, crlf=crlf) for e in events)


class FakeDify:
    def __init__(self, server: LoopbackServer, key: str = KEY) -> None:
        self.srv = server
        self.key = key
        # Scripted handlers for the next POST /chat-messages requests (FIFO).
        self.plan: list[Callable[[Exchange], None]] = []
        # conversation id -> [{"id", "query", "answer", "status", "error", "created_at"}], oldest first
        self.conversations: dict[str, list[dict[str, Any]]] = {}
        self.conversation_rows: dict[str, dict[str, Any]] = {}
        self.suggested: list[str] | None = None  # None: the feature is disabled (400)
        self.stopped: set[str] = set()
        self.answer = "Hello from the fake Dify."
        self.lock = threading.Lock()
        server.route("POST", r"/v1/chat-messages", self._chat)
        server.route("POST", r"/v1/chat-messages/(?P<task>[^/]+)/stop", self._stop)
        server.route("GET", r"/v1/messages", self._messages)
        server.route("GET", r"/v1/conversations", self._conversations)
        server.route("GET", r"/v1/messages/(?P<mid>[^/]+)/suggested", self._suggested)

    @property
    def url(self) -> str:
        return self.srv.url + "/v1"

    def env(self, **extra: str) -> dict[str, str]:
        return {"DIFY_API_KEY": self.key, **extra}

    # ----- helpers -------------------------------------------------------------------

    def _authorized(self, ex: Exchange) -> bool:
        if ex.headers.get("authorization") == f"Bearer {self.key}":
            return True
        ex.send_json(401, {"code": "unauthorized", "message": "Access token is invalid", "status": 401})
        return False

    def chat_requests(self) -> list[Exchange]:
        return self.srv.requests_to("/v1/chat-messages", "POST")

    def stop_requests(self) -> list[Exchange]:
        return [r for r in self.srv.requests if r.method == "POST" and r.path.endswith("/stop")]

    def add_history(self, conversation_id: str, n: int, start: int = 1716340000) -> None:
        rows = self.conversations.setdefault(conversation_id, [])
        for i in range(n):
            rows.insert(0, {"id": str(uuid.uuid4()), "query": f"old question {i}", "answer": f"old answer {i}",
                            "status": "normal", "error": None, "created_at": start + i})
        rows.sort(key=lambda r: r["created_at"])

    def record(self, ids: Ids, query: str, answer: str, status: str = "normal", error: str | None = None) -> None:
        with self.lock:
            self.conversations.setdefault(ids.conversation_id, []).append(
                {"id": ids.message_id, "query": query, "answer": answer, "status": status, "error": error,
                 "created_at": 1779000000 + len(self.conversations.get(ids.conversation_id, []))})
            self.conversation_rows.setdefault(ids.conversation_id, {
                "id": ids.conversation_id, "name": query[:20], "inputs": {}, "status": "normal",
                "introduction": "", "created_at": 1779000000, "updated_at": 1779000000})

    def ids_for(self, ex: Exchange) -> Ids:
        body = ex.json or {}
        cid = body.get("conversation_id") or None
        return Ids(cid)

    # ----- routes --------------------------------------------------------------------

    def _chat(self, ex: Exchange) -> None:
        if not self._authorized(ex):
            return
        body = ex.json or {}
        cid = body.get("conversation_id")
        if cid and cid not in self.conversations:
            ex.send_json(404, {"code": "not_found", "message": "Conversation Not Exists.", "status": 404})
            return
        if self.plan:
            self.plan.pop(0)(ex)
            return
        ids = self.ids_for(ex)
        words = self.answer.split(" ")
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        ex.start(200, content_type="text/event-stream; charset=utf-8")
        ex.write(stream_of(ids.chat(pieces)))
        self.record(ids, body.get("query", ""), self.answer)

    def _stop(self, ex: Exchange) -> None:
        if not self._authorized(ex):
            return
        assert ex.match is not None
        self.stopped.add(ex.match.group("task"))
        ex.send_json(200, {"result": "success"})

    def _messages(self, ex: Exchange) -> None:
        if not self._authorized(ex):
            return
        cid = ex.query.get("conversation_id", "")
        rows = self.conversations.get(cid)
        if rows is None:
            ex.send_json(404, {"code": "not_found", "message": "Conversation Not Exists.", "status": 404})
            return
        limit = int(ex.query.get("limit", "20"))
        if not 1 <= limit <= 100:
            ex.send_json(400, {"code": "invalid_param", "message": "limit out of range", "status": 400})
            return
        first_id = ex.query.get("first_id")
        end = len(rows)
        if first_id:
            idx = [i for i, r in enumerate(rows) if r["id"] == first_id]
            if not idx:
                ex.send_json(404, {"code": "not_found", "message": "First Message Not Exists.", "status": 404})
                return
            end = idx[0]
        page = rows[max(0, end - limit):end]
        data = [{"id": r["id"], "conversation_id": cid, "inputs": {}, "query": r["query"], "answer": r["answer"],
                 "message_files": [], "feedback": None, "retriever_resources": [], "created_at": r["created_at"],
                 "agent_thoughts": r.get("agent_thoughts", []), "status": r["status"], "error": r["error"]}
                for r in page]
        ex.send_json(200, {"limit": limit, "has_more": end - limit > 0, "data": data})

    def _conversations(self, ex: Exchange) -> None:
        if not self._authorized(ex):
            return
        rows = list(self.conversation_rows.values())
        limit = int(ex.query.get("limit", "20"))
        start = 0
        if ex.query.get("last_id"):
            ids = [r["id"] for r in rows]
            if ex.query["last_id"] not in ids:
                ex.send_json(404, {"code": "not_found", "message": "Last Conversation Not Exists.", "status": 404})
                return
            start = ids.index(ex.query["last_id"]) + 1
        ex.send_json(200, {"limit": limit, "has_more": start + limit < len(rows), "data": rows[start:start + limit]})

    def _suggested(self, ex: Exchange) -> None:
        if not self._authorized(ex):
            return
        if self.suggested is None:
            ex.send_json(400, {"code": "bad_request", "message": "Suggested Questions Is Disabled.", "status": 400})
            return
        ex.send_json(200, {"result": "success", "data": self.suggested})

    # ----- scripted answers ----------------------------------------------------------

    def then_stream(self, data: bytes, sizes: Iterable[int] | int = 4096, delay: float = 0.0,
                    drop: bool = False, content_type: str = "text/event-stream; charset=utf-8") -> None:
        """The next chat request gets `data` as its SSE body, split into chunks of `sizes`."""
        sizes = list(sizes) if not isinstance(sizes, int) else sizes

        def handler(ex: Exchange) -> None:
            ex.start(200, content_type=content_type)
            ex.write_split(data, sizes, delay)
            if drop:
                ex.drop()

        self.plan.append(handler)

    def then_error(self, status: int, body: Any, headers: dict[str, str] | None = None,
                   content_type: str | None = None) -> None:
        def handler(ex: Exchange) -> None:
            if isinstance(body, (dict, list)):
                ex.send_json(status, body, headers)
            else:
                ex.send(status, body, headers, content_type)

        self.plan.append(handler)

    def then_slow(self, ids: Ids, *, pieces: int = 1200, delay: float = 0.05) -> None:
        """A long answer that ends with message_end once the stop endpoint was called (§4)."""

        def handler(ex: Exchange) -> None:
            self.record(ids, (ex.json or {}).get("query", ""), "", status="normal")
            ex.start(200, content_type="text/event-stream; charset=utf-8")
            ex.write(frame(ids.message("")))
            for i in range(pieces):
                if ids.task_id in self.stopped:
                    break
                ex.write(frame(ids.message(f"word{i} ")))
                if ex.sleep_or_gone(delay):
                    return
            ex.write(frame(ids.end()))

        self.plan.append(handler)


def agent_events(ids: Ids) -> list[dict[str, Any]]:
    """The agent-chat example of spec §3.1 (function calling, one tool `exchange_rate`)."""
    step1, step2 = "f6a3c8e1-2b94-4d07-8e5f-0c7a1d9b3e62", "1d7e4b0a-9c36-4f28-a1e5-6b8d2c0f7a93"
    labels = {"exchange_rate": {"en_US": "exchange_rate", "zh_Hans": "exchange_rate"}}
    tool_input = '{"exchange_rate": {"from": "USD", "to": "EUR"}}'

    def thought(tid: str, position: int, **kw: Any) -> dict[str, Any]:
        fields = {"thought": "", "observation": "", "tool": "", "tool_labels": {}, "tool_input": "",
                  "message_files": []}
        fields.update(kw)
        return ids.env("agent_thought", id=tid, position=position, **fields)

    def msg(answer: str) -> dict[str, Any]:
        return ids.env("agent_message", id=ids.message_id, answer=answer)

    return [
        thought(step1, 1),
        msg(""),
        thought(step1, 1, tool="exchange_rate", tool_labels=labels, tool_input=tool_input),
        thought(step1, 1, tool="exchange_rate", tool_labels=labels, tool_input=tool_input,
                observation='{"exchange_rate": "1 USD = 0.92 EUR (2026-05-17)"}'),
        thought(step2, 2),
        msg(""), msg("100 USD is"), msg("about 92 EUR"), msg(" at today's rate."), msg(""),
        thought(step2, 2, thought="100 USD isabout 92 EUR at today's rate."),
        ids.end(prompt_tokens=389, completion_tokens=41, price="0.0"),
    ]


def chatflow_events(ids: Ids, *, status: str = "succeeded", order: str = "new") -> list[dict[str, Any]]:
    """A Chatflow answer: workflow/node events around `message` deltas (§3.2, §3.4).

    order "new" (>=1.13.1): message_end then workflow_finished; "old" (<=1.13.0):
    workflow_finished then message_end; "relay" (>=1.13 relay cut): no message_end.
    """
    run = str(uuid.uuid4())

    def wf(event: str, **data: Any) -> dict[str, Any]:
        return ids.env(event, workflow_run_id=run, data=data)

    node = {"id": str(uuid.uuid4()), "node_id": "llm", "node_type": "llm", "title": "LLM", "index": 1}
    events = [
        wf("workflow_started", id=run, workflow_id="wf", inputs={}, created_at=1, reason="initial"),
        wf("node_started", **node),
        wf("iteration_started", id="it", node_id="iter"),
        wf("parallel_branch_started", parallel_id="p", parallel_start_node_id="s"),
        ids.env("message", id=ids.message_id, answer="Flow ", from_variable_selector=["llm", "text"]),
        ids.env("message", id=ids.message_id, answer="answer.", from_variable_selector=["llm", "text"]),
        wf("node_finished", **node, status="failed" if status == "failed" else "succeeded",
           process_data={"model_name": "qwen-test"}),
    ]
    finished = wf("workflow_finished", id=run, workflow_id="wf", status=status,
                  error="Run failed: node llm exploded" if status == "failed" else None,
                  total_tokens=12, total_steps=3)
    if status != "succeeded":
        return events + [finished]
    if order == "old":
        return events + [finished, ids.end()]
    if order == "relay":
        return events + [finished]
    return events + [ids.end(), finished]
