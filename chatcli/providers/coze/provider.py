"""Provider `coze`: Coze bots over the v3 chat API (default) or the legacy v2 API.

The conversation lives on Coze (`auto_save_history`); its id comes from the first chat
and goes in the query string of the next (shared/protocols/coze.md §2.1). A rejected
request answers JSON instead of a stream, often with HTTP 200 (§2.2). Stopping calls
`/v3/chat/cancel` (§3.1) and then closes the stream. The decoders are pure (decoder.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from chatcli import events as ev
from chatcli.errors import ChatCliError, ProtocolError, TransportError, UsageError
from chatcli.providers import _http
from chatcli.providers.base import Provider, Turn
from chatcli.providers.coze.codes import CANCEL_TOO_LATE, as_code, classify, describe
from chatcli.providers.coze.decoder import V2Decoder, V3Decoder
from chatcli.sse import iter_sse

DEFAULT_USER = "chatcli"
STOP_TIMEOUT = 5.0
# history --remote: at most this many pages of 50 messages (a guard, not a real limit).
MAX_PAGES = 200


def api_version(value: Any) -> str:
    text = str(value or "v3").strip().lower()
    if text in ("v3", "3"):
        return "v3"
    if text in ("v2", "2"):
        return "v2"
    raise UsageError(f"coze: unknown API version {value!r}", hint="use --api-version v3 (default) or v2")


# Pasted endpoint URLs are reduced to the site root that every path here is relative to.
_API_SUFFIXES = ("/v3/chat", "/open_api/v2/chat", "/open_api/v2", "/v3", "/v1")


def api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    for suffix in _API_SUFFIXES:
        if root.endswith(suffix):
            return root[: -len(suffix)]
    return root


def logid_of(response: httpx.Response, data: Any = None) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("detail"), dict) and data["detail"].get("logid"):
        return str(data["detail"]["logid"])
    return response.headers.get("x-tt-logid")


def rejection(response: httpx.Response, body: bytes) -> ChatCliError:
    """The error for a chat request answered with JSON (or anything else) instead of a stream."""
    ctype = response.headers.get("content-type", "")
    status = response.status_code if response.status_code >= 300 else None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and ("code" in data or "msg" in data):
        return classify(data.get("code"), data.get("msg"), logid=logid_of(response, data), status=status)
    message, _, _ = _http.parse_error_body(body, ctype)
    return ProtocolError(f"coze: expected an event stream, got {ctype or 'no content type'}"
                         + (f": {message}" if message else ""), status=status)


def _classify_http(status: int, code: Any, data: Any, message: str | None) -> ChatCliError | None:
    """A non-2xx answer: Coze's own code wins over the HTTP status (coze-js maps both, §4)."""
    if isinstance(data, dict) and as_code(data.get("code")) is not None:
        logid = data["detail"].get("logid") if isinstance(data.get("detail"), dict) else None
        return classify(data.get("code"), data.get("msg") or message, logid=logid, status=status)
    return None


