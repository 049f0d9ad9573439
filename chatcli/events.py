"""The normalised event stream every provider yields (CONTRACT.md, "Events").

Each event is a small frozen, slotted dataclass whose first field is its `type`, so orjson
serialises it with `type` as the first key. Providers yield these; `run.py` adds the
terminal `done`/`error` text and writes them out. `Meta` is internal: it carries ids and
titles into the store and is never printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    type: Literal["start"] = field(default="start", init=False)
    schema: int = SCHEMA
    provider: str
    model: str | None = None
    conversation_id: str | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    text: str
    type: Literal["delta"] = field(default="delta", init=False)

    # `type` must come first in JSON: see to_json(); positional construction keeps the
    # hot path (one Delta per token) cheap.


@dataclass(frozen=True, slots=True)
class Replace:
    text: str
    type: Literal["replace"] = field(default="replace", init=False)


@dataclass(frozen=True, slots=True)
class Reasoning:
    text: str
    type: Literal["reasoning"] = field(default="reasoning", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    type: Literal["tool"] = field(default="tool", init=False)
    name: str | None = None
    input: Any = None
    output: Any = None


@dataclass(frozen=True, slots=True)
class Suggestion:
    text: str
    type: Literal["suggestion"] = field(default="suggestion", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    type: Literal["usage"] = field(default="usage", init=False)
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | str | None = None
    currency: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    type: Literal["done"] = field(default="done", init=False)
    conversation_id: str | None = None
    message_id: str | None = None
    parent_id: str | None = None
    finish_reason: str = "stop"
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    type: Literal["error"] = field(default="error", init=False)
    code: str
    message: str
    status: int | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """Internal: ids, titles and stop handles learnt from the wire. Never printed.

    Known keys: conversation_id, user_message_id, message_id, title, stop (a dict the
    provider's `stop()` understands, e.g. Dify's task_id), cursor (provider state kept
    with the conversation for the next turn).
    """

    type: Literal["meta"] = field(default="meta", init=False)
    data: dict[str, Any]


Event = Start | Delta | Replace | Reasoning | Tool | Suggestion | Usage | Done | Error | Meta

# Field order for JSON output: `type` first, then the dataclass fields in order.
_ORDER: dict[type, tuple[str, ...]] = {}


def to_dict(event: Event) -> dict[str, Any]:
    """The contract's JSON object for an event, `type` first."""
    cls = type(event)
    names = _ORDER.get(cls)
    if names is None:
        fields = [f for f in cls.__dataclass_fields__ if f != "type"]
        names = _ORDER[cls] = ("type", *fields)
    return {n: getattr(event, n) for n in names}
