"""Loopback HTTP servers for tests: real sockets on 127.0.0.1, one thread per connection.

`LoopbackServer` routes (method, path regex) to a handler that gets an `Exchange`: the
request (method, path, query, headers, body, json) and ways to answer it: a whole
response, or a chunked stream written piece by piece (with delays, byte-by-byte splits,
a drop of the connection mid-chunk). Every request is recorded in `server.requests`, and
connections the client closed early are counted in `server.disconnects`, so tests can
assert what chatcli sent and that it hung up.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Handler = Callable[["Exchange"], None]


class ClientGone(Exception):
    """The client closed the connection while the server was writing."""


class Exchange:
    def __init__(self, handler: BaseHTTPRequestHandler, server: LoopbackServer, body: bytes) -> None:
        self._h = handler
        self.server = server
        self.method = handler.command
        parts = urlsplit(handler.path)
        self.path = parts.path
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.raw_path = handler.path
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.body = body
        self.match: re.Match[str] | None = None
        self._chunked = False
        self.started = False

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    # ----- whole responses ---------------------------------------------------------

    def send(self, status: int, body: bytes | str | Any = b"", headers: dict[str, str] | None = None,
             content_type: str | None = None) -> None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            content_type = content_type or "application/json"
        data = body.encode() if isinstance(body, str) else body
        self._h.send_response(status)
        hdrs = {"Content-Type": content_type or "text/plain; charset=utf-8", "Content-Length": str(len(data))}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            self._h.send_header(k, v)
        self._h.end_headers()
        self.started = True
        self._write_raw(data)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send(status, json.dumps(obj).encode(), headers, "application/json")

    # ----- streams -----------------------------------------------------------------

    def start(self, status: int = 200, headers: dict[str, str] | None = None,
              content_type: str = "text/event-stream") -> None:
        self._h.send_response(status)
        hdrs = {"Content-Type": content_type, "Transfer-Encoding": "chunked", "Cache-Control": "no-cache"}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            self._h.send_header(k, v)
        self._h.end_headers()
        self._chunked = True
        self.started = True
        self._flush()

    def write(self, data: bytes | str) -> None:
        """One chunk of a chunked body (the client sees it as soon as it is written)."""
        if isinstance(data, str):
            data = data.encode()
        if not data:
            return
        self._write_raw(b"%x\r\n" % len(data) + data + b"\r\n")

    def write_split(self, data: bytes | str, sizes: Iterable[int] | int = 1, delay: float = 0.0) -> None:
        """Write `data` in pieces of the given sizes (cycled), each its own chunk."""
        if isinstance(data, str):
            data = data.encode()
        seq = [sizes] if isinstance(sizes, int) else list(sizes)
        i = pos = 0
        while pos < len(data):
            n = max(1, seq[i % len(seq)])
            self.write(data[pos : pos + n])
            pos += n
            i += 1
            if delay:
                time.sleep(delay)

    def end(self) -> None:
        if self._chunked:
            self._write_raw(b"0\r\n\r\n")
            self._chunked = False

    def drop(self) -> None:
        """Cut the connection now (mid-body: the client sees an incomplete chunked body)."""
        self._h.close_connection = True
        try:
            self._h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def sleep_or_gone(self, seconds: float) -> bool:
        """Wait, returning True early if the client hung up meanwhile."""
        end = time.monotonic() + seconds
        sock = self._h.connection
        while time.monotonic() < end:
            try:
                sock.settimeout(max(0.001, min(0.05, end - time.monotonic())))
                data = sock.recv(1, socket.MSG_PEEK)
                if data == b"":
                    return True
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                return True
            finally:
                sock.settimeout(None)
        return False

    def _flush(self) -> None:
        try:
            self._h.wfile.flush()
        except OSError as exc:
            raise ClientGone() from exc

    def _write_raw(self, data: bytes) -> None:
        try:
            self._h.wfile.write(data)
            self._h.wfile.flush()
        except OSError as exc:
            raise ClientGone() from exc

    @property
    def socket(self) -> socket.socket:
        return self._h.connection


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        ex = Exchange(self, owner, body)
        owner._record(ex)
        handler = owner._find(ex)
        try:
            if handler is None:
                ex.send_json(404, {"error": {"message": f"no route for {ex.method} {ex.path}"}})
            else:
                handler(ex)
                ex.end()
        except ClientGone:
            owner._gone(ex)
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            owner._gone(ex)
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LoopbackServer


class LoopbackServer:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Exchange] = []
        self.disconnects: list[Exchange] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, pattern: str, handler: Handler | None = None) -> Any:
        def register(fn: Handler) -> Handler:
            self.routes.insert(0, (method.upper(), re.compile(pattern + r"\Z"), fn))
            return fn

        return register(handler) if handler is not None else register

    def _find(self, ex: Exchange) -> Handler | None:
        for method, pattern, handler in self.routes:
            if method in (ex.method, "*"):
                m = pattern.match(ex.path)
                if m:
                    ex.match = m
                    return handler
        return None

    def _record(self, ex: Exchange) -> None:
        with self._lock:
            self.requests.append(ex)

    def _gone(self, ex: Exchange) -> None:
        with self._lock:
            self.disconnects.append(ex)

    def requests_to(self, path: str, method: str | None = None) -> list[Exchange]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def sse_frame(data: Any, event: str | None = None, *, crlf: bool = False) -> bytes:
    """One SSE event: `event:` line when named, `data:` lines, blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    nl = "\r\n" if crlf else "\n"
    lines = ([f"event: {event}"] if event else []) + [f"data: {line}" for line in text.split("\n")]
    return (nl.join(lines) + nl + nl).encode()
