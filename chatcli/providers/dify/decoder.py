"""Dify chat streams -> chatcli events. Pure: SSE `data` strings (or parsed objects) in,
events out; no sockets, no clocks.

Dispatch is on the JSON `event` field, never the SSE event name (data events carry no
`event:` line; spec §2.3). Answer text comes from `message`, `agent_message` and text-shaped
`message_file` events (§3.1); `agent_thought` upserts become `tool` (and `reasoning` for
thought text that was not streamed as answer text); Chatflow node/workflow, TTS and
unknown events are not answer text (visible with --raw). The terminal rules are those of
§3.4: `message_end` (chat, agent, Chatflow) or a successful `workflow_finished` (Chatflow
>=1.13 may stop relaying before `message_end`); `error`, or a failed/stopped
`workflow_finished`, raise; a stream that ends without any of them is a network error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import orjson

from chatcli import events as ev
from chatcli.errors import ChatCliError, ProviderError, TransportError
from chatcli.providers.dify.errors import clean_message, in_band_error
from chatcli.providers.dify.think import ThinkFolder
from chatcli.sse import json_object

# Events that are never answer text; listed so that the catalogue is explicit (§3.2, §3.1).
IGNORED = frozenset({
    "ping", "tts_message", "tts_message_end", "node_started", "node_retry",
    "iteration_started", "iteration_next", "iteration_completed",
    "loop_started", "loop_next", "loop_completed",
    "parallel_branch_started", "parallel_branch_finished",
    "agent_log", "text_chunk", "text_replace",
    "human_input_required", "human_input_form_filled", "human_input_form_timeout",
})


def _num(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _money(value: Any) -> float | None:
    """Prices are Decimal strings in streams and numbers in some 1.x bodies (§1)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def usage_event(usage: dict[str, Any]) -> ev.Usage:
    """LLMUsage (§3.1 message_end) -> Usage; cost is total_price in `currency`."""
    inp, out = _num(usage.get("prompt_tokens")), _num(usage.get("completion_tokens"))
    total = _num(usage.get("total_tokens"))
    if total is None and inp is not None and out is not None:
        total = inp + out
    currency = usage.get("currency")
    return ev.Usage(input_tokens=inp, output_tokens=out, total_tokens=total,
                    cost=_money(usage.get("total_price")),
                    currency=str(currency) if currency else None)


