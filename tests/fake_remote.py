"""A provider class for tests of the optional history hooks (delete_remote, rename_remote)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from chatcli.providers.base import Provider


class WithHooks(Provider):
    name = "openai"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.log = Path(os.environ["FAKE_REMOTE_LOG"])

    def _note(self, *args: Any) -> None:
        with self.log.open("a") as f:
            f.write(json.dumps(args) + "\n")

    def delete_remote(self, conversation_id: str) -> None:
        self._note("delete", conversation_id)

    def rename_remote(self, conversation_id: str, title: str) -> None:
        self._note("rename", conversation_id, title)

    def close(self) -> None:
        pass
