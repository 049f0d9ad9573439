"""Provider `openai`: any OpenAI-compatible `/chat/completions` server, streamed.

The conversation lives locally and is resent on every turn (`--parent` branches
locally); closing the connection is how a generation is cancelled (no endpoint exists).
`OpenAIDecoder` is pure (SSE data in, events out); `OpenAICompatible` owns the socket.
Spec: shared/protocols/openai_compat.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import orjson

from chatcli import events as ev
from chatcli.errors import NotFound, ProtocolError, ProviderError, RateLimited, TransportError
from chatcli.providers import _http
from chatcli.providers.base import Provider, Turn, WireHook
from chatcli.sse import iter_sse, json_object

OPENAI_DEFAULT_MODEL = "gpt-4o-mini"


def _in_stream_error(err: Any) -> ProviderError:
    """An `{"error": ...}` object inside the stream (vLLM, llama.cpp, LiteLLM, OpenRouter)."""
    if isinstance(err, dict):
        message = err.get("message") or err.get("msg") or orjson.dumps(err).decode()
        code = err.get("code")
        kind = err.get("type")
    else:
        message, code, kind = str(err), None, None
    text = f"openai: the server reported an error: {message}"
    extra = [str(x) for x in (kind, code) if x not in (None, "", "None") and str(x) not in message]
    if extra:
        text += f" ({', '.join(extra)})"
    if str(code) == "429" or kind in ("rate_limit_error", "throttling_error"):
        # Retryable: run.py retries it only before the first answer byte; a script may retry later.
        return RateLimited(text, status=None, retryable=True)
    return ProviderError(text, status=None)


class OpenAIDecoder:
    """Chat-completion chunks -> chatcli events (pure; feed it SSE data strings)."""

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.done = False
        self.chunks = 0
        self.usage: dict[str, Any] | None = None
        self.message_id: str | None = None
        self.model: str | None = None
        # index -> {"id", "name", "arguments"} of tool calls being streamed
        self.tool_calls: dict[int, dict[str, Any]] = {}

    def feed(self, data: str) -> Iterator[ev.Event]:
        try:
            yield from self._feed(data)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            # Valid JSON of an unexpected shape (found by tests/reliability/test_fuzz.py).
            raise ProtocolError(f"openai: unexpected stream data ({type(exc).__name__}): {data[:120]!r}") from None

    def _feed(self, data: str) -> Iterator[ev.Event]:
        # (strip() only when it can matter: it copied every chunk)
        if data[:6] == "[DONE]" or (data[:1].isspace() and data.strip() == "[DONE]"):
            self.done = True
            return
        chunk = json_object(data, "openai")
        self.chunks += 1
        if chunk.get("error"):
            raise _in_stream_error(chunk["error"])
        if self.message_id is None and isinstance(chunk.get("id"), str):
            self.message_id = chunk["id"]
        if self.model is None and chunk.get("model"):
            self.model = str(chunk["model"])
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) not in (0, None):
                continue  # n>1: chatcli shows the first choice
            delta = choice.get("delta") or {}
            if isinstance(delta, dict):
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str) and reasoning:
                    yield ev.Reasoning(reasoning)
                content = delta.get("content")
                if isinstance(content, str) and content:
                    yield ev.Delta(content)
                if delta.get("tool_calls"):
                    self._tool_deltas(delta["tool_calls"])
                if isinstance(delta.get("function_call"), dict):
                    self._tool_deltas([{"index": 0, "function": delta["function_call"]}])
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = str(reason)
                yield from self._flush_tools()

    def _tool_deltas(self, calls: Any) -> None:
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            slot = self.tool_calls.setdefault(int(call.get("index") or 0), {"id": None, "name": None, "arguments": ""})
            if call.get("id"):
                slot["id"] = call["id"]
            fn = call.get("function") or {}
            if fn.get("name"):
                slot["name"] = fn["name"]
            args = fn.get("arguments")
            if isinstance(args, str):
                slot["arguments"] += args
            elif args is not None:
                slot["arguments"] += orjson.dumps(args).decode()

    def _flush_tools(self) -> Iterator[ev.Event]:
        for _, call in sorted(self.tool_calls.items()):
            args: Any = call["arguments"]
            try:
                args = orjson.loads(args) if args else {}
            except orjson.JSONDecodeError:
                pass
            yield ev.Tool(name=call["name"], input=args, output=None)
        self.tool_calls.clear()

    def finish(self) -> Iterator[ev.Event]:
        """End of the stream: usage, then Done (or raise when it was cut off)."""
        yield from self._flush_tools()
        if self.usage:
            yield usage_event(self.usage)
        if not self.done and self.finish_reason is None:
            if not self.chunks:
                # llama-cpp-python does this when the prompt does not fit its context: 200, no data.
                raise TransportError("openai: the server ended the stream without sending anything "
                                     "(its log may say why, e.g. a prompt longer than its context)",
                                     retryable=False)
            raise TransportError("openai: the stream ended before the answer was complete", retryable=False)
        # The server's completion id (chatcmpl-...) is not unique across turns on every
        # server, so the answer gets a local message id (Done.message_id None).
        yield ev.Done(finish_reason=map_finish(self.finish_reason))


def _line_error(line: str) -> Any:
    """The error a non-SSE line carries, or None.

    Old llama.cpp servers write `error: {...}` lines that SSE parsers drop (spec §6.2, rule 3);
    some proxies answer `text/event-stream` with a bare JSON error body (no `data:`).
    """
    if line.startswith("error:"):
        payload = line[6:].strip()
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            return payload or "unknown error"
    if line.startswith("{"):
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if isinstance(data, dict) and data.get("error"):
            return data["error"]
    return None


def iter_events(texts: Iterable[str], decoder: OpenAIDecoder, wire: WireHook | None = None) -> Iterator[ev.Event]:
    """SSE text chunks (split anywhere) -> events, until `[DONE]` or the end of the text.

    Pure: the provider feeds it `response.iter_text()`, tests feed it any split.
    The caller ends with `decoder.finish()`.
    """

    def on_line(line: str) -> None:
        err = _line_error(line)
        if err is not None:
            if wire is not None:
                wire("error", err)
            raise _in_stream_error(err)

    for sse in iter_sse(texts, on_line=on_line):
        if wire is not None:
            wire(sse.event if sse.event != "message" else None, _parsed(sse.data))
        yield from decoder.feed(sse.data)
        if decoder.done:
            break


def map_finish(reason: str | None) -> str:
    if reason in (None, "stop", "eos", "end_turn"):
        return "stop"
    if reason in ("tool_calls", "function_call"):
        return "tool_call"
    return reason


def usage_event(usage: dict[str, Any]) -> ev.Usage:
    def num(key: str) -> int | None:
        value = usage.get(key)
        return value if isinstance(value, int) else None

    inp, out = num("prompt_tokens"), num("completion_tokens")
    total = num("total_tokens")
    if total is None and inp is not None and out is not None:
        total = inp + out
    return ev.Usage(input_tokens=inp, output_tokens=out, total_tokens=total)


def build_messages(turn: Turn, system: str | None) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for msg in turn.history:
        role = msg.get("role")
        if role not in ("user", "assistant", "system"):
            continue
        text = msg.get("text") or ""
        if role == "assistant" and not text:
            continue  # a failed answer with no text adds nothing
        messages.append({"role": role, "content": text})
    messages.append({"role": "user", "content": turn.prompt})
    return messages


class OpenAICompatible(Provider):
    name = "openai"
    supports_branching = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        headers = {"Accept": "text/event-stream"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self.client = _http.make_client(settings, headers=headers)
        self.host = _http.host_of(settings.base_url or "")

    def close(self) -> None:
        self.client.close()

    def _model(self) -> str | None:
        if self.settings.model:
            return self.settings.model
        if "api.openai.com" in self.host:
            return OPENAI_DEFAULT_MODEL
        # Self-hosted servers usually serve one model: ask which.
        try:
            with _http.mapped(f"openai server {self.host}"):
                response = self.client.get("models")
            if response.status_code == 200:
                data = response.json().get("data") or []
                if data and isinstance(data[0], dict) and data[0].get("id"):
                    return str(data[0]["id"])
        except (ValueError, AttributeError, ProviderError, TransportError):
            pass
        return None

    def stream(self, turn: Turn) -> Iterator[ev.Event]:
        model = self._model()
        # The system prompt belongs to the conversation: `continue` without --system keeps
        # the one given to `ask` (kept in the cursor; the server keeps no state).
        system = turn.system if turn.system is not None else turn.cursor.get("system")
        body: dict[str, Any] = {
            "messages": build_messages(turn, system),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if model:
            body["model"] = model
        for key in ("temperature", "max_tokens", "top_p"):
            if self.settings.extra.get(key) is not None:
                body[key] = self.settings.extra[key]
        what = f"openai server {self.host}"
        decoder = OpenAIDecoder()
        with _http.mapped(what):
            with self.client.stream("POST", "chat/completions", content=orjson.dumps(body),
                                    headers={"Content-Type": "application/json"}) as response:
                _http.raise_for_response(response, provider="openai", classify=self._classify)
                yield ev.Start(provider="openai", model=model)
                meta: dict[str, Any] = {"model": model} if model else {}
                if turn.system is not None:
                    meta["cursor"] = {"system": turn.system}
                if meta:
                    # The model asked for (not the chunks' dated/path name) is what `continue` resends.
                    yield ev.Meta(data=meta)
                ctype = response.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    yield from self._non_stream(response, ctype, decoder)
                    return
                yield from iter_events(response.iter_text(), decoder, turn.wire)
        yield ev.Meta(data={"model": decoder.model} if decoder.model else {})
        yield from decoder.finish()

    def _classify(self, status: int, code: Any, data: Any, message: str | None) -> Exception | None:
        """404: name the likely cause -- an unknown model, or a base URL missing its /v1."""
        if status != 404:
            return None
        shown = "openai: HTTP 404" + (f": {message}" if message else "")
        if code not in (None, "", 404, "404") and message and str(code) not in message:
            shown += f" ({code})"
        if "model" in (message or "").lower():
            return NotFound(shown, status=404, hint="check --model; the server lists its models at GET .../models")
        return NotFound(shown, status=404, hint=f"check --base-url ({self.settings.base_url}): "
                                                "OpenAI-compatible servers usually answer under .../v1")

    def _non_stream(self, response: httpx.Response, ctype: str, decoder: OpenAIDecoder) -> Iterator[ev.Event]:
        """A server that ignored `stream: true` and answered one JSON body."""
        body = response.read()
        if "json" not in ctype:
            message, _, _ = _http.parse_error_body(body, ctype)
            raise ProtocolError(f"openai: expected an event stream, got {ctype or 'no content type'}"
                                + (f": {message}" if message else ""))
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProtocolError("openai: the answer is not valid JSON") from None
        if isinstance(data, dict) and data.get("error"):
            raise _in_stream_error(data["error"])
        choice = ((data or {}).get("choices") or [{}])[0]
        message = choice.get("message") or {}
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if reasoning:
            yield ev.Reasoning(str(reasoning))
        if message.get("content"):
            yield ev.Delta(str(message["content"]))
        if isinstance(data.get("usage"), dict):
            yield usage_event(data["usage"])
        yield ev.Done(finish_reason=map_finish(choice.get("finish_reason") or "stop"))


def _parsed(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
