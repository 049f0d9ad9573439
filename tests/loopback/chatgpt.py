"""A loopback imitation of ChatGPT's backend-api (shared/protocols/chatgpt.md §12).

HTTP on `LoopbackServer` plus a WebSocket server (the `websockets` package, sync API, in
a thread) standing in for Azure Web PubSub. `ChatGPTBackend(srv)` registers the routes:

* `GET /api/auth/session` (§1.1), Bearer checks with a `token_expired` 401 (§10);
* `POST /backend-api/sentinel/chat-requirements` with an optional proof of work that the
  send call must answer (verified by §2.3), Turnstile, or a 404 (a proxy without it);
* `POST /backend-api/conversation`: 422 on bad JSON, 404 on an unknown conversation; SSE
  (legacy, or delta v1 when `supported_encodings` has "v1") or, for a WebSocket account
  without `force_use_sse`, `200 application/json` with `wss_url` and the SSE events
  published base64 over the socket (§7); every turn is recorded in the `mapping` tree;
* `POST /backend-api/register-websocket`, `POST /backend-api/stop_conversation` (ends the
  running answer with `finish_details.type = "interrupted"` and `[DONE]`), and the
  conversation endpoints of §9 with their exact shapes;
* fault injection through `backend.fault` (see `FAULTS`).

Serialisation follows the real server: `json.dumps` defaults (ASCII escapes, ", " / ": ").
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from chatcli.providers.chatgpt import sentinel
from loopback import Exchange, LoopbackServer
from loopback.chatgpt_ws import PLAIN, RELIABLE, WS_TOKEN, WSHub  # noqa: F401 (re-exported)

P = "/backend-api"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.FAKE-chatgpt-access-token.SECRET123"
FAULTS = ("401", "403html", "429", "413", "422", "stream_error", "drop", "moderation_blocked",
          "ws_close_early", "ws_primary_broken", "ws_all_broken", "no_wss_url", "sentinel_500")
CF_PAGE = ("<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head><body>"
           "<div id=\"cf-please-wait\"></div><script>window._cf_chl_opt={cvId: '3'};</script>"
           + "x" * 20000 + "</body></html>")


def dumps(obj: Any) -> str:
    return json.dumps(obj)


def sse(data: Any, event: str | None = None, crlf: bool = False) -> str:
    nl = "\r\n" if crlf else "\n"
    text = data if isinstance(data, str) else dumps(data)
    return (f"event: {event}{nl}" if event else "") + f"data: {text}{nl}{nl}"


def words(text: str) -> list[str]:
    """Split into pieces that keep their leading space (like token streams)."""
    out: list[str] = []
    for i, w in enumerate(text.split(" ")):
        out.append(w if i == 0 else " " + w)
    return [p for p in out if p]


class ChatGPTBackend:
    def __init__(self, srv: LoopbackServer, *, websockets: bool = True) -> None:
        self.srv = srv
        self.tokens = {TOKEN}
        self.conversations: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        # knobs
        self.answer: str | Callable[[str], str] | None = None
        self.pieces: Callable[[str], list[str]] = words
        self.encoding = "auto"  # auto | legacy | v1
        self.websocket_account = False  # answers JSON + wss_url unless force_use_sse
        self.ignore_force_sse = False
        self.split: list[int] | int | None = None
        self.delay = 0.0
        self.crlf = False
        self.keepalive = False
        self.pow_difficulty: str | None = None
        self.turnstile = False
        self.sentinel_404 = False
        self.fault: str | None = None
        self.next_conversation_id: str | None = None
        self.raw_sse: bytes | None = None
        self.raw_detail: dict[str, bytes] = {}
        self.raw_list: bytes | None = None
        self.raw_ws: tuple[dict[str, Any], list[str]] | None = None  # (JSON answer, verbatim frames)
        self.finish_type = "stop"
        # records
        self.sent: list[dict[str, Any]] = []
        self.stops: list[dict[str, Any]] = []
        self.issued: dict[str, dict[str, Any]] = {}
        self._stop_flags: dict[str, threading.Event] = {}
        self.threads: list[threading.Thread] = []
        self.ws = WSHub() if websockets else None
        r = srv.route
        r("GET", r"/api/auth/session", self.session)
        r("POST", P + r"/sentinel/chat-requirements", self.requirements)
        r("POST", P + r"/conversation", self.conversation)
        r("POST", P + r"/register-websocket", self.register)
        r("POST", P + r"/stop_conversation", self.stop)
        r("GET", P + r"/conversation/([^/]+)", self.detail)
        r("PATCH", P + r"/conversation/([^/]+)", self.patch)
        r("GET", P + r"/conversations", self.listing)

    def close(self) -> None:
        for flag in self._stop_flags.values():
            flag.set()
        for t in self.threads:
            t.join(timeout=5)
        if self.ws is not None:
            self.ws.stop()

    @property
    def base_url(self) -> str:
        return self.srv.url + P

    # ----- helpers ----------------------------------------------------------------------

    def auth(self, ex: Exchange) -> bool:
        header = ex.headers.get("authorization", "")
        if header.startswith("Bearer ") and header[7:] in self.tokens and self.fault != "401":
            return True
        ex.send_json(401, {"detail": {"message": "Your authentication token has expired. Please try signing in again.",
                                      "type": "invalid_request_error", "param": None, "code": "token_expired"}})
        return False

    def text_for(self, prompt: str) -> str:
        if callable(self.answer):
            return self.answer(prompt)
        return self.answer if self.answer is not None else f"You said: {prompt}"

    # ----- §1 / §2 -----------------------------------------------------------------------

    def session(self, ex: Exchange) -> None:
        if "__Secure-next-auth.session-token" not in ex.headers.get("cookie", ""):
            ex.send_json(200, {})
            return
        def b64(obj: Any) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
        now = int(time.time())
        jwt = b64({"alg": "RS256", "typ": "JWT"}) + "." + b64({"iat": now, "exp": now + 864000}) + ".sig"
        ex.send_json(200, {"user": {"id": "user-loopback", "email": "a@b.com"}, "accessToken": jwt,
                           "expires": "2030-01-01T00:00:00.000Z", "authProvider": "auth0"})

    def requirements(self, ex: Exchange) -> None:
        if self.sentinel_404:
            ex.send_json(404, {"detail": "Not Found"})
            return
        if not self.auth(ex):
            return
        if self.fault == "sentinel_500":
            ex.send_json(500, {"detail": "Internal Server Error"})
            return
        token = "gAAAAABloopback-" + uuid.uuid4().hex
        answer: dict[str, Any] = {"persona": "chatgpt-freeaccount", "token": token, "arkose": {"required": False},
                                  "turnstile": {"required": self.turnstile, "dx": "PBp5"},
                                  "proofofwork": {"required": False}}
        if self.pow_difficulty:
            answer["proofofwork"] = {"required": True, "seed": str(uuid.uuid4().int % 10**16 / 10**16),
                                     "difficulty": self.pow_difficulty}
        self.issued[token] = answer
        ex.send_json(200, answer)

    def _sentinel_ok(self, ex: Exchange) -> bool:
        if self.sentinel_404:
            return True
        token = ex.headers.get("openai-sentinel-chat-requirements-token")
        issued = self.issued.pop(token or "", None)
        ok = issued is not None
        pow_ = (issued or {}).get("proofofwork") or {}
        if ok and pow_.get("required"):
            ok = sentinel.verify(ex.headers.get("openai-sentinel-proof-token", ""), pow_["seed"], pow_["difficulty"])
        if not ok:
            ex.send_json(403, {"detail": "Unusual activity has been detected from your device. Try again later."})
        return ok

    # ----- §3: the send call -----------------------------------------------------------

    def conversation(self, ex: Exchange) -> None:
        if not self.auth(ex):
            return
        try:
            body = json.loads(ex.body)
        except ValueError:
            ex.send_json(422, {"detail": [{"loc": ["body", 0], "msg": "Expecting value: line 1 column 1 (char 0)",
                                           "type": "value_error.jsondecode"}]})
            return
        self.sent.append(body)
        if self.fault == "403html":
            ex.send(403, CF_PAGE, {"cf-mitigated": "challenge"}, "text/html; charset=UTF-8")
            return
        if not self._sentinel_ok(ex):
            return
        if self.fault == "429":
            ex.send_json(429, {"detail": {"message": "You have sent too many messages to the model. Please try again later.",
                                          "code": "model_cap_exceeded", "clears_in": 11461}})
            return
        if self.fault == "422":
            ex.send_json(422, {"detail": [{"loc": ["body", "messages"], "msg": "field required",
                                           "type": "value_error.missing"}]})
            return
        if self.fault == "413":
            ex.send_json(413, {"detail": {"message": "The message you submitted was too long, please reload the "
                                                     "conversation and submit something shorter.",
                                          "code": "message_length_exceeds_limit"}})
            return
        cid = body.get("conversation_id")
        if cid and cid not in self.conversations:
            ex.send_json(404, {"detail": "Conversation not found"})
            return
        force = body.get("force_use_sse") is True and not self.ignore_force_sse
        use_ws = self.websocket_account and not force and self.ws is not None
        turn = self._record_turn(body)
        if self.raw_sse is not None and not use_ws:
            ex.start(200, content_type="text/event-stream; charset=utf-8")
            ex.write_split(self.raw_sse, self.split or [len(self.raw_sse)], self.delay)
            return
        if use_ws and self.raw_ws is not None:
            answer, frames = self.raw_ws
            ex.send_json(200, answer)
            for frame in frames:
                self.ws.publish(frame)  # type: ignore[union-attr]
            return
        if use_ws:
            self._answer_ws(ex, body, turn)
            return
        ex.start(200, content_type="text/event-stream; charset=utf-8")
        events = self._events(body, turn)
        for i, event in enumerate(events):
            if self.fault == "drop" and i == 3:
                ex.drop()
                return
            data = event.encode()
            if self.split:
                ex.write_split(data, self.split)
            else:
                ex.write(data)
            if self.keepalive:
                ex.write(sse("2024-04-27 12:34:56.123456", crlf=self.crlf))
            if self.delay and ex.sleep_or_gone(self.delay):
                # The client hung up (an aborted SSE turn stops generation too: spec §8).
                self._stop_flags[turn["cid"]].set()
                self.srv._gone(ex)
                for _ in events:
                    pass
                return

    def _answer_ws(self, ex: Exchange, body: dict[str, Any], turn: dict[str, Any]) -> None:
        assert self.ws is not None
        answer = {"conversation_id": turn["cid"], "response_id": str(uuid.uuid4()),
                  "websocket_request_id": body.get("websocket_request_id"), "expires_at": "2030-01-01T00:00:00+00:00"}
        if self.fault == "ws_primary_broken":
            answer["wss_url"] = self.ws.url("/broken")
            answer["fallback_wss_url"] = self.ws.url()
        elif self.fault == "ws_all_broken":
            answer["wss_url"] = self.ws.url("/broken")
            answer["fallback_wss_url"] = self.ws.url("/broken-too")
        elif self.fault != "no_wss_url":
            answer["wss_url"] = self.ws.url()
        ex.send_json(200, answer)
        if self.fault in ("ws_all_broken", "no_wss_url"):
            return  # nothing is published: the client must ask again for SSE

        def publish() -> None:
            events = [self.raw_sse.decode()] if self.raw_sse is not None else self._events(body, turn)
            if self.raw_sse is not None:
                events = [e + "\n\n" for e in self.raw_sse.decode().split("\n\n") if e.strip()]
            for i, event in enumerate(events):
                if self.fault == "ws_close_early" and i == 3:
                    self.ws.publish(None)
                    return
                last = event.startswith("data: [DONE]")
                self.ws.publish({"type": "http.response.body", "body": base64.b64encode(event.encode()).decode(),
                                 "more_body": not last, "response_id": answer["response_id"],
                                 "conversation_id": turn["cid"],
                                 "websocket_request_id": answer["websocket_request_id"]})
                if self.delay and self._stop_flags[turn["cid"]].wait(self.delay):
                    self.delay = 0  # stopped: finish the tail at once

        t = threading.Thread(target=publish, daemon=True)
        self.threads.append(t)
        t.start()

    # ----- the mapping tree (§9.1) ------------------------------------------------------

    def _record_turn(self, body: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        cid = body.get("conversation_id")
        new = cid is None
        if new:
            cid = self.next_conversation_id or str(uuid.uuid4())
            self.next_conversation_id = None
            root, system = str(uuid.uuid4()), str(uuid.uuid4())
            self.conversations[cid] = {
                "title": "New chat", "create_time": now, "update_time": now,
                "mapping": {
                    root: {"id": root, "message": None, "parent": None, "children": [system]},
                    system: {"id": system, "message": {
                        "id": system, "author": {"role": "system", "name": None, "metadata": {}}, "create_time": None,
                        "update_time": None, "content": {"content_type": "text", "parts": [""]},
                        "status": "finished_successfully", "end_turn": True, "weight": 0.0,
                        "metadata": {"is_visually_hidden_from_conversation": True}, "recipient": "all"},
                        "parent": root, "children": []},
                },
                "moderation_results": [], "current_node": system, "conversation_id": cid,
            }
        conv = self.conversations[cid]
        if cid in self.order:
            self.order.remove(cid)
        self.order.insert(0, cid)
        mapping = conv["mapping"]
        parent = body.get("parent_message_id")
        if parent not in mapping:
            parent = conv["current_node"]
        message = (body.get("messages") or [{}])[0]
        uid = message.get("id") or str(uuid.uuid4())
        prompt = "".join(p for p in (message.get("content") or {}).get("parts") or () if isinstance(p, str))
        if uid not in mapping:
            mapping[uid] = {"id": uid, "message": {
                "id": uid, "author": {"role": "user", "name": None, "metadata": {}}, "create_time": now,
                "update_time": None, "content": {"content_type": "text", "parts": [prompt]},
                "status": "finished_successfully", "end_turn": None, "weight": 1.0,
                "metadata": {"timestamp_": "absolute", "message_type": None}, "recipient": "all"},
                "parent": parent, "children": []}
            mapping[parent]["children"].append(uid)
        aid = str(uuid.uuid4())
        assistant = {"id": aid, "author": {"role": "assistant", "name": None, "metadata": {}}, "create_time": now,
                     "update_time": None, "content": {"content_type": "text", "parts": [""]}, "status": "in_progress",
                     "end_turn": None, "weight": 1.0,
                     "metadata": {"citations": [], "content_references": [], "gizmo_id": None, "message_type": "next",
                                  "model_slug": "gpt-4o" if body.get("model") == "auto" else body.get("model"),
                                  "default_model_slug": "auto", "parent_id": uid},
                     "recipient": "all"}
        mapping[aid] = {"id": aid, "message": assistant, "parent": uid, "children": []}
        mapping[uid]["children"].append(aid)
        conv["current_node"] = aid
        conv["update_time"] = now
        self._stop_flags[cid] = threading.Event()
        return {"cid": cid, "new": new, "uid": uid, "aid": aid, "assistant": assistant, "prompt": prompt,
                "system": conv["mapping"][conv["mapping"][uid]["parent"]]["id"]}

    def _finish_message(self, turn: dict[str, Any], text: str, kind: str) -> dict[str, Any]:
        msg = turn["assistant"]
        msg["content"]["parts"] = [text]
        msg["status"] = "finished_successfully"
        msg["end_turn"] = kind != "interrupted"
        msg["metadata"]["finish_details"] = ({"type": "interrupted", "reason": "client_stopped"} if kind == "interrupted"
                                             else {"type": kind, "stop_tokens": [200002]})
        msg["metadata"]["is_complete"] = True
        return msg

    # ----- the answer, as SSE event texts ----------------------------------------------------

    def _events(self, body: dict[str, Any], turn: dict[str, Any]) -> Iterator[str]:
        v1 = self.encoding == "v1" or (self.encoding == "auto" and "v1" in (body.get("supported_encodings") or ()))
        text = self.text_for(turn["prompt"])
        gen = self._v1(turn, text) if v1 else self._legacy(turn, text)
        yield from gen

    def _stopped(self, turn: dict[str, Any]) -> bool:
        return self._stop_flags[turn["cid"]].is_set()

    def _tail(self, turn: dict[str, Any], v1: bool) -> Iterator[str]:
        cid = turn["cid"]
        c = self.crlf
        msg = turn["assistant"]
        if not v1:
            yield sse({"conversation_id": cid, "message_id": turn["aid"], "is_completion": True,
                       "moderation_response": {"flagged": False, "blocked": self.fault == "moderation_blocked",
                                               "moderation_id": "modr-loopback"}}, crlf=c)
        if turn["new"] and msg["metadata"]["finish_details"]["type"] != "interrupted":
            title = " ".join(w.capitalize() for w in turn["prompt"].split()[:4]) or "New chat"
            self.conversations[cid]["title"] = title
            yield sse({"type": "title_generation", "title": title, "conversation_id": cid}, crlf=c)
        if v1:
            yield sse({"type": "message_stream_complete", "conversation_id": cid}, crlf=c)
        yield sse({"type": "conversation_detail_metadata", "banner_info": None, "blocked_features": [],
                   "model_limits": [], "default_model_slug": "auto", "conversation_id": cid}, crlf=c)
        yield sse("[DONE]", crlf=c)

    def _legacy(self, turn: dict[str, Any], text: str) -> Iterator[str]:
        cid, msg, c = turn["cid"], turn["assistant"], self.crlf

        def snap() -> str:
            return sse({"message": msg, "conversation_id": cid, "error": None}, crlf=c)

        yield snap()
        so_far = ""
        for i, piece in enumerate(self.pieces(text)):
            if self._stopped(turn):
                break
            if self.fault == "stream_error" and i == 2:
                yield sse({"message": None, "conversation_id": cid, "error": "Our systems have detected unusual "
                           "activity coming from your system. Please try again later."}, crlf=c)
                return
            so_far += piece
            msg["content"]["parts"] = [so_far]
            yield snap()
        self._finish_message(turn, so_far, "interrupted" if self._stopped(turn) else self.finish_type)
        yield snap()
        yield from self._tail(turn, False)

    def _v1(self, turn: dict[str, Any], text: str) -> Iterator[str]:
        cid, msg, c = turn["cid"], turn["assistant"], self.crlf
        yield sse('"v1"', "delta_encoding", crlf=c)
        conv = self.conversations[cid]
        if turn["new"]:
            system = conv["mapping"][turn["system"]]["message"]
            yield sse({"p": "", "o": "add", "v": {"message": system, "conversation_id": cid, "error": None}, "c": 0},
                      "delta", crlf=c)
        user = conv["mapping"][turn["uid"]]["message"]
        yield sse({"v": {"message": user, "conversation_id": cid, "error": None}, "c": 1}, "delta", crlf=c)
        yield sse({"type": "input_message", "input_message": user, "conversation_id": cid}, crlf=c)
        yield sse({"v": {"message": dict(msg, content={"content_type": "text", "parts": [""]}),
                         "conversation_id": cid, "error": None}, "c": 2}, "delta", crlf=c)
        so_far = ""
        for i, piece in enumerate(self.pieces(text)):
            if self._stopped(turn):
                break
            if self.fault == "stream_error" and i == 2:
                yield sse({"type": "error", "error": "Something went wrong while generating the response.",
                           "conversation_id": cid}, crlf=c)
                return
            if self.fault == "moderation_blocked" and i == 2:
                yield sse({"type": "moderation", "moderation_response": {"blocked": True, "flagged": True},
                           "conversation_id": cid}, crlf=c)
                return
            frame = {"p": "/message/content/parts/0", "o": "append", "v": piece} if i == 0 else {"v": piece}
            so_far += piece
            msg["content"]["parts"] = [so_far]
            yield sse(frame, "delta", crlf=c)
        kind = "interrupted" if self._stopped(turn) else self.finish_type
        done = self._finish_message(turn, so_far, kind)
        yield sse({"p": "", "o": "patch", "v": [
            {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
            {"p": "/message/end_turn", "o": "replace", "v": done["end_turn"]},
            {"p": "/message/metadata", "o": "append", "v": {"finish_details": done["metadata"]["finish_details"],
                                                           "is_complete": True}}]}, "delta", crlf=c)
        yield from self._tail(turn, True)

    # ----- §7.2, §8, §9 ----------------------------------------------------------------

    def register(self, ex: Exchange) -> None:
        if not self.auth(ex):
            return
        if self.ws is None:
            ex.send_json(404, {"detail": "Not Found"})
            return
        ex.send_json(200, {"wss_url": self.ws.url(), "expires_at": "2030-01-01T00:00:00.000000+00:00"})

    def stop(self, ex: Exchange) -> None:
        if not self.auth(ex):
            return
        body = ex.json or {}
        self.stops.append(body)
        flag = self._stop_flags.get(body.get("conversation_id") or "")
        if flag is not None:
            flag.set()
        ex.send_json(200, {"status": "ok"})

    def detail(self, ex: Exchange) -> None:
        if not self.auth(ex):
            return
        cid = ex.match.group(1) if ex.match else ""
        if cid in self.raw_detail:
            ex.send(200, self.raw_detail[cid], content_type="application/json")
            return
        conv = self.conversations.get(cid)
        if conv is None:
            ex.send_json(404, {"detail": f"Can't load conversation {cid}"})
            return
        ex.send_json(200, conv)

    def patch(self, ex: Exchange) -> None:
        if not self.auth(ex):
            return
        cid = ex.match.group(1) if ex.match else ""
        conv = self.conversations.get(cid)
        if conv is None:
            ex.send_json(404, {"detail": f"Can't load conversation {cid}"})
            return
        body = ex.json or {}
        if "title" in body:
            conv["title"] = body["title"]
        if body.get("is_visible") is False:
            del self.conversations[cid]
            self.order.remove(cid)
        ex.send_json(200, {"success": True})

    def listing(self, ex: Exchange) -> None:
        if not self.auth(ex):
            return
        if self.raw_list is not None:
            ex.send(200, self.raw_list, content_type="application/json")
            return
        offset, limit = int(ex.query.get("offset", 0)), int(ex.query.get("limit", 28))

        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).isoformat()

        items = [{"id": cid, "title": self.conversations[cid]["title"],
                  "create_time": iso(self.conversations[cid]["create_time"]),
                  "update_time": iso(self.conversations[cid]["update_time"]), "mapping": None, "current_node": None,
                  "conversation_template_id": None, "gizmo_id": None, "is_archived": False, "workspace_id": None}
                 for cid in self.order[offset:offset + limit]]
        ex.send_json(200, {"items": items, "total": len(self.order), "limit": limit, "offset": offset,
                           "has_missing_conversations": False})


def backend_fixture():
    """A pytest fixture factory: `chatgpt = backend_fixture()` in a test module."""
    import pytest

    @pytest.fixture
    def chatgpt():
        srv = LoopbackServer().start()
        backend = ChatGPTBackend(srv)
        try:
            yield backend
        finally:
            backend.close()
            srv.stop()

    return chatgpt