def iso(value: Any) -> str | None:
    """Unix seconds (int or numeric string, §3.6 says parse leniently) -> ISO 8601 UTC."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return value if isinstance(value, str) and value else None
    if seconds > 1e11:  # milliseconds
        seconds /= 1000
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class Coze(Provider):
    name = "coze"
    supports_remote_stop = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        headers = {"Content-Type": "application/json"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.client = _http.make_client(settings, base_url=api_root(settings.base_url or ""), headers=headers)
        self.host = _http.host_of(settings.base_url or "")
        self.what = f"coze at {self.host}"
        self.user = settings.user or DEFAULT_USER

    def check_turn(self, turn: Turn) -> None:
        super().check_turn(turn)
        if turn.system:
            raise UsageError("--system is not supported by the coze provider",
                             hint="a Coze bot's prompt is set on Coze, in the bot's persona")

    def close(self) -> None:
        self.client.close()

    def _version(self, turn: Turn | None = None) -> str:
        given = self.settings.extra.get("api_version")
        if given:
            return api_version(given)
        # `continue` keeps the API the conversation was started with.
        return api_version((turn.cursor if turn else {}).get("api_version"))

    # ----- chat ----------------------------------------------------------------------

    def stream(self, turn: Turn) -> Iterator[ev.Event]:
        version = self._version(turn)
        if version == "v2":
            conversation_id = turn.conversation_id or str(uuid.uuid4())
            path, params = "open_api/v2/chat", None
            body = self._v2_body(turn, conversation_id)
            decoder: V2Decoder | V3Decoder = V2Decoder(conversation_id)
        else:
            path = "v3/chat"
            # §2.1: conversation_id goes in the query string (cozepy fix #126).
            params = {"conversation_id": turn.conversation_id} if turn.conversation_id else None
            body = {
                "bot_id": self.settings.bot_id,
                "user_id": self.user,
                "stream": True,
                "auto_save_history": True,
                "additional_messages": [{"role": "user", "content": turn.prompt, "content_type": "text"}],
            }
            decoder = V3Decoder(turn.conversation_id)
        # Kept with the conversation first, so that `continue` speaks the same API even
        # after a failed first turn.
        yield ev.Meta(data={"cursor": {"api_version": version}})
        try:
            yield from self._chat(turn, path, params, body, decoder)
        except ChatCliError as exc:
            if decoder.finish_reason == "stop" and isinstance(exc, TransportError):
                pass  # chat.completed arrived; only the closing `done` was lost (§2.3: completed suffices)
            else:
                # Once the chat exists server-side, retrying would ask the question twice.
                if isinstance(decoder, V3Decoder) and decoder.accepted:
                    exc.retryable = False
                raise
        yield from decoder.finish()

    def _v2_body(self, turn: Turn, conversation_id: str) -> dict[str, Any]:
        # §1.1: the client keeps the conversation; earlier turns go along as chat_history.
        history = []
        for msg in turn.history:
            text = msg.get("text") or ""
            if msg.get("role") == "user":
                history.append({"role": "user", "content": text, "content_type": "text"})
            elif msg.get("role") == "assistant" and text:
                history.append({"role": "assistant", "type": "answer", "content": text, "content_type": "text"})
        body: dict[str, Any] = {
            "conversation_id": conversation_id,
            "bot_id": self.settings.bot_id,
            "user": self.user,
            "query": turn.prompt,
            "stream": True,
        }
        if history:
            body["chat_history"] = history
        return body

    def _chat(self, turn: Turn, path: str, params: dict[str, Any] | None, body: dict[str, Any],
              decoder: V2Decoder | V3Decoder) -> Iterator[ev.Event]:
        wire = turn.wire
        with _http.mapped(self.what):
            with self.client.stream("POST", path, params=params, content=orjson.dumps(body),
                                    headers={"Accept": "text/event-stream"}) as response:
                _http.raise_for_response(response, provider="coze", classify=_classify_http)
                ctype = response.headers.get("content-type", "")
                if "event-stream" not in ctype:
                    raw = response.read()[: _http.MAX_ERROR_BODY]
                    if wire is not None:
                        wire(None, _parsed(raw.decode("utf-8", "replace")))
                    yield from self._non_stream(response, raw, decoder)
                    return
                for sse in iter_sse(response.iter_text()):
                    if wire is not None:
                        name = sse.event if sse.event != "message" else None
                        wire(name, _parsed(sse.data))
                    yield from decoder.feed(sse.event, sse.data)
                    if decoder.ended:
                        break

    def _non_stream(self, response: httpx.Response, raw: bytes, decoder: V2Decoder | V3Decoder
                    ) -> Iterator[ev.Event]:
        """JSON instead of a stream: a rejection (§2.2), or a v2 server that ignored `stream` (§1.2)."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if (isinstance(decoder, V2Decoder) and isinstance(data, dict) and as_code(data.get("code")) == 0
                and isinstance(data.get("messages"), list)):
            packet = {"conversation_id": data.get("conversation_id") or decoder.conversation_id}
            for m in data["messages"]:
                if isinstance(m, dict):
                    yield from decoder.feed(None, orjson.dumps({**packet, "event": "message", "message": m,
                                                                "is_finish": True}).decode())
            yield from decoder.feed(None, '{"event":"done"}')
            return
        if isinstance(data, dict) and as_code(data.get("code")) == 0:
            raise ProtocolError("coze: the server answered without streaming (an unexpected JSON body)")
        raise rejection(response, raw)

    # ----- stop ----------------------------------------------------------------------

    def stop(self, handle: dict[str, Any]) -> str | None:
        """§3.1: cancel flips the chat's state; run.py closes the stream afterwards."""
        if not handle or not handle.get("chat_id") or not handle.get("conversation_id"):
            return None
        body = {"conversation_id": handle["conversation_id"], "chat_id": handle["chat_id"]}
        with _http.mapped(self.what):
            response = self.client.post("v3/chat/cancel", content=orjson.dumps(body),
                                        timeout=httpx.Timeout(STOP_TIMEOUT))
        data = self._envelope(response, "cancel", allow={CANCEL_TOO_LATE})
        if as_code(data.get("code")) == CANCEL_TOO_LATE:
            return ("coze could not cancel the chat any more: "
                    + describe(data.get("code"), data.get("msg") or "it had already ended on the server"))
        return None

    def _envelope(self, response: httpx.Response, what: str, allow: set[int] | frozenset[int] = frozenset()
                  ) -> dict[str, Any]:
        """The §0.1 envelope of a non-streaming endpoint, or the error it reports."""
        if response.status_code >= 300:
            raise _http.error_for_status(response.status_code, response.headers, response.content[: _http.MAX_ERROR_BODY],
                                         provider="coze", classify=_classify_http)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"coze: the {what} answer is not JSON") from None
        if not isinstance(data, dict):
            raise ProtocolError(f"coze: unexpected {what} answer")
        code = as_code(data.get("code"))
        if code not in (0, None) and code not in allow:
            raise classify(code, data.get("msg"), logid=logid_of(response, data))
        return data

    # ----- history --remote ------------------------------------------------------------

    def remote_messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """§3.6: the conversation's questions and answers, all pages, oldest first."""
        seen: dict[str, dict[str, Any]] = {}
        after: str | None = None
        for _ in range(MAX_PAGES):
            # cozepy pages with after_id = last_id while has_more (§3.6; direction unverified,
            # so pages are merged by id and sorted by time, and a page with nothing new ends it).
            req: dict[str, Any] = {"order": "desc", "limit": 50}
            if after:
                req["after_id"] = after
            with _http.mapped(self.what):
                response = self.client.post("v1/conversation/message/list",
                                            params={"conversation_id": conversation_id}, content=orjson.dumps(req))
            data = self._envelope(response, "message list")
            page = data.get("data") or []
            new = 0
            for m in page if isinstance(page, list) else ():
                if isinstance(m, dict) and m.get("id") is not None and str(m["id"]) not in seen:
                    seen[str(m["id"])] = m
                    new += 1
            after = str(data["last_id"]) if data.get("last_id") else None
            if not data.get("has_more") or not after or not new:
                break
        return _thread(list(seen.values()))

    def remote_conversations(self) -> list[dict[str, Any]]:
        """§3.7: the bot's conversations, newest first."""
        out: list[dict[str, Any]] = []
        for page_num in range(1, MAX_PAGES + 1):
            params = {"bot_id": self.settings.bot_id or "", "page_num": page_num, "page_size": 50,
                      "sort_order": "DESC"}
            with _http.mapped(self.what):
                response = self.client.get("v1/conversations", params=params)
            data = self._envelope(response, "conversation list").get("data") or {}
            convs = data.get("conversations") or [] if isinstance(data, dict) else []
            for c in convs:
                if isinstance(c, dict) and c.get("id") is not None:
                    out.append({"conversation_id": str(c["id"]), "title": c.get("name") or None,
                                "created_at": iso(c.get("created_at")),
                                "updated_at": iso(c.get("updated_at") or c.get("created_at"))})
            if not (isinstance(data, dict) and data.get("has_more")) or not convs:
                break
        return out


def _sort_key(m: dict[str, Any]) -> tuple[float, int, str]:
    try:
        when = float(m.get("created_at") or 0)
    except (TypeError, ValueError):
        when = 0.0
    mid = str(m.get("id"))
    return (when, int(mid) if mid.isdigit() else 0, mid)


def _thread(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parent: str | None = None
    for m in sorted(messages, key=_sort_key):
        if m.get("type") not in (None, "question", "answer") or m.get("role") not in ("user", "assistant"):
            continue  # §3.6 lists only questions and answers; be safe about the rest
        mid = str(m["id"])
        out.append({
            "message_id": mid,
            "parent_id": parent,
            "role": m["role"],
            "text": m.get("content") if isinstance(m.get("content"), str) else "",
            "created_at": iso(m.get("created_at")),
            "status": "complete",
            "chat_id": m.get("chat_id"),
        })
        parent = mid
    return out


def _parsed(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
