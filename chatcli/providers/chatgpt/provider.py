"""The ChatGPT provider: sentinel, the send call, the three answer encodings, stop, history.

Flow of one turn (spec §13): `POST sentinel/chat-requirements` (skipped when the host
answers 404) -> the §2.5 headers -> `POST conversation` with a fresh
`websocket_request_id`. The answer's status and Content-Type pick the decoder (§3.4):
SSE (legacy or delta v1, sniffed by `SSEDecoder`), or JSON with `wss_url` (WebSocket
mode, §7: connect, decode base64 bodies as SSE, ack; then `fallback_wss_url`; then the
same request again with `force_use_sse: true`). `-o websocket=true` registers and
connects a socket before sending (§7.4, so no early frame is lost) and leaves out
`force_use_sse`; the default asks for SSE.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson

from chatcli import events as ev
from chatcli.errors import ChatCliError, ProtocolError, ProviderError, TransportError, UsageError, register_secret
from chatcli.providers import _http
from chatcli.providers.base import Provider, Turn
from chatcli.providers.chatgpt import history, sentinel
from chatcli.providers.chatgpt.device import device_id
from chatcli.providers.chatgpt.legacy import SSEDecoder, parse
from chatcli.providers.chatgpt.wire_errors import check_token, classify
from chatcli.providers.chatgpt.ws import ConnectFailed, FrameDecoder, Socket, ack_frame, register_url_secret
from chatcli.sse import iter_sse

DEFAULT_BASE_URL = "https://chatgpt.com/backend-api"
DEFAULT_MODEL = "auto"
STOP_TIMEOUT = 5.0
LIST_PAGE = 28
LIST_MAX_PAGES = 40


def flag(extra: dict[str, Any], *keys: str, default: bool = False) -> bool:
    for key in keys:
        value = extra.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")
    return default


def timezone_offset_min(extra: dict[str, Any]) -> int:
    value = extra.get("timezone_offset_min")
    if value is not None:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UsageError(f"timezone_offset_min must be a whole number of minutes, not {value!r}") from None
    # JS getTimezoneOffset(): minutes to add to local time to get UTC (-480 for UTC+8).
    return -int(time.localtime().tm_gmtoff // 60)


def parent_for(turn: Turn) -> str:
    """parent_message_id (spec §3.1): --parent, else the last answer, else a fresh root id."""
    if turn.conversation_id:
        if turn.branch and turn.parent_id:
            return turn.parent_id
        cursor_parent = turn.cursor.get("parent_message_id")
        if isinstance(cursor_parent, str) and cursor_parent:
            return cursor_parent
        if turn.parent_id:
            return turn.parent_id
    return str(uuid.uuid4())


def build_body(turn: Turn, extra: dict[str, Any], *, model: str, websocket_request_id: str,
               force_sse: bool) -> dict[str, Any]:
    """The `POST conversation` body (spec §3.1-3.3, 2024 shape plus `supported_encodings`)."""
    gizmo = extra.get("gizmo_id")
    body: dict[str, Any] = {
        "action": "next",
        "messages": [{
            "id": turn.user_message_id,
            "author": {"role": "user"},
            "content": {"content_type": "text", "parts": [turn.prompt]},
            "metadata": {},
        }],
        "parent_message_id": parent_for(turn),
        "model": model,
        "timezone_offset_min": timezone_offset_min(extra),
        "suggestions": [],
        "history_and_training_disabled": flag(extra, "history_and_training_disabled", "history_disabled"),
        "conversation_mode": ({"kind": "gizmo_interaction", "gizmo_id": str(gizmo)} if gizmo
                              else {"kind": "primary_assistant"}),
        "force_paragen": False,
        "force_paragen_model_slug": "",
        "force_nulligen": False,
        "force_rate_limit": False,
        "reset_rate_limits": False,
        "websocket_request_id": websocket_request_id,
    }
    if turn.conversation_id:
        body["conversation_id"] = turn.conversation_id
    if extra.get("timezone"):
        body["timezone"] = str(extra["timezone"])
    if force_sse:
        body["force_use_sse"] = True
    if flag(extra, "delta_encoding", default=True):
        body["supported_encodings"] = ["v1"]
    return body


def _secret_free(obj: Any) -> Any:
    """Register the resume token (spec §6.4: never log it) before --raw prints the event."""
    if isinstance(obj, dict) and obj.get("type") == "resume_conversation_token" and isinstance(obj.get("token"), str):
        register_secret(obj["token"])
    return obj


def _usable(url: Any) -> bool:
    return isinstance(url, str) and url.startswith(("ws://", "wss://"))


class ChatGPT(Provider):
    name = "chatgpt"
    supports_branching = True
    supports_remote_stop = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.token = settings.api_key
        register_secret(self.token)
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.host = _http.host_of(self.base_url)
        self.extra: dict[str, Any] = dict(settings.extra or {})
        headers = {
            "Accept": "*/*",
            "Oai-Device-Id": device_id(),
            "Oai-Language": str(self.extra.get("language") or "en-US"),
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.extra.get("account_id"):
            headers["Chatgpt-Account-Id"] = str(self.extra["account_id"])
        if self.host.endswith(("chatgpt.com", "chat.openai.com")):
            headers["Origin"] = "https://chatgpt.com"
            headers["Referer"] = "https://chatgpt.com/"
        self.client = _http.make_client(settings, base_url=self.base_url, headers=headers)
        self.what = f"chatgpt at {self.host}"
        self.no_sentinel = not flag(self.extra, "sentinel", default=True)

    def close(self) -> None:
        self.client.close()

    def check_turn(self, turn: Turn) -> None:
        super().check_turn(turn)
        if turn.system:
            raise UsageError("the chatgpt provider takes no system prompt (--system)",
                             hint="set custom instructions in ChatGPT's settings instead")

    # ----- requests ------------------------------------------------------------------

    def _error(self, response: httpx.Response) -> Exception:
        return _http.error_for_status(response.status_code, response.headers, response.content[:_http.MAX_ERROR_BODY],
                                      provider="chatgpt", classify=classify)

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"chatgpt: {what} is not JSON") from None

    def _sentinel(self) -> dict[str, str]:
        """Spec §2: chat-requirements before every send (a fresh token each time)."""
        if self.no_sentinel:
            return {}
        body = orjson.dumps({"p": sentinel.requirements_token()})
        with _http.mapped(self.what):
            response = self.client.post("sentinel/chat-requirements", content=body,
                                        headers={"Content-Type": "application/json"})
        if response.status_code == 404:
            self.no_sentinel = True  # a proxy without the sentinel: skip it from now on
            return {}
        if response.status_code >= 300:
            raise self._error(response)
        return sentinel.headers_for(self._json(response, "the chat-requirements answer"))

    def _preconnect(self) -> Socket | None:
        """Spec §7.2/§7.4: register and connect before POSTing (None: not available)."""
        with _http.mapped(self.what):
            response = self.client.post("register-websocket", content=b"")
        if response.status_code >= 300:
            return None
        try:
            url = orjson.loads(response.content).get("wss_url")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        if not _usable(url):
            return None
        try:
            return Socket(url, timeout=self.settings.timeout, connect_timeout=self.settings.connect_timeout)
        except ConnectFailed:
            return None

    # ----- one turn ------------------------------------------------------------------

    def stream(self, turn: Turn) -> Iterator[ev.Event]:
        check_token(self.token)
        model = self.settings.model or DEFAULT_MODEL
        wsrid = str(uuid.uuid4())
        ws_mode = flag(self.extra, "websocket")
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        headers.update(self._sentinel())
        body = build_body(turn, self.extra, model=model, websocket_request_id=wsrid, force_sse=not ws_mode)
        self._accepted = False
        pre = None
        try:
            pre = self._preconnect() if ws_mode else None
            yield from self._send(turn, body, headers, model, pre)
        except ChatCliError as exc:
            if self._accepted:
                # The server accepted the message: sending it again would add a second turn.
                exc.retryable = False
            raise
        finally:
            if pre is not None:
                pre.close()

    def _send(self, turn: Turn, body: dict[str, Any], headers: dict[str, str], model: str,
              pre: Socket | None) -> Iterator[ev.Event]:
        wsrid = body["websocket_request_id"]
        with _http.mapped(self.what):
            with self.client.stream("POST", "conversation", content=orjson.dumps(body), headers=headers) as response:
                _http.raise_for_response(response, provider="chatgpt", classify=classify)
                self._accepted = True
                ctype = response.headers.get("content-type", "").lower()
                if "text/event-stream" in ctype:
                    yield from self._with_start(self._sse(response, turn, wsrid), model, turn.conversation_id)
                    return
                if "json" not in ctype:
                    raise ProtocolError(f"chatgpt: unexpected answer type {ctype or 'none'} (wanted an event stream)")
                raw = response.read()[: 1 << 20]
        answer = parse(raw.decode("utf-8", errors="replace"))
        if isinstance(answer, dict):
            register_url_secret(answer.get("wss_url"))
            register_url_secret(answer.get("fallback_wss_url"))
        turn.emit_wire(None, answer)
        cid = answer.get("conversation_id") if isinstance(answer, dict) else None
        yield ev.Start(provider="chatgpt", model=model,
                       conversation_id=cid if isinstance(cid, str) and cid else turn.conversation_id)
        yield ev.Meta(data={"model": model})
        yield from self._websocket(turn, body, headers, answer, pre)

    def _with_start(self, events: Iterator[ev.Event], model: str, cid: str | None) -> Iterator[ev.Event]:
        """Start as soon as the conversation id is known (the first SSE event carries it), so
        the start and done events name the same conversation; at the latest before the text."""
        held: list[ev.Event] = [ev.Meta(data={"model": model})]
        started = False
        for event in events:
            if not started:
                if isinstance(event, ev.Meta) and not event.data.get("conversation_id"):
                    held.append(event)
                    continue
                if isinstance(event, ev.Meta):
                    cid = event.data["conversation_id"]
                yield ev.Start(provider="chatgpt", model=model, conversation_id=cid)
                yield from held
                started = True
            yield event
        if not started:
            yield ev.Start(provider="chatgpt", model=model, conversation_id=cid)
            yield from held

    def _tagged(self, events: Iterator[ev.Event], decoder: SSEDecoder, wsrid: str) -> Iterator[ev.Event]:
        """Pass events on; add the stop handle as soon as the conversation id is known (§8)."""
        for event in events:
            if isinstance(event, ev.Meta) and set(event.data) == {"model"}:
                # The slug the server used is not the conversation's model: `continue` must
                # keep asking for what the user chose (e.g. auto). history --remote shows it.
                continue
            yield event
            if isinstance(event, ev.Meta) and event.data.get("conversation_id"):
                handle = {"conversation_id": event.data["conversation_id"], "websocket_request_id": wsrid}
                if decoder.encoding == "v1":
                    handle["exclude_async_types"] = []
                yield ev.Meta(data={"stop": handle})

    def _finish(self, decoder: SSEDecoder) -> Iterator[ev.Event]:
        yield from decoder.finish()
        if not decoder.complete:
            raise TransportError("chatgpt: the stream ended before the answer was complete")
        yield decoder.state.done()

    def _sse(self, response: httpx.Response, turn: Turn, wsrid: str) -> Iterator[ev.Event]:
        decoder = SSEDecoder()
        wire = turn.wire
        for sse in iter_sse(response.iter_text()):
            name = sse.event if sse.event != "message" else None
            data = sse.data
            if wire is not None:
                wire(name, _secret_free(parse(data)))
            yield from self._tagged(decoder.feed(name, data), decoder, wsrid)
            if data == "[DONE]":
                break
        yield from self._finish(decoder)

    def _websocket(self, turn: Turn, body: dict[str, Any], headers: dict[str, str], answer: Any,
                   pre: Socket | None) -> Iterator[ev.Event]:
        """Spec §7.3-7.6: the answer arrives over the socket (then fallback URL, then SSE)."""
        if not isinstance(answer, dict):
            raise ProtocolError("chatgpt: the server answered JSON that is not an object")
        if answer.get("detail") or answer.get("error"):
            message, _, _ = _http.parse_error_body(orjson.dumps(answer), "application/json")
            raise ProviderError(f"chatgpt: the server reported an error: {message}")
        urls = [u for u in (answer.get("wss_url"), answer.get("fallback_wss_url")) if _usable(u)]
        if not urls and pre is None:
            raise ProtocolError("chatgpt: the server answered JSON without a usable wss_url",
                                hint="try -o websocket=false, or another base URL")
        wsrid = str(answer.get("websocket_request_id") or body["websocket_request_id"])
        cid = answer.get("conversation_id") if isinstance(answer.get("conversation_id"), str) else None
        decoder = SSEDecoder()
        if cid:
            yield from self._tagged(decoder.state.conversation(cid), decoder, wsrid)
        sockets: list[Socket | str] = [pre] if pre is not None else []
        sockets += urls
        for candidate in sockets:
            if isinstance(candidate, str):
                try:
                    sock = Socket(candidate, timeout=self.settings.timeout,
                                  connect_timeout=self.settings.connect_timeout)
                except ConnectFailed:
                    continue
            else:
                sock = candidate
            try:
                yield from self._ws_answer(sock, turn, decoder, wsrid, answer.get("response_id"), cid)
            finally:
                if sock is not pre:
                    sock.close()
            return
        # Every socket failed to open: ask again for SSE (spec §7.1 force_use_sse).
        retry = dict(body, force_use_sse=True)
        if cid:
            retry["conversation_id"] = cid
        with _http.mapped(self.what):
            with self.client.stream("POST", "conversation", content=orjson.dumps(retry), headers=headers) as response:
                _http.raise_for_response(response, provider="chatgpt", classify=classify)
                if "text/event-stream" not in response.headers.get("content-type", "").lower():
                    raise ProtocolError("chatgpt: no WebSocket could be opened and the server would not answer with SSE")
                yield from self._sse(response, turn, wsrid)

    def _ws_answer(self, sock: Socket, turn: Turn, decoder: SSEDecoder, wsrid: str, response_id: Any,
                   cid: str | None) -> Iterator[ev.Event]:
        frames = FrameDecoder(websocket_request_id=wsrid, response_id=response_id if isinstance(response_id, str)
                              else None, conversation_id=cid, reliable=sock.reliable)

        def bodies() -> Iterator[str]:
            with _http.mapped(self.what):
                for text in sock.frames():
                    body = frames.feed(text)
                    seq = frames.ack_due()
                    if seq is not None:
                        sock.send(ack_frame(seq))
                    if body:
                        yield body
                    if frames.ended:
                        return
                    if frames.disconnected:
                        raise TransportError(f"chatgpt: the WebSocket was disconnected: {frames.disconnected}")

        wire = turn.wire
        for sse in iter_sse(bodies()):
            name = sse.event if sse.event != "message" else None
            if wire is not None:
                wire(name, _secret_free(parse(sse.data)))
            yield from self._tagged(decoder.feed(name, sse.data), decoder, wsrid)
            if sse.data == "[DONE]":
                break
        if frames.ended:
            decoder.state.complete = True
        yield from self._finish(decoder)

    # ----- stop and history ----------------------------------------------------------

    def stop(self, handle: dict[str, Any]) -> str | None:
        """Spec §8: stop_conversation with the conversation and websocket request ids."""
        if not isinstance(handle, dict) or not handle.get("conversation_id"):
            return None
        body = {k: handle[k] for k in ("conversation_id", "websocket_request_id", "exclude_async_types") if k in handle}
        with _http.mapped(self.what):
            response = self.client.post("stop_conversation", content=orjson.dumps(body),
                                        headers={"Content-Type": "application/json"}, timeout=STOP_TIMEOUT)
        if response.status_code >= 300:
            raise self._error(response)
        return "asked ChatGPT to stop generating (stop_conversation)"

    def remote_messages(self, conversation_id: str) -> list[dict[str, Any]]:
        with _http.mapped(self.what):
            response = self.client.get(f"conversation/{conversation_id}")
        if response.status_code >= 300:
            raise self._error(response)
        detail = self._json(response, "the conversation")
        if not isinstance(detail, dict):
            raise ProtocolError("chatgpt: the conversation is not a JSON object")
        return history.thread(detail)

    def remote_conversations(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(LIST_MAX_PAGES):
            with _http.mapped(self.what):
                response = self.client.get("conversations", params={
                    "offset": page * LIST_PAGE, "limit": LIST_PAGE, "order": "updated"})
            if response.status_code >= 300:
                raise self._error(response)
            data = self._json(response, "the conversation list")
            items = history.conversations(data if isinstance(data, dict) else {})
            out += items
            if len(items) < LIST_PAGE:
                break
        return out
