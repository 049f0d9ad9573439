"""The socket side of the Dify provider: requests, stop, history, suggestions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson

from chatcli import events as ev
from chatcli.errors import ChatCliError, ProtocolError, TransportError, UsageError
from chatcli.providers import _http
from chatcli.providers.base import Provider, Turn
from chatcli.providers.dify.decoder import DifyDecoder, for_tool, json_or_text
from chatcli.providers.dify.errors import classify
from chatcli.sse import iter_sse, iter_text

DEFAULT_BASE_URL = "https://api.dify.ai/v1"
DEFAULT_USER = "chatcli"
# Short timeouts for the courtesy calls around an answer.
STOP_TIMEOUT = 5.0
SUGGEST_TIMEOUT = 10.0
PAGE_LIMIT = 100  # the most GET /messages and /conversations give per page (§5.1, §5.2)
MAX_PAGES = 1000


def iso(ts: Any) -> str | None:
    """Dify's integer Unix seconds (§1) -> ISO 8601 UTC."""
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return None


def _parsed(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data


def _server_root(base: str) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else base


def _tools(thoughts: Any) -> list[dict[str, Any]]:
    """A history item's agent_thoughts (§5.1) as the tool list chatcli stores."""
    out: list[dict[str, Any]] = []
    rows = sorted((t for t in thoughts if isinstance(t, dict)), key=lambda t: t.get("position") or 0) \
        if isinstance(thoughts, list) else []
    for t in rows:
        names = [n for n in str(t.get("tool") or "").split(";") if n]
        inputs, outputs = json_or_text(t.get("tool_input") or ""), json_or_text(t.get("observation") or "")
        for name in names:
            out.append({"name": name, "input": for_tool(inputs, name, len(names)),
                        "output": for_tool(outputs, name, len(names))})
    return out


class Dify(Provider):
    name = "dify"
    # The service API ignores parent_message_id since 0.10.0 (§7.3): no --parent.
    supports_branching = False
    supports_remote_stop = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        # Default the end user on the settings themselves, so that the conversation stores
        # it and `continue` / `history --remote` keep the user that owns it (§7.1).
        if not settings.user:
            settings.user = DEFAULT_USER
        self.base = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.client = _http.make_client(settings, base_url=self.base, headers=headers)
        self.what = f"Dify at {_http.host_of(self.base)}"

    def close(self) -> None:
        self.client.close()

    # ----- settings ----------------------------------------------------------------

    def _user(self, turn: Turn | None = None) -> str:
        # A conversation belongs to the user that created it (§7.1): keep using that one.
        if turn is not None and turn.conversation_id and turn.cursor.get("user"):
            return str(turn.cursor["user"])
        return self.settings.user or DEFAULT_USER

    def _inputs(self) -> dict[str, Any]:
        """App input variables: profile table `inputs` or -o inputs='{"var": "value"}' (§2.1)."""
        value = self.settings.extra.get("inputs")
        if value in (None, ""):
            return {}
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise UsageError("inputs must be a JSON object, e.g. -o inputs='{\"name\": \"Ada\"}'") from None
        if not isinstance(value, dict):
            raise UsageError("inputs must be a JSON object")
        return value

    def check_turn(self, turn: Turn) -> None:
        """The app's prompt and model settings live in Dify: refuse options that would be
        silently ignored (before anything is sent or stored)."""
        super().check_turn(turn)
        if turn.system:
            raise UsageError("--system is not supported by the dify provider (the app's prompt is set in Dify)")
        if self.settings.model and self.settings.sources.get("model") == "option":
            raise UsageError("--model is not supported by the dify provider (the app's model is set in Dify)")
        for key, flag in (("temperature", "--temperature"), ("max_tokens", "--max-tokens")):
            if self.settings.extra.get(key) is not None:
                raise UsageError(f"{flag} is not supported by the dify provider (set it on the app's model in Dify)")
        self._inputs()  # a malformed -o inputs=... is a usage error now, not after the request

    def _flag(self, key: str, default: bool) -> bool:
        value = self.settings.extra.get(key, default)
        if isinstance(value, str):
            return value.strip().lower() not in ("0", "false", "no", "off", "inline")
        return bool(value)

    # ----- the answer --------------------------------------------------------------

    def stream(self, turn: Turn) -> Iterator[ev.Event]:
        user = self._user(turn)
        body = {
            "inputs": self._inputs(),
            "query": turn.prompt,
            "response_mode": "streaming",
            "conversation_id": turn.conversation_id or "",
            "user": user,
            "files": [],
        }
        decoder = DifyDecoder(user=user, server=_server_root(self.base), fold_think=self._flag("fold_think", True))
        wire = turn.wire
        try:
            with _http.mapped(self.what):
                with self.client.stream("POST", "chat-messages", content=orjson.dumps(body),
                                        headers={"Content-Type": "application/json",
                                                 "Accept": "text/event-stream"}) as response:
                    _http.raise_for_response(response, provider="dify", classify=classify)
                    ctype = response.headers.get("content-type", "")
                    if "text/event-stream" not in ctype.lower():
                        yield from self._not_a_stream(response, ctype, decoder, turn)
                    else:
                        for sse in iter_sse(iter_text(response.iter_bytes())):
                            if wire is not None:
                                wire(sse.event if sse.event != "message" else None, _parsed(sse.data))
                            if sse.event == "ping" and not sse.data:
                                continue  # keep-alive (§2.3)
                            yield from decoder.feed(sse.data)
                            decoder.check()
        except TransportError:
            # After message_end the rest (TTS, workflow_finished, title wait) is optional.
            if not decoder.complete:
                raise
        yield from decoder.finish()
        if decoder.ended and decoder.finish_reason == "stop":
            yield from self._suggestions(decoder.message_id, user, turn)
        yield decoder.done()

    def _not_a_stream(self, response: httpx.Response, ctype: str, decoder: DifyDecoder,
                      turn: Turn) -> Iterator[ev.Event]:
        """200 without SSE: a blocking answer or an error body (§2.2), or a proxy's page."""
        body = response.read()
        data: Any = None
        if "json" in ctype.lower() or body.lstrip()[:1] == b"{":
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
        if not isinstance(data, dict):
            message, _, _ = _http.parse_error_body(body, ctype)
            raise ProtocolError(f"dify: expected an event stream, got {ctype or 'no content type'}"
                                + (f": {message}" if message else ""))
        turn.emit_wire(None, data)
        if data.get("event") == "error" or ("answer" not in data and data.get("code")):
            status = data.get("status") if isinstance(data.get("status"), int) else 400
            err = classify(status, data.get("code"), data, data.get("message"))
            raise err or _http.error_for_status(status, {}, body, provider="dify")
        if "answer" not in data and data.get("event") != "workflow_paused":
            raise ProtocolError("dify: the server answered JSON that is neither a stream nor an answer")
        yield from decoder.feed_blocking(data)

    def _suggestions(self, message_id: str | None, user: str, turn: Turn) -> Iterator[ev.Event]:
        """Suggested questions (§5.5), when the app has them; never fails the answer.

        One GET per answer; a "disabled" reply is remembered for the conversation, so an
        app without the feature costs one request per conversation, not per turn.
        """
        if not message_id or turn.cursor.get("suggested") is False or not self._flag("suggestions", True):
            return
        try:
            with _http.mapped(self.what):
                response = self.client.get(f"messages/{quote(message_id, safe='')}/suggested",
                                           params={"user": user}, timeout=min(SUGGEST_TIMEOUT, self.settings.timeout))
        except ChatCliError:
            return
        if response.status_code == 400:
            _, code, _ = _http.parse_error_body(response.content)
            if code in ("bad_request", "not_found", None):  # "Suggested Questions Is Disabled."
                yield ev.Meta(data={"cursor": {"suggested": False}})
            return
        if response.status_code != 200:
            return
        try:
            items = orjson.loads(response.content).get("data")
        except (orjson.JSONDecodeError, AttributeError):
            return
        for item in items if isinstance(items, list) else ():
            if isinstance(item, str) and item.strip():
                yield ev.Suggestion(item)

    # ----- stop ----------------------------------------------------------------------

    def stop(self, handle: dict[str, Any]) -> str | None:
        """POST /chat-messages/{task_id}/stop {"user"} (§4): always 200 for chat apps."""
        task_id = handle.get("task_id")
        if not task_id:
            return None
        user = handle.get("user") or self.settings.user or DEFAULT_USER
        with _http.mapped(self.what):
            response = self.client.post(f"chat-messages/{quote(str(task_id), safe='')}/stop",
                                        content=orjson.dumps({"user": user}),
                                        headers={"Content-Type": "application/json"},
                                        timeout=min(STOP_TIMEOUT, self.settings.timeout))
        if response.status_code >= 300:
            raise _http.error_for_status(response.status_code, response.headers, response.content,
                                         provider="dify", classify=classify)
        return None

    # ----- history -------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        with _http.mapped(self.what):
            response = self.client.get(path, params=params)
        if response.status_code >= 300:
            raise _http.error_for_status(response.status_code, response.headers, response.content,
                                         provider="dify", classify=classify)
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"dify: GET {path} did not answer JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("data", []), list):
            raise ProtocolError(f"dify: GET {path} answered an unexpected shape")
        return data

    def remote_messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """GET /messages, newest page first, each page oldest first (§5.1): thread order.

        Each Dify message is a query and an answer: it becomes a user message
        (`<id>:query`) and an assistant message (`<id>`).
        """
        user = self.settings.user or DEFAULT_USER
        rows: list[dict[str, Any]] = []
        first_id: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"conversation_id": conversation_id, "user": user, "limit": PAGE_LIMIT}
            if first_id:
                params["first_id"] = first_id
            page = self._get("messages", params)
            items = [m for m in page.get("data") or () if isinstance(m, dict) and m.get("id") not in seen]
            seen.update(str(m.get("id")) for m in items)
            rows[:0] = items
            if not page.get("has_more") or not items:
                break
            first_id = str(items[0]["id"])
        out: list[dict[str, Any]] = []
        parent: str | None = None
        for m in rows:
            mid = str(m["id"])
            when = iso(m.get("created_at"))
            status = {"normal": "complete", "error": "failed", "paused": "stopped"}.get(m.get("status"), "complete")
            query_id = f"{mid}:query"
            out.append({"message_id": query_id, "parent_id": parent, "role": "user", "text": m.get("query") or "",
                        "created_at": when, "status": "complete"})
            answer = {"message_id": mid, "parent_id": query_id, "role": "assistant", "text": m.get("answer") or "",
                      "created_at": when, "status": status}
            if m.get("error"):
                answer["error"] = str(m["error"])
            tools = _tools(m.get("agent_thoughts"))
            if tools:
                answer["tools"] = tools
            if m.get("message_files"):
                answer["files"] = m["message_files"]
            out.append(answer)
            parent = mid
        return out

    def remote_conversations(self) -> list[dict[str, Any]]:
        """GET /conversations, paged with last_id (§5.2), most recently updated first."""
        user = self.settings.user or DEFAULT_USER
        out: list[dict[str, Any]] = []
        last_id: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"user": user, "limit": PAGE_LIMIT}
            if last_id:
                params["last_id"] = last_id
            page = self._get("conversations", params)
            items = [c for c in page.get("data") or () if isinstance(c, dict) and c.get("id")]
            for c in items:
                out.append({"conversation_id": str(c["id"]), "title": c.get("name"),
                            "created_at": iso(c.get("created_at")), "updated_at": iso(c.get("updated_at"))})
            if not page.get("has_more") or not items or str(items[-1]["id"]) == last_id:
                break
            last_id = str(items[-1]["id"])
        return out
