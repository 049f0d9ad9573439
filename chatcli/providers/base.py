"""The provider interface: what `run.py` asks of every provider.

A provider is constructed with resolved `Settings` and answers one `Turn` at a time with
`stream()`, a generator of `chatcli.events` that yields `Start` first (as soon as the ids
are known), then answer events, then exactly one `Done`; failures are raised as
`chatcli.errors` exceptions, never yielded. Every network resource it opens is closed
when the generator is closed, so stopping the consumer aborts the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from chatcli.errors import UsageError

if TYPE_CHECKING:
    from chatcli.config import Settings
    from chatcli.events import Event

WireHook = Callable[[str | None, Any], None]


@dataclass
class Turn:
    """One message to send and everything a provider needs to place it."""

    prompt: str
    # The provider's own conversation id; None for a new conversation.
    conversation_id: str | None = None
    # The message the new user message follows (None: the conversation's root).
    parent_id: str | None = None
    # Messages from the root to parent_id, oldest first, as stored (role, text, ids).
    history: list[dict[str, Any]] = field(default_factory=list)
    # Provider state kept with the conversation from earlier turns.
    cursor: dict[str, Any] = field(default_factory=dict)
    # A fresh id for the new user message (ChatGPT wants the client to choose it).
    user_message_id: str = ""
    system: str | None = None
    # True when --parent was given (providers without branching refuse it).
    branch: bool = False
    # --raw: called with (SSE event name or None, parsed data or raw string) per wire event.
    wire: WireHook | None = None

    def emit_wire(self, event: str | None, data: Any) -> None:
        if self.wire is not None:
            self.wire(event, data)


class Provider:
    """Base class; subclasses set `name` and implement `stream`."""

    name: ClassVar[str] = ""
    # --parent: can the provider answer from an earlier message?
    supports_branching: ClassVar[bool] = False
    # Has a server-side stop endpoint (called by `chatcli stop` before signalling).
    supports_remote_stop: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check_turn(self, turn: Turn) -> None:
        """Refuse what this provider cannot do, before anything is sent or stored."""
        if turn.branch and not self.supports_branching:
            raise UsageError(f"--parent is not supported by the {self.name} provider")

    def stream(self, turn: Turn) -> Iterator[Event]:
        raise NotImplementedError

    def stop(self, handle: dict[str, Any]) -> str | None:
        """Ask the service to stop generating (handle: what `Meta(stop=...)` carried).

        Returns a short note for the user, or None. Errors are raised as ChatCliError.
        """
        return None

    def remote_messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation's messages as the provider has them, in thread order.

        Each: message_id, parent_id, role, text, created_at (ISO 8601 UTC or None), status.
        """
        raise UsageError(f"history --remote is not supported by the {self.name} provider")

    def remote_conversations(self) -> list[dict[str, Any]]:
        """Conversations the provider lists: conversation_id, title, created_at, updated_at."""
        raise UsageError(f"listing remote conversations is not supported by the {self.name} provider")

    def close(self) -> None:
        """Release clients; called once after the last use."""
