"""A fake Coze server on the loopback: v3 chat, v2 chat, cancel, message and conversation lists.

`CozeServer(server)` registers the routes on a `LoopbackServer`. Each chat request takes
the next queued script (`queue_transcript`, `queue_frames`, `queue_json`, `queue`), so a
test scripts exactly what Coze answers, replayed from shared/transcripts/coze/ with
awkward chunk splits. Everything chatcli sent is in `server.requests`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from loopback import Exchange, LoopbackServer

V3_CHAT = "/v3/chat"
V2_CHAT = "/open_api/v2/chat"
CANCEL = "/v3/chat/cancel"
MESSAGES = "/v1/conversation/message/list"
CONVERSATIONS = "/v1/conversations"

# Split sizes that cut inside multi-byte UTF-8 characters and inside `event:`/`data:` lines.
AWKWARD = (1, 7, 2, 13, 3, 64, 5)


def parse_http(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP response file (`.http` transcript) -> status, headers, body."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode().split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip()] = v.strip()
    return status, headers, body.rstrip(b"\n")


def v3_frame(event: str, data: Any) -> bytes:
    """Coze's framing: no space after the colons (§2.2)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"event:{event}\ndata:{text}\n\n".encode()


def v2_frame(data: Any) -> bytes:
    return f"data:{json.dumps(data, ensure_ascii=False)}\n\n".encode()


class CozeServer:
    def __init__(self, server: LoopbackServer) -> None:
        self.server = server
        self.url = server.url
        self.scripts: list[Callable[[Exchange], None]] = []
        self.cancel_answer: dict[str, Any] = {"code": 0, "msg": "", "data": {"status": "canceled"}}
        self.messages: list[dict[str, Any]] = []
        self.conversations: list[dict[str, Any]] = []
        self.page_size = 2
        self.cancelled = threading.Event()
        server.route("POST", V3_CHAT, self._chat)
        server.route("POST", V2_CHAT, self._chat)
        server.route("POST", CANCEL, self._cancel)
        server.route("POST", MESSAGES, self._messages)
        server.route("GET", CONVERSATIONS, self._conversations)

    # ----- scripting -------------------------------------------------------------------

    def queue(self, fn: Callable[[Exchange], None]) -> None:
        self.scripts.append(fn)

    def queue_stream(self, body: bytes, sizes: Any = AWKWARD, *, drop: bool = False,
                     hold: float = 0.0) -> None:
        def play(ex: Exchange) -> None:
            ex.start(200, {"X-Tt-Logid": "20250523101010LOGID"})
            ex.write_split(body, sizes)
            if hold and ex.sleep_or_gone(hold):
                self.server._gone(ex)  # the client hung up while the stream was held open
                return
            if drop:
                ex.drop()

        self.queue(play)

    def queue_transcript(self, raw: bytes, sizes: Any = AWKWARD) -> None:
        if raw.startswith(b"HTTP/"):
            status, headers, body = parse_http(raw)
            self.queue(lambda ex: ex.send(status, body, {k: v for k, v in headers.items() if k.lower() != "content-type"},
                                          headers.get("Content-Type")))
        else:
            self.queue_stream(raw, sizes)

    def queue_frames(self, frames: list[bytes], sizes: Any = AWKWARD, **kw: Any) -> None:
        self.queue_stream(b"".join(frames), sizes, **kw)

    def queue_json(self, obj: Any, status: int = 200) -> None:
        self.queue(lambda ex: ex.send_json(status, obj, {"X-Tt-Logid": "20250523101010LOGID"}))

    # ----- routes ------------------------------------------------------------------------

    def _chat(self, ex: Exchange) -> None:
        if not self.scripts:
            ex.send_json(200, {"code": 4000, "msg": "no script queued in the test"})
            return
        self.scripts.pop(0)(ex)

    def _cancel(self, ex: Exchange) -> None:
        self.cancelled.set()
        ex.send_json(200, self.cancel_answer)

    def _messages(self, ex: Exchange) -> None:
        # Newest first (order desc); after_id continues with older messages, as cozepy pages.
        req = ex.json or {}
        items = sorted(self.messages, key=lambda m: int(m["id"]), reverse=True)
        if req.get("after_id"):
            items = [m for m in items if int(m["id"]) < int(req["after_id"])]
        page = items[: self.page_size]
        ex.send_json(200, {"code": 0, "msg": "", "data": page,
                           "first_id": page[0]["id"] if page else "", "last_id": page[-1]["id"] if page else "",
                           "has_more": len(items) > len(page), "detail": {"logid": "x"}})

    def _conversations(self, ex: Exchange) -> None:
        num = int(ex.query.get("page_num", "1"))
        size = self.page_size
        page = self.conversations[(num - 1) * size: num * size]
        ex.send_json(200, {"code": 0, "msg": "", "data": {"has_more": num * size < len(self.conversations),
                                                          "conversations": page}})
