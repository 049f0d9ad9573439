"""The WebSocket half of the ChatGPT loopback: an Azure Web PubSub stand-in (spec §7.4-7.6).

A `websockets` sync server in a thread on 127.0.0.1. It accepts the reliable and plain
JSON subprotocols (echoing the chosen one), rejects a wrong path (502) or a missing
access_token (401) before the upgrade, sends the `connected` system frame first, then one
envelope per published body (`sequenceId` per connection, reliable only), and records the
client's `sequenceAck` frames. Bodies published before any client connects are kept for
the first one (lenient; the real service would lose them).
"""

from __future__ import annotations

import json
import threading
from typing import Any

WS_TOKEN = "eyJhbGciOiJIUzI1NiJ9.FAKE-azure-client-token.WSSECRET456"
RELIABLE = "json.reliable.webpubsub.azure.v1"
PLAIN = "json.webpubsub.azure.v1"


class WSHub:
    """Azure Web PubSub stand-in: connected frame, envelopes, sequenceIds, acks (§7.5, §7.6)."""

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.conns: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.acks: list[int] = []
        self.offered: list[list[str]] = []
        self.connects: list[str] = []
        self.lock = threading.Lock()
        self.closing = False
        self.server = serve(self._handler, "127.0.0.1", 0, subprotocols=[RELIABLE, PLAIN],
                            select_subprotocol=self._select, process_request=self._process, compression=None)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/client/hubs/conversations") -> str:
        return f"ws://127.0.0.1:{self.port}{path}?access_token={WS_TOKEN}"

    def _select(self, connection: Any, offered: Any) -> Any:
        self.offered.append(list(offered))
        for proto in offered:
            if proto in (RELIABLE, PLAIN):
                return proto
        return None

    def _process(self, connection: Any, request: Any) -> Any:
        self.connects.append(request.path)
        if not request.path.startswith("/client/hubs/conversations"):
            return connection.respond(502, "bad gateway\n")
        if f"access_token={WS_TOKEN}" not in request.path:
            return connection.respond(401, "missing access_token\n")
        return None

    def _handler(self, ws: Any) -> None:
        reliable = ws.subprotocol == RELIABLE
        conn = {"ws": ws, "queue": [], "seq": 0, "reliable": reliable, "sent": 0}
        first = {"type": "system", "event": "connected", "userId": "user-loopback", "connectionId": "conn-1"}
        if reliable:
            first["reconnectionToken"] = "RECONNECT-TOKEN"
        ws.send(json.dumps(first, separators=(",", ":")))
        with self.lock:
            conn["queue"].extend(self.pending)
            self.pending.clear()
            self.conns.append(conn)
        try:
            while not self.closing:
                with self.lock:
                    batch, conn["queue"] = conn["queue"], []
                for data in batch:
                    if isinstance(data, str):
                        ws.send(data)  # a verbatim frame (transcript replay)
                        continue
                    if data is None:
                        ws.close()  # fault: the socket closes early
                        return
                    env: dict[str, Any] = {"type": "message", "from": "server", "dataType": "json", "data": data}
                    if reliable:
                        conn["seq"] += 1
                        env = {"sequenceId": conn["seq"], **env}
                    ws.send(json.dumps(env, separators=(",", ":")))
                try:
                    msg = ws.recv(timeout=0.01)
                except TimeoutError:
                    continue
                frame = json.loads(msg)
                if frame.get("type") == "sequenceAck":
                    self.acks.append(int(frame["sequenceId"]))
        except Exception:  # the client went away
            pass
        finally:
            with self.lock:
                if conn in self.conns:
                    self.conns.remove(conn)

    def publish(self, data: dict[str, Any] | None) -> None:
        with self.lock:
            if not self.conns:
                self.pending.append(data)  # lenient: the real service would lose it
            for conn in self.conns:
                conn["queue"].append(data)

    def stop(self) -> None:
        self.closing = True
        self.server.shutdown()
