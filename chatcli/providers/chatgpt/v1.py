"""The delta encoding "v1" (spec §6): documents built from `{p, o, v, c}` operations.

`apply(doc, path, op, value)` is the pure operation interpreter (add, replace, append,
patch, truncate, remove on JSON-Pointer paths relative to the document root
`{"message", "conversation_id", "error"}`). `V1Decoder` keeps one document per `c`, the
sticky `p`/`o` pair of spec §6.3 (also set from the last sub-operation of a patch, used
only for bare string values), hands typed events to `AnswerState.typed` and, after every
delta frame, the current document to `AnswerState.document`, which emits only the new
text (spec §6.6: "convert every frame back into a legacy snapshot").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chatcli import events as ev
from chatcli.providers.chatgpt.answer import TAIL, AnswerState
from chatcli.providers.chatgpt.legacy import parse

TEXT_PATH = "/message/content/parts/0"
_MISSING = object()


def split_path(path: str) -> list[str]:
    if not path or path == "/":
        return []
    parts = path.split("/")
    if parts[0] == "":
        parts = parts[1:]
    return [p.replace("~1", "/").replace("~0", "~") for p in parts]


def _index(container: list[Any], token: str) -> int | None:
    if token == "-":
        return len(container)
    try:
        i = int(token)
    except ValueError:
        return None
    if i < 0:
        i += len(container)  # -1: the last element; past the front of the list: no element
        return i if i >= 0 else None
    return i


def _get(container: Any, token: str) -> Any:
    if isinstance(container, dict):
        return container.get(token, _MISSING)
    if isinstance(container, list):
        i = _index(container, token)
        if i is not None and 0 <= i < len(container):
            return container[i]
    return _MISSING


def _set(container: Any, token: str, value: Any) -> None:
    if isinstance(container, dict):
        container[token] = value
    elif isinstance(container, list):
        i = _index(container, token)
        if i is None:
            return
        if i < len(container):
            container[i] = value
        else:
            container.extend([""] * (i - len(container)))  # parts/3 on a shorter list
            container.append(value)


def _parent(doc: dict[str, Any], tokens: list[str]) -> Any:
    """The container holding the last token, creating missing objects on the way."""
    node: Any = doc
    for i, token in enumerate(tokens[:-1]):
        child = _get(node, token)
        if child is _MISSING or not isinstance(child, (dict, list)):
            nxt = tokens[i + 1]
            child = [] if nxt.isdigit() and token == "parts" else {}
            _set(node, token, child)
        node = child
    return node


def apply(doc: dict[str, Any], path: str, op: str, value: Any) -> dict[str, Any]:
    """Apply one operation; returns the (possibly new) document."""
    tokens = split_path(path)
    if op == "patch":
        for sub in value if isinstance(value, list) else ():
            if isinstance(sub, dict) and isinstance(sub.get("o"), str) and isinstance(sub.get("p", ""), (str, type(None))):
                doc = apply(doc, sub.get("p") or "", sub["o"], sub.get("v"))
        return doc
    if not tokens:
        if op in ("add", "replace"):
            return value if isinstance(value, dict) else doc
        if op == "append" and isinstance(value, dict):
            doc.update(value)
        return doc
    parent = _parent(doc, tokens)
    key = tokens[-1]
    current = _get(parent, key)
    if op in ("add", "replace"):
        _set(parent, key, value)
    elif op == "append":
        if current is _MISSING or current is None:
            _set(parent, key, value)
        elif isinstance(current, str):
            _set(parent, key, current + (value if isinstance(value, str) else str(value)))
        elif isinstance(current, list):
            if isinstance(value, list):
                current.extend(value)
            else:
                current.append(value)
        elif isinstance(current, dict) and isinstance(value, dict):
            current.update(value)
        else:
            _set(parent, key, value)
    elif op == "truncate":
        if isinstance(current, (str, list)) and isinstance(value, int) and value >= 0:
            _set(parent, key, current[:value])
    elif op == "remove":
        if isinstance(parent, dict):
            parent.pop(key, None)
        elif isinstance(parent, list):
            i = _index(parent, key)
            if i is not None and 0 <= i < len(parent):
                del parent[i]
    return doc


class V1Decoder:
    """Spec §6.6. Fast path: once a general frame leaves the current document's visible
    answer message streaming from `/message/content/parts/0` with the sticky pair resolving
    bare strings to (TEXT_PATH, append), each following bare `{"v": "..."}` frame is
    answered without walking the pointer or re-reading the message: its piece is kept in a
    list (no quadratic string growth) and `Delta(piece)` is emitted, exactly what the
    general path would emit. Any other frame, `finish()` and `docs` first materialise the
    text (`flush()`), so everything else sees the same document as without the fast path.
    """

    fast_path = True  # False: every frame takes the general path (tests compare the two)

    def __init__(self, state: AnswerState | None = None) -> None:
        self.state = state or AnswerState()
        self._docs: dict[int, dict[str, Any]] = {}
        self.cur = 0
        self.sticky_p: str | None = None
        self.sticky_o: str | None = None
        # Armed fast path: (the parts list, [parts[0] as armed, pieces appended since]).
        self._fast: tuple[list[Any], list[str]] | None = None

    @property
    def docs(self) -> dict[int, dict[str, Any]]:
        self.flush()
        return self._docs

    def flush(self) -> None:
        """Write the pending text pieces into parts[0] (and the answer state); disarm."""
        fast = self._fast
        if fast is None:
            return
        self._fast = None
        parts, pieces = fast
        if len(pieces) > 1:
            text = "".join(pieces)
            parts[0] = text
            state = self.state
            state.cur = text
            state.tail = text[max(0, len(text) - TAIL):]

    def finish(self) -> Iterator[ev.Event]:
        self.flush()
        yield from self.state.finish()

    def feed(self, event: str | None, data: str) -> Iterator[ev.Event]:
        obj = parse(data)
        fast = self._fast
        if fast is not None:
            if type(obj) is dict and len(obj) == 1 and event != "delta_encoding":
                v = obj.get("v")
                if type(v) is str:
                    # == the general path: apply() appends v to parts[0]; AnswerState sees
                    # the same message with a longer text -> Delta(v) (nothing for "").
                    self.sticky_p = TEXT_PATH
                    self.sticky_o = "append"
                    if v:
                        fast[1].append(v)
                        self.state.seen += len(v)
                        yield ev.Delta(v)
                    return
            self.flush()
        yield from self._feed(event, obj)

    def _feed(self, event: str | None, obj: Any) -> Iterator[ev.Event]:
        if event == "delta_encoding" or isinstance(obj, str):
            if isinstance(obj, str) and obj.strip() == "[DONE]":
                self.state.complete = True
            return  # "v1", keep-alives
        if not isinstance(obj, dict):
            return
        if event != "delta" and not any(k in obj for k in ("p", "o", "v")):
            if isinstance(obj.get("type"), str):
                yield from self.state.typed(obj)
            elif "moderation_response" in obj:
                yield from self.state.conversation(obj.get("conversation_id"))
                yield from self.state.moderation(obj)
            else:
                yield from self.state.document(obj)  # a legacy snapshot in a v1 stream
            return
        yield from self.delta(obj)

    def _arm(self, doc: Any) -> None:
        """Arm the fast path if a bare string frame now would only append visible text."""
        if not self.fast_path or (self.sticky_p or TEXT_PATH) != TEXT_PATH or (self.sticky_o or "append") != "append":
            return
        state = self.state
        if not isinstance(doc, dict) or doc.get("error") or state.need_sep or state.pending_tool is not None:
            return
        cid = doc.get("conversation_id")
        if isinstance(cid, str) and cid and cid != state.conversation_id:
            return
        msg = doc.get("message")
        if not isinstance(msg, dict):
            return
        mid = msg.get("id")
        if not isinstance(mid, str) or mid != state.answer_id:
            return
        author = msg.get("author")
        content = msg.get("content")
        meta = msg.get("metadata") if isinstance(msg.get("metadata"), dict) else {}
        if (not isinstance(author, dict) or author.get("role") != "assistant" or not isinstance(content, dict)
                or content.get("content_type") not in ("text", "multimodal_text")
                or meta.get("is_visually_hidden_from_conversation") or (msg.get("recipient") or "all") != "all"
                or msg.get("channel") not in (None, "final")):
            return
        parts = content.get("parts")
        if type(parts) is not list or not parts or type(parts[0]) is not str:
            return
        if any(isinstance(p, str) for p in parts[1:]):
            return  # the text is the join of all string parts: appending to parts[0] is no tail append
        text = parts[0]
        if state.cur is not text or state.seen != len(text) or state.tail != text[max(0, len(text) - TAIL):]:
            return
        self._fast = (parts, [text])

    def delta(self, frame: dict[str, Any]) -> Iterator[ev.Event]:
        p, o, v = frame.get("p"), frame.get("o"), frame.get("v")
        if not isinstance(p, (str, type(None))) or not isinstance(o, (str, type(None))):
            return  # not a frame this decoder understands
        c = frame.get("c")
        if isinstance(c, int):
            self.cur = c
        if p is None and o is None:
            if isinstance(v, dict) and "message" in v:
                p, o = "", "add"  # {"v": {"message": ...}, "c": N}: a new document
                self.sticky_p = self.sticky_o = None
            elif isinstance(v, list):
                p, o = "", "patch"  # a bare list is a patch (2025-26)
            elif isinstance(v, str):
                p, o = self.sticky_p or TEXT_PATH, self.sticky_o or "append"
            else:
                return
        elif o is None:
            o = self.sticky_o or "replace"
        elif p is None:
            p = self.sticky_p or ""
        doc = self._docs.get(self.cur)
        if doc is None:
            doc = self._docs[self.cur] = {}
        doc = apply(doc, p, o, v)
        self._docs[self.cur] = doc
        if o == "patch":
            subs = [s for s in v if isinstance(s, dict) and isinstance(s.get("o"), str)
                    and isinstance(s.get("p", ""), (str, type(None)))] if isinstance(v, list) else []
            if subs:
                self.sticky_p, self.sticky_o = subs[-1].get("p") or "", subs[-1]["o"]
        elif p == "" and o == "add":
            self.sticky_p = self.sticky_o = None
        else:
            self.sticky_p, self.sticky_o = p, o
        yield from self.state.document(doc)
        self._arm(doc)
