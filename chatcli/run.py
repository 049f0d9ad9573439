"""The one orchestration loop: a provider's events -> the writer and the store.

`run_turn` resolves settings, records the user's message and an in-flight record, runs
the provider's stream (retrying only before the first answer byte), and always saves the
answer with its status: complete, stopped (Ctrl-C, SIGTERM, `chatcli stop`) or failed,
keeping the partial text. Exceptions become exit codes in chatcli.exits (`guard`).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from chatcli import events as ev
from chatcli import store as st
from chatcli.config import Options, Settings, resolve, state_dir
from chatcli.errors import AuthError, ChatCliError, Stopped, UsageError
from chatcli.exits import Interrupts, error_event, guard, silence_stdout
from chatcli.output import Writer, make_writer

__all__ = ["TurnRequest", "guard", "run_turn"]

# Seconds between checkpoints of a partial answer (a SIGKILL loses about this much; more
# when checkpoints are slow, see _checkpoint).
CHECKPOINT_SECONDS = 1.0
# Longest Retry-After honoured, and the total time retries may add.
RETRY_AFTER_CAP = 30.0
RETRY_DEADLINE = 120.0


@dataclass
class TurnRequest:
    prompt: str
    mode: str = "text"  # text | jsonl | raw
    options: Options = field(default_factory=Options)
    continue_: bool = False
    cid: str | None = None
    parent: str | None = None


def run_turn(req: TurnRequest, writer: Writer | None = None) -> int:
    """Run one turn; `writer` lets the command line pick a text writer (e.g. --render)."""
    writer = writer or make_writer(req.mode)
    writer.waiting()
    return guard(lambda: _Turn(req, writer).run(), writer)


class _Turn:
    def __init__(self, req: TurnRequest, writer: Writer) -> None:
        self.req = req
        self.writer = writer
        self.store = st.Store(state_dir())
        self._parts: list[str] = []  # the answer so far, in pieces: see `text`
        self.answer_started = False
        # The service has recorded this turn (it told us the conversation/message id or a
        # stop handle): asking again would put the question twice in the remote conversation.
        self.accepted = False
        self.start_written = False
        self.reasoning: list[str] = []
        self.tools: list[dict[str, Any]] = []
        self.suggestions: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.done: ev.Done | None = None
        self.answer_id: str | None = None
        self.last_checkpoint = 0.0
        self.checkpoint_id: str | None = None

    @property
    def text(self) -> str:
        """The answer so far. Kept as a list of pieces and joined only when read (checkpoints,
        the end): `+=` on an attribute copies the whole string every time, which made a 10 MB
        answer in 10,000 pieces take 11 s of CPU (tests/bench/run.py)."""
        if len(self._parts) != 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0]

    # ----- set-up ----------------------------------------------------------------

    def _conversation(self) -> dict[str, Any] | None:
        if not self.req.continue_:
            if self.req.cid or self.req.parent:
                raise UsageError("--cid and --parent go with `continue`")
            return None
        ref = self.req.cid or self.store.last(strict=True)
        if not ref:
            raise UsageError("there is no conversation to continue", hint="start one with `chatcli ask`")
        cid = self.store.resolve(ref)
        return self.store.load(cid)

    def run(self) -> int:
        from chatcli import providers  # lazily: pulls in the provider registry only

        conv = self._conversation()
        settings, note = resolve(self.req.options, stored=conv)
        if note:
            self.writer.note(note)
        provider = providers.load(settings.provider)(settings)
        try:
            return self._run(provider, settings, conv)
        finally:
            provider.close()

    def _run(self, provider: Any, settings: Settings, conv: dict[str, Any] | None) -> int:
        parent_id: str | None = None
        is_new = conv is None
        if conv is not None:
            if self.req.parent:
                parent_id = st.find_message(conv, self.req.parent)["message_id"]
            else:
                parent_id = conv.get("current")
        else:
            conv = st.new_conversation(str(uuid.uuid4()), _stored_settings(settings))
        self.conv = conv
        # Settings given on this command line become the conversation's for later turns.
        for key in ("model", "base_url", "bot_id", "profile", "user"):
            value = getattr(settings, key)
            if value and settings.sources.get(key) == "option":
                conv[key] = value

        turn_history = st.thread(conv, parent_id)
        user_id = str(uuid.uuid4())
        from chatcli.providers.base import Turn

        turn = Turn(
            prompt=self.req.prompt,
            conversation_id=conv.get("remote_id"),
            parent_id=parent_id,
            history=turn_history,
            cursor=dict(conv.get("cursor") or {}),
            user_message_id=user_id,
            system=settings.system,
            branch=bool(self.req.parent),
            wire=self.writer.wire if self.req.mode == "raw" else None,
        )
        provider.check_turn(turn)

        now = st.now_iso()
        self.user_msg = {
            "message_id": user_id,
            "parent_id": parent_id,
            "role": "user",
            "text": self.req.prompt,
            "created_at": now,
            "status": "complete",
        }
        conv["messages"].append(self.user_msg)
        conv["current"] = user_id
        conv["updated_at"] = now
        if conv.get("title") is None:
            conv["title"] = _title_from(self.req.prompt)
        with Interrupts() as self.interrupts:
            return self._record_and_stream(conv, settings, provider, turn, now, is_new)

    def _record_and_stream(self, conv: dict[str, Any], settings: Settings, provider: Any, turn: Any,
                           now: str, is_new: bool) -> int:
        # The prompt is user data: its conversation file is fsynced before anything is sent.
        # The index and last.json are derived or recoverable, so they are written atomically
        # now and fsynced at the first checkpoint (each fsync costs ~10 ms here, before the
        # first byte). A conversation already in the index gets its new summary with the
        # final save only: rewriting the whole index (2.5 MB with 10,000 conversations)
        # twice per turn made `continue` cost 1.3x as much as with 10 (tests/bench/run.py).
        self.store.save(conv, index=is_new, last=True, durable=True, derived_durable=False)
        self.synced = False
        self.record = {
            "pid": os.getpid(),
            "proc_start": st.proc_start_time(os.getpid()),
            "provider": settings.provider,
            "profile": settings.profile,
            "conversation_id": conv["conversation_id"],
            "started_at": now,
            "stop": None,
        }
        self.store.add_inflight(self.record)
        self.settings = settings
        self.provider = provider
        try:
            return self._stream(provider, turn, settings)
        finally:
            try:
                self.store.remove_inflight(os.getpid())
            except ChatCliError:
                pass

    # ----- streaming ---------------------------------------------------------------

    def _stream(self, provider: Any, turn: Any, settings: Settings) -> int:
        attempt = 0
        deadline = time.monotonic() + RETRY_DEADLINE
        interrupts = self.interrupts
        try:
            interrupts.arm()
            while True:
                try:
                    for event in provider.stream(turn):
                        self._handle(event)
                    break
                except ChatCliError as exc:
                    delay = self._retry_delay(exc, attempt, settings, deadline)
                    if delay is None:
                        raise
                    attempt += 1
                    self.writer.warn(
                        f"{exc.message}; retrying in {delay:.1f}s (attempt {attempt + 1} of {settings.retries + 1})"
                    )
                    time.sleep(delay)
            interrupts.armed = False
        except Stopped as stop:
            interrupts.armed = False
            return self._stopped(stop)
        except KeyboardInterrupt:
            interrupts.armed = False
            return self._stopped(Stopped("interrupted"))
        except ChatCliError as exc:
            interrupts.armed = False
            self._finish("failed", error=exc.message)
            self._ensure_start()
            self.writer.error(error_event(exc), exc.hint)
            return exc.exit_code
        except BrokenPipeError:
            interrupts.armed = False
            self._finish("stopped", error="the reader of stdout went away")
            silence_stdout()
            return 141
        except Exception as exc:
            interrupts.armed = False
            self._finish("failed", error=f"internal error: {type(exc).__name__}")
            raise
        if self.done is None:
            # A provider that ended without Done: its stream was cut off.
            from chatcli.errors import TransportError

            exc = TransportError(f"the {settings.provider} stream ended before the answer was complete")
            self._finish("failed", error=exc.message)
            self._ensure_start()
            self.writer.error(error_event(exc), exc.hint)
            return exc.exit_code
        reason = self.done.finish_reason or "stop"
        status = "stopped" if reason == "stopped" else "complete"
        self._finish(status, finish_reason=reason)
        self.writer.event(self._done_event(reason))
        return 130 if reason == "stopped" else 0

    def _retry_delay(self, exc: ChatCliError, attempt: int, settings: Settings, deadline: float) -> float | None:
        if not exc.retryable or self.answer_started or self.accepted or attempt >= settings.retries:
            return None
        if isinstance(exc, AuthError) or exc.status in (401, 403):
            return None  # rejected credentials never get better by asking again
        if exc.retry_after is not None:
            if exc.retry_after > RETRY_AFTER_CAP:
                return None
            delay = exc.retry_after
        else:
            delay = min(8.0, 0.5 * (2**attempt)) * (0.5 + random.random())
        if time.monotonic() + delay > deadline:
            return None
        return delay

    def _ensure_start(self) -> None:
        if not self.start_written:
            self._handle(ev.Start(provider=self.settings.provider, model=self.settings.model))

    def _handle(self, event: ev.Event) -> None:
        kind = event.type
        if kind == "delta":
            if not self.start_written:
                self._ensure_start()
            self._parts.append(event.text)  # type: ignore[union-attr]
            self.answer_started = True
            self.writer.event(event)
            if time.monotonic() - self.last_checkpoint > CHECKPOINT_SECONDS:
                self._checkpoint()
            return
        if kind == "meta":
            self._meta(event.data)  # type: ignore[union-attr]
            return
        if kind == "start":
            assert isinstance(event, ev.Start)
            if event.conversation_id and event.conversation_id != self.conv["conversation_id"]:
                self._meta({"conversation_id": event.conversation_id})
            if self.start_written:
                return
            event = replace(
                event,
                provider=event.provider or self.settings.provider,
                model=event.model or self.settings.model or self.conv.get("model"),
                conversation_id=self.conv["conversation_id"],
                parent_id=self.user_msg["parent_id"],
            )
            self.start_written = True
            self.writer.event(event)
            return
        if not self.start_written:
            self._ensure_start()
        if kind == "done":
            self.done = event  # type: ignore[assignment]
            if event.message_id:  # type: ignore[union-attr]
                self.answer_id = event.message_id  # type: ignore[union-attr]
            return
        if kind == "replace":
            self._parts = [event.text]  # type: ignore[union-attr]
            self.answer_started = True
        elif kind == "reasoning":
            self.reasoning.append(event.text)  # type: ignore[union-attr]
            self.answer_started = True
        elif kind == "tool":
            self.tools.append({k: v for k, v in ev.to_dict(event).items() if k != "type"})
            self.answer_started = True
        elif kind == "suggestion":
            self.suggestions.append(event.text)  # type: ignore[union-attr]
        elif kind == "usage":
            self.usage = {k: v for k, v in ev.to_dict(event).items() if k != "type"}
        self.writer.event(event)

    def _meta(self, data: dict[str, Any]) -> None:
        conv = self.conv
        if any(data.get(k) for k in ("conversation_id", "message_id", "user_message_id", "stop")):
            self.accepted = True
        new_id = data.get("conversation_id")
        if new_id and new_id != conv["conversation_id"]:
            conv["remote_id"] = new_id
            self.store.rename(conv, new_id)
            self.record["conversation_id"] = new_id
            self.store.add_inflight(self.record)
        elif new_id:
            conv["remote_id"] = new_id
        if data.get("title"):
            conv["title"] = data["title"]
        if data.get("message_id"):
            self.answer_id = data["message_id"]
        if data.get("user_message_id"):
            old = self.user_msg["message_id"]
            self.user_msg["message_id"] = data["user_message_id"]
            conv["current"] = data["user_message_id"] if conv.get("current") == old else conv.get("current")
        if isinstance(data.get("cursor"), dict):
            conv.setdefault("cursor", {}).update(data["cursor"])
        if data.get("stop") is not None:
            self.record["stop"] = data["stop"]
            self.store.add_inflight(self.record)
        if data.get("model"):
            conv["model"] = conv.get("model") or data["model"]

    # ----- endings -----------------------------------------------------------------

    def _assistant_message(self, status: str, **extra: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": self.answer_id or str(uuid.uuid4()),
            "parent_id": self.user_msg["message_id"],
            "role": "assistant",
            "text": self.text,
            "created_at": st.now_iso(),
            "status": status,
        }
        if self.reasoning:
            msg["reasoning"] = "".join(self.reasoning)
        if self.tools:
            msg["tools"] = self.tools
        if self.suggestions:
            msg["suggestions"] = self.suggestions
        if self.usage:
            msg["usage"] = self.usage
        msg.update({k: v for k, v in extra.items() if v is not None})
        return msg

    def _put_answer(self, msg: dict[str, Any]) -> None:
        conv = self.conv
        # Replace this turn's own last checkpoint, found by id: after the store merged in
        # other processes' messages, the last message may be someone else's.
        msgs = conv["messages"] = [m for m in conv["messages"] if m["message_id"] != self.checkpoint_id]
        self.checkpoint_id = msg["message_id"] if msg.get("_checkpoint") else None
        msgs.append(msg)
        conv["current"] = msg["message_id"]
        conv["updated_at"] = msg["created_at"]

    def _checkpoint(self) -> None:
        started = time.monotonic()
        msg = self._assistant_message("failed", error="interrupted before the answer was complete", _checkpoint=True)
        self._put_answer(msg)
        try:
            self.store.save(self.conv, index=False)
            if not self.synced:  # the index and last.json of the save before streaming
                self.store.sync()
                self.synced = True
        except ChatCliError as exc:
            self.writer.warn(exc.message)
        # Counted from the end of this checkpoint, plus 9x its duration: a checkpoint that
        # takes longer than CHECKPOINT_SECONDS (a 10 MB answer, a busy disk) must not start
        # the next one at once. Before, every delta then rewrote the whole answer (20 s of
        # checkpoints for a 10 MB answer in tests/bench/run.py); now at most ~10% of the time.
        ended = time.monotonic()
        self.last_checkpoint = ended + 9 * (ended - started)

    def _finish(self, status: str, *, error: str | None = None, finish_reason: str | None = None) -> None:
        msg = self._assistant_message(status, error=error, finish_reason=finish_reason)
        self.answer_id = msg["message_id"]
        self._put_answer(msg)
        self.store.save(self.conv)

    def _stopped(self, stop: Stopped) -> int:
        handle = self.record.get("stop")
        if handle is not None and getattr(self.provider, "supports_remote_stop", False):
            try:
                note = self.provider.stop(handle)
                if note:
                    self.writer.note(note)
            except ChatCliError as exc:
                self.writer.warn(f"the provider's stop call failed: {exc.message}")
            except Exception as exc:  # never lose the partial answer over a failed courtesy call
                self.writer.warn(f"the provider's stop call failed: {type(exc).__name__}")
        self._finish("stopped", finish_reason="stopped")
        self._ensure_start()
        self.writer.event(self._done_event("stopped"))
        return 130

    def _done_event(self, reason: str) -> ev.Done:
        return ev.Done(
            conversation_id=self.conv["conversation_id"],
            message_id=self.answer_id,
            parent_id=self.user_msg["message_id"],
            finish_reason=reason,
            text=self.text,
        )


def _stored_settings(settings: Settings) -> dict[str, Any]:
    return {
        "provider": settings.provider,
        "profile": settings.profile,
        "base_url": settings.base_url,
        "model": settings.model,
        "bot_id": settings.bot_id,
        "user": settings.user,
    }


def _title_from(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= 60 else line[:59] + "…"
