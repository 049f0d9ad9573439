"""A loopback fault server: every fault, in any provider's wire format.

`FaultServer(wire)` wraps `LoopbackServer` and answers the provider's route with the fault
chosen by `srv.fault = NAME` (or a list of faults, one per request, for retry tests; the
last one repeats). Faults are built from the `Wire` pieces (preamble, delta, ending,
malformed frame, error body), so they mean the same thing for every provider.

A WebSocket abnormal close (ChatGPT's `wss_url` hand-off, chatgpt.md §7) needs a
WebSocket server: `ws_fault_hook` is the place for it (see its docstring).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from loopback import Exchange, LoopbackServer

from reliability.wire import Wire

PARTIAL = "Partial answer, "
STALL = 30.0
HUGE = 10 * 1024 * 1024
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
             b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>")


def _good(w: Wire, ex: Exchange) -> None:
    ex.start(200)
    ex.write_split(w.answer(["Hello", ", wörld ", "日本語", "!"]), [7, 1, 3, 64])


def _stall_before_headers(w: Wire, ex: Exchange) -> None:
    if ex.sleep_or_gone(STALL):
        return
    _good(w, ex)


def _stall_after_headers(w: Wire, ex: Exchange) -> None:
    ex.start(200)
    ex.sleep_or_gone(STALL)


def _partial(w: Wire, ex: Exchange) -> None:
    ex.start(200)
    ex.write(w.preamble())
    ex.write(w.delta(PARTIAL))


def _stall_mid_answer(w: Wire, ex: Exchange) -> None:
    _partial(w, ex)
    ex.sleep_or_gone(STALL)


def _drop_mid_event(w: Wire, ex: Exchange) -> None:
    _partial(w, ex)
    frame = w.delta(PARTIAL + "more" if w.cumulative else "more")
    ex.write(frame[: len(frame) // 2])
    ex.drop()


def _eof_mid_answer(w: Wire, ex: Exchange) -> None:
    _partial(w, ex)  # the body ends cleanly without the terminal frames


def _malformed_json(w: Wire, ex: Exchange) -> None:
    _partial(w, ex)
    ex.write(w.malformed)
    ex.write(w.ending(PARTIAL))


def _truncated_utf8(w: Wire, ex: Exchange) -> None:
    _partial(w, ex)
    frame = w.delta(PARTIAL + "é" if w.cumulative else "é")
    cut = frame.index("é".encode()) + 1  # the body ends inside the two bytes of é
    ex.write(frame[:cut])


def _invalid_utf8_in_event(w: Wire, ex: Exchange) -> None:
    ex.start(200)
    ex.write(w.preamble())
    bad = w.delta("AB" if not w.cumulative else "AB").replace(b"AB", b"A\xe6\x9dB")
    ex.write(bad)
    ex.write(w.ending("A\ufffdB"))


def _huge_event(w: Wire, ex: Exchange) -> None:
    ex.start(200)
    ex.write(w.preamble())
    frame = w.delta("x" * HUGE)
    for i in range(0, len(frame), 256 * 1024):
        ex.write(frame[i : i + 256 * 1024])
    ex.write(w.ending("x" * HUGE) if not w.cumulative else w.ending("x" * HUGE))


def _endless(w: Wire, ex: Exchange) -> None:
    ex.start(200)
    ex.write(w.preamble())
    piece = "0123456789abcdef" * 256  # 4 KiB of text per frame
    so_far = ""
    while True:  # until chatcli hangs up (ClientGone ends the handler)
        if w.cumulative:  # snapshots grow without end: cap the test at what memory allows
            so_far += piece
            ex.write(w.delta(so_far))
        else:
            ex.write(w.delta(piece))


def _error(status: int, headers: dict[str, str] | None = None) -> Callable[[Wire, Exchange], None]:
    def handler(w: Wire, ex: Exchange) -> None:
        body, ctype = w.error_body(status, f"fault {status}")
        ex.send(status, body, headers, ctype)

    return handler


def _html_error(w: Wire, ex: Exchange) -> None:
    ex.send(502, HTML_PAGE, None, "text/html; charset=utf-8")


def _redirect(w: Wire, ex: Exchange) -> None:
    ex.send(302, b"", {"Location": "https://elsewhere.invalid/v1/?access_token=tok-SECRET-redirect"}, "text/plain")


def _wrong_content_type(w: Wire, ex: Exchange) -> None:
    ex.send(200, b"<html><body>Welcome to nginx!</body></html>", None, "text/html")


FAULTS: dict[str, Callable[[Wire, Exchange], None]] = {
    "ok": _good,
    "stall_before_headers": _stall_before_headers,
    "stall_after_headers": _stall_after_headers,
    "stall_mid_answer": _stall_mid_answer,
    "drop_mid_event": _drop_mid_event,
    "eof_mid_answer": _eof_mid_answer,
    "malformed_json": _malformed_json,
    "truncated_utf8": _truncated_utf8,
    "invalid_utf8_in_event": _invalid_utf8_in_event,
    "huge_event_10MB": _huge_event,
    "endless": _endless,
    "html_error_502": _html_error,
    "http_401": _error(401),
    "http_429_retry_after": _error(429, {"Retry-After": "1"}),
    "http_429_no_retry_after": _error(429),
    "http_500": _error(500),
    "http_502": _error(502),
    "http_503": _error(503),
    "redirect_302": _redirect,
    "wrong_content_type": _wrong_content_type,
}


def ws_fault_hook(wire: Wire, ex: Exchange) -> bool:
    """Hook for WebSocket faults (ChatGPT `wss_url` mode, chatgpt.md §7).

    To add them: answer the send call with `{"wss_url": ws://127.0.0.1:<port>/...}` (HTTP 200,
    application/json) and run a `websockets` server on that port that sends one or two
    answer frames and then closes abnormally (`transport.abort()`: close code 1006) or
    with code 1011. Return True when the exchange was handled. Not wired in yet: the
    chatgpt provider is not on this branch, and its WebSocket framing is its own.
    """
    return False


class FaultServer:
    """A LoopbackServer answering `wire.path` with the current fault(s)."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.srv = LoopbackServer()
        self.fault: str | list[str] = "ok"
        self._served = 0
        self._lock = threading.Lock()
        self.srv.route(wire.method, wire.path, self._handle)
        if wire.extra_routes is not None:
            wire.extra_routes(self.srv)

    def _handle(self, ex: Exchange) -> None:
        with self._lock:
            n = self._served
            self._served += 1
        faults = self.fault if isinstance(self.fault, list) else [self.fault]
        name = faults[min(n, len(faults) - 1)]
        if ws_fault_hook(self.wire, ex):
            return
        FAULTS[name](self.wire, ex)

    @property
    def answer_requests(self) -> list[Exchange]:
        return [r for r in self.srv.requests if r.path == self.wire.path and r.method == self.wire.method]

    @property
    def base_url(self) -> str:
        return self.srv.url + self.wire.base

    def args(self) -> list[str]:
        return [*self.wire.args, "--base-url", self.base_url]

    def env(self) -> dict[str, str]:
        return self.wire.env(self.base_url)

    def __enter__(self) -> FaultServer:
        self.srv.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.srv.stop()