def json_or_text(value: Any) -> Any:
    """tool_input / observation are JSON strings keyed by tool name (§3.1)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def for_tool(value: Any, name: str, count: int) -> Any:
    if isinstance(value, dict) and name in value:
        return value[name]
    if value in ("", None):
        return None
    return value if count == 1 else None


class DifyDecoder:
    """One answer's stream. `feed(data)` returns the events it produced, in order."""

    def __init__(self, *, user: str, server: str | None = None, fold_think: bool = True) -> None:
        self.user = user
        # Base for server-relative file URLs (`/files/tools/...`; §3.1 message_file).
        self.server = server
        self.started = False
        self.conversation_id: str | None = None
        self.message_id: str | None = None
        self.task_id: str | None = None
        self.ended = False  # message_end seen
        self.workflow = False  # Chatflow events seen
        self.workflow_status: str | None = None
        self.finish_reason = "stop"
        self.usage_seen = False
        self._workflow_usage: ev.Usage | None = None
        self._parts: list[str] = []  # the answer text as streamed (before <think> folding)
        self._thoughts: dict[str, dict[str, Any]] = {}
        self._files: set[str] = set()
        self._think = ThinkFolder() if fold_think else None
        self.count = 0
        self.error: ChatCliError | None = None

    # ----- state -------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """A terminal success event was seen (later EOF or a broken tail is harmless)."""
        return (self.ended or self.finish_reason == "paused"
                or self.workflow_status in ("succeeded", "partial-succeeded"))

    @property
    def streamed_text(self) -> str:
        return "".join(self._parts)

    # ----- input -------------------------------------------------------------------

    def feed(self, data: str) -> list[ev.Event]:
        """One SSE `data` payload (pings and empty data produce nothing)."""
        if not data or data.isspace():
            return []
        return self.feed_obj(json_object(data, "dify"))

    def feed_obj(self, obj: dict[str, Any]) -> list[ev.Event]:
        """The events of one parsed event. A failure (an `error` event, a failed run) is
        kept in `self.error` and the events before it are still returned, so the caller
        learns the conversation id first and then raises `self.error` (see `check`)."""
        self.count += 1
        out: list[ev.Event] = []
        try:
            self._dispatch(obj, out)
        except ChatCliError as exc:
            self.error = exc
        return out

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _dispatch(self, obj: dict[str, Any], out: list[ev.Event]) -> None:
        self._envelope(obj, out)
        kind = obj.get("event")
        if kind in ("message", "agent_message"):
            answer = obj.get("answer")
            if answer and isinstance(answer, str):
                self._text(answer, out)
        elif kind == "message_file":
            self._message_file(obj, out)
        elif kind == "agent_thought":
            self._thought(obj, out)
        elif kind == "message_replace":
            answer = obj.get("answer")
            text = answer if isinstance(answer, str) else ""
            self._parts = [text]
            if self._think is not None:
                self._think.settle()
            out.append(ev.Replace(text))
        elif kind == "message_end":
            self._message_end(obj, out)
        elif kind == "error":
            raise in_band_error(obj)
        elif kind == "workflow_started":
            self.workflow = True
        elif kind == "node_finished":
            self._node_finished(obj, out)
        elif kind == "workflow_finished":
            self._workflow_finished(obj)
        elif kind == "workflow_paused":
            # Human-in-the-loop: the chat stream ends here; resuming is out of scope (§3.2).
            self.workflow = True
            self.finish_reason = "paused"
        elif kind == "reasoning_chunk":
            data = obj.get("data") or {}
            text = data.get("reasoning") if isinstance(data, dict) else None
            if text and isinstance(text, str):
                out.append(ev.Reasoning(text))
        # Everything else (IGNORED and unknown future events) carries no answer text (§8.8).

    def feed_blocking(self, obj: dict[str, Any]) -> list[ev.Event]:
        """A blocking-mode body (a 200 JSON answer instead of a stream; §2.2)."""
        if obj.get("event") == "workflow_paused":
            return self.feed_obj(obj)
        out = self.feed_obj({**obj, "event": "message"})
        out += self.feed_obj({k: obj[k] for k in ("conversation_id", "message_id", "task_id", "id", "metadata")
                              if k in obj} | {"event": "message_end"})
        return out

    # ----- handlers ----------------------------------------------------------------

    def _envelope(self, obj: dict[str, Any], out: list[ev.Event]) -> None:
        # conversation_id/message_id/task_id are in the very first event (§2.4); `error`
        # has no task_id and HEAD's synthetic workflow events have no envelope at all.
        cid = obj.get("conversation_id")
        if not isinstance(cid, str) or not cid:
            cid = None
        if not self.started:
            self.started = True
            out.append(ev.Start(provider="dify", conversation_id=cid))
        meta: dict[str, Any] = {}
        if cid is not None and cid != self.conversation_id:
            self.conversation_id = cid
            meta["conversation_id"] = cid
            meta["cursor"] = {"user": self.user}
        if self.message_id is None:
            mid = obj.get("message_id")
            if not mid and obj.get("event") in ("message", "agent_message", "message_end"):
                mid = obj.get("id")
            if mid and isinstance(mid, str):
                self.message_id = meta["message_id"] = mid
        if self.task_id is None:
            tid = obj.get("task_id")
            if tid and isinstance(tid, str):
                self.task_id = tid
                meta["stop"] = {"task_id": tid, "user": self.user}
        if meta:
            out.append(ev.Meta(data=meta))

    def _text(self, text: str, out: list[ev.Event]) -> None:
        self._parts.append(text)
        think = self._think
        if think is None or think.done:
            out.append(ev.Delta(text))
            return
        for is_reasoning, piece in think.feed(text):
            out.append(ev.Reasoning(piece) if is_reasoning else ev.Delta(piece))

    def _flush_think(self, out: list[ev.Event]) -> None:
        if self._think is not None:
            for is_reasoning, piece in self._think.flush():
                out.append(ev.Reasoning(piece) if is_reasoning else ev.Delta(piece))

    def _message_file(self, obj: dict[str, Any], out: list[ev.Event]) -> None:
        # Dify 1.11.2+ labels text chunks `message_file` once a file exists (issue #36990):
        # one with `answer` and no `url` is a text delta (§3.1).
        if "answer" in obj and not obj.get("url"):
            answer = obj.get("answer")
            if answer and isinstance(answer, str):
                self._text(answer, out)
            return
        self._file(obj.get("id"), obj.get("type"), obj.get("url"), obj.get("belongs_to"), out)

    def _file(self, fid: Any, kind: Any, url: Any, belongs_to: Any, out: list[ev.Event], **extra: Any) -> None:
        key = str(fid or url)
        if key in self._files:
            return
        self._files.add(key)
        if isinstance(url, str) and url.startswith("/") and self.server:
            url = urljoin(self.server + "/", url.lstrip("/"))
        output = {"id": fid, "type": kind, "url": url, "belongs_to": belongs_to}
        output.update({k: v for k, v in extra.items() if v is not None})
        out.append(ev.Tool(name="message_file", input=None, output=output))

    def _thought(self, obj: dict[str, Any], out: list[ev.Event]) -> None:
        # The same thought id is re-sent as the step fills in: upsert by id (§3.1).
        key = str(obj.get("id") or f"position-{obj.get('position')}")
        state = self._thoughts.setdefault(key, {"thought": "", "done": set(), "pending": None})
        thought = obj.get("thought") or ""
        if isinstance(thought, str) and thought and thought != state["thought"]:
            old = state["thought"]
            new = thought[len(old):] if thought.startswith(old) else thought
            state["thought"] = thought
            # Agent runners also stream the thought text as agent_message deltas, and the
            # final step's thought is the answer: only text never shown counts as reasoning.
            if new.strip() and thought.strip() not in self.streamed_text:
                out.append(ev.Reasoning(new))
        tool = obj.get("tool") or ""
        if not isinstance(tool, str) or not tool:
            return
        names = [n for n in tool.split(";") if n]
        inputs = json_or_text(obj.get("tool_input") or "")
        observation = obj.get("observation") or ""
        if not observation:
            state["pending"] = (names, inputs)
            return
        outputs = json_or_text(observation)
        state["pending"] = None
        for name in names:
            if name not in state["done"]:
                state["done"].add(name)
                out.append(ev.Tool(name=name, input=for_tool(inputs, name, len(names)),
                                   output=for_tool(outputs, name, len(names))))

    def _flush_tools(self, out: list[ev.Event]) -> None:
        """Tools that were called but never reported an observation."""
        for state in self._thoughts.values():
            pending = state["pending"]
            if not pending:
                continue
            names, inputs = pending
            state["pending"] = None
            for name in names:
                if name not in state["done"]:
                    state["done"].add(name)
                    out.append(ev.Tool(name=name, input=for_tool(inputs, name, len(names)), output=None))

    def _message_end(self, obj: dict[str, Any], out: list[ev.Event]) -> None:
        if self.ended:
            return
        self.ended = True
        self._flush_think(out)
        self._flush_tools(out)
        files = obj.get("files")
        for f in files if isinstance(files, list) else ():
            if isinstance(f, dict):
                self._file(f.get("related_id") or f.get("id"), f.get("type"), f.get("url") or f.get("remote_url"),
                           "assistant", out, filename=f.get("filename"), mime_type=f.get("mime_type"))
        metadata = obj.get("metadata")
        usage = metadata.get("usage") if isinstance(metadata, dict) else None
        if isinstance(usage, dict):
            self.usage_seen = True
            out.append(usage_event(usage))

    def _node_finished(self, obj: dict[str, Any], out: list[ev.Event]) -> None:
        data = obj.get("data")
        if not isinstance(data, dict) or data.get("node_type") != "llm":
            return
        process = data.get("process_data")
        if isinstance(process, dict) and process.get("model_name"):
            out.append(ev.Meta(data={"model": str(process["model_name"])}))

    def _workflow_finished(self, obj: dict[str, Any]) -> None:
        self.workflow = True
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        status = data.get("status")
        self.workflow_status = status if isinstance(status, str) else None
        if status == "failed":
            detail = clean_message(data.get("error")) or "no reason given"
            raise ProviderError(f"dify: the Chatflow run failed: {detail}")
        if status == "stopped":
            # chatcli's own stop never reads this far (the owner stops reading first), so
            # this is the server's doing, e.g. APP_MAX_EXECUTION_TIME (§3.4).
            raise ProviderError("dify: the Chatflow run was stopped by the server before the answer was complete")
        tokens = _num(data.get("total_tokens"))
        if tokens:
            self._workflow_usage = ev.Usage(total_tokens=tokens)

    # ----- the end -----------------------------------------------------------------

    def finish(self) -> list[ev.Event]:
        """EOF: the last events before Done, or raise when the stream was cut off."""
        out: list[ev.Event] = []
        self.check()
        if not self.complete:
            raise TransportError("dify: the stream ended before the answer was complete (no message_end)")
        self._flush_think(out)
        self._flush_tools(out)
        if not self.usage_seen and self._workflow_usage is not None:
            out.append(self._workflow_usage)
        return out

    def done(self) -> ev.Done:
        return ev.Done(message_id=self.message_id, finish_reason=self.finish_reason)
