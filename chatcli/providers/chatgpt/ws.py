"""WebSocket mode (spec §7): Azure Web PubSub frames carrying base64 SSE bodies.

`FrameDecoder` is pure: `feed(frame_text)` returns the decoded SSE text of a frame that
belongs to this turn (matched on websocket_request_id, else response_id, else
conversation_id: spec §7.5), tracks `sequenceId` (top level or inside `data`: §14.2) and
says when to acknowledge it (reliable subprotocol only: §7.6) and when the body ended
(`more_body: false` or a `[DONE]` body). `Socket` owns a websocket-client connection:
subprotocols offered reliable first, --timeout as the receive timeout, closed on exit.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from chatcli.errors import ProtocolError, StreamTimeout, TransportError, register_secret

RELIABLE = "json.reliable.webpubsub.azure.v1"
PLAIN = "json.webpubsub.azure.v1"
SUBPROTOCOLS = [RELIABLE, PLAIN]
# Acknowledge every ACK_EVERY messages and once at the end (public clients batch: §7.6).
ACK_EVERY = 10


def register_url_secret(url: str | None) -> None:
    """The access_token in a wss_url must never be shown (spec §7.2)."""
    if not url:
        return
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return
    for key in ("access_token", "awps_reconnection_token"):
        for value in query.get(key, ()):
            register_secret(value)


class FrameDecoder:
    def __init__(self, *, websocket_request_id: str | None = None, response_id: str | None = None,
                 conversation_id: str | None = None, reliable: bool = True) -> None:
        self.websocket_request_id = websocket_request_id
        self.response_id = response_id
        self.conversation_id = conversation_id
        self.reliable = reliable
        self.last_seq: int | None = None
        self.acked: int | None = None
        self.unacked = 0
        self.ended = False
        self.bodies = 0
        self.disconnected: str | None = None

    def mine(self, data: dict[str, Any]) -> bool:
        for key in ("websocket_request_id", "response_id", "conversation_id"):
            want = getattr(self, key)
            if want and data.get(key):
                return bool(data[key] == want)
        return True

    def feed(self, text: str | bytes) -> str | None:
        """The SSE text carried by this frame for this turn, or None."""
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ProtocolError("chatgpt: a WebSocket frame is not JSON") from None
        if not isinstance(frame, dict):
            return None
        kind = frame.get("type")
        if kind == "system":
            if frame.get("event") == "disconnected":
                self.disconnected = str(frame.get("message") or "disconnected")
            return None
        if "data" in frame and kind in ("message", None):
            data = frame.get("data")
        elif kind is None and "body" in frame:
            data = frame  # no subprotocol: the bare data object (chatGPTBox)
        else:
            return None  # ack, pong, ...
        seq = frame.get("sequenceId")
        if seq is None and isinstance(data, dict):
            seq = data.get("sequenceId")
        if isinstance(seq, int) and self.reliable:
            if self.last_seq is None or seq > self.last_seq:
                self.last_seq = seq
                self.unacked += 1
        if not isinstance(data, dict) or not self.mine(data):
            return None
        if data.get("type") not in (None, "http.response.body"):
            return None
        body = data.get("body")
        text_out = ""
        if isinstance(body, str) and body:
            try:
                text_out = base64.b64decode(body, validate=False).decode("utf-8", errors="replace")
            except (binascii.Error, ValueError):
                raise ProtocolError("chatgpt: a WebSocket body is not base64") from None
        self.bodies += 1
        if data.get("more_body") is False or "[DONE]" in text_out[:64]:
            self.ended = True
        return text_out

    def ack_due(self) -> int | None:
        """The sequenceId to acknowledge now, if any."""
        if not self.reliable or self.last_seq is None or self.last_seq == self.acked:
            return None
        if self.unacked >= ACK_EVERY or self.ended:
            self.acked = self.last_seq
            self.unacked = 0
            return self.acked
        return None


def ack_frame(seq: int) -> str:
    return orjson.dumps({"type": "sequenceAck", "sequenceId": seq}).decode()


class ConnectFailed(Exception):
    """The socket could not be opened (try the fallback URL, then SSE)."""


class Socket:
    def __init__(self, url: str, *, timeout: float, connect_timeout: float) -> None:
        import websocket

        register_url_secret(url)
        self.url = url
        self.timeout = timeout
        try:
            self.ws = websocket.create_connection(url, timeout=connect_timeout, subprotocols=SUBPROTOCOLS,
                                                  enable_multithread=True)
        except websocket.WebSocketBadStatusException as exc:
            raise ConnectFailed(f"HTTP {getattr(exc, 'status_code', '?')}") from None
        except (websocket.WebSocketException, OSError) as exc:
            raise ConnectFailed(type(exc).__name__ + (f": {exc}" if str(exc) else "")) from None
        self.ws.settimeout(timeout)
        self.subprotocol = self.ws.getsubprotocol()

    @property
    def reliable(self) -> bool:
        return self.subprotocol == RELIABLE

    def frames(self) -> Iterator[str]:
        """Text frames until the server closes (TransportError) or --timeout of silence."""
        import websocket

        while True:
            try:
                opcode, data = self.ws.recv_data(control_frame=False)
            except websocket.WebSocketTimeoutException:
                raise StreamTimeout(f"no WebSocket frame for {self.timeout:g}s", retryable=True) from None
            except websocket.WebSocketConnectionClosedException:
                raise TransportError("chatgpt: the WebSocket closed before the answer was complete") from None
            except OSError as exc:
                if "timed out" in str(exc):
                    raise StreamTimeout(f"no WebSocket frame for {self.timeout:g}s", retryable=True) from None
                raise TransportError(f"chatgpt: the WebSocket broke: {type(exc).__name__}") from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise TransportError("chatgpt: the WebSocket closed before the answer was complete")
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                yield data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data

    def send(self, text: str) -> None:
        import websocket

        try:
            self.ws.send(text)
        except (websocket.WebSocketException, OSError):
            pass  # an ack that cannot be sent is not worth failing the answer for

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:  # closing is best effort
            pass
