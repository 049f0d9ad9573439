"""In-process decoder throughput: a provider's pure decoder fed a long answer.

A provider's decoder is found by convention (CONTRACT of the architecture, BRIEF.md):
classes named `*Decoder` in `chatcli.providers.<name>` (module or package, including its
direct submodules), constructed without arguments, fed with `feed(data)` or
`feed(event_name, data)` and ended with `finish()` when they have one. A decoder counts
only if it reproduces the answer text exactly; a provider that is not there yet is
reported as such, so the lead can re-run this after merging.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import inspect
import pkgutil
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from streams import Wire

CHUNK = 16 * 1024  # bytes per socket read fed to the framer


@dataclass
class Result:
    ok: bool
    note: str = ""
    decoder: str = ""
    seconds: float = 0.0  # decoder alone, median
    framed_seconds: float = 0.0  # SSE framing + decoder, median
    peak_bytes: int = 0  # tracemalloc peak, framing + decoder
    events: int = 0
    size: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def framed_rate(self) -> float:
        return self.events / self.framed_seconds if self.framed_seconds else 0.0

    @property
    def mb_s(self) -> float:
        return self.size / 1e6 / self.framed_seconds if self.framed_seconds else 0.0


def provider_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(f"chatcli.providers.{name}") is not None
    except (ImportError, ValueError):
        return False


def decoder_classes(name: str) -> list[type]:
    base = f"chatcli.providers.{name}"
    modules = [importlib.import_module(base)]
    path = getattr(modules[0], "__path__", None)
    if path is not None:  # a package: look in its direct submodules too
        for info in pkgutil.iter_modules(path):
            try:
                modules.append(importlib.import_module(f"{base}.{info.name}"))
            except Exception:  # noqa: BLE001 - a submodule that needs something else
                continue
    seen: dict[str, type] = {}
    for mod in modules:
        for attr, obj in vars(mod).items():
            if (inspect.isclass(obj) and attr.endswith("Decoder") and obj.__module__.startswith(base)
                    and hasattr(obj, "feed")):
                seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return list(seen.values())


def _feeder(decoder: Any) -> Callable[[str | None, str], Any]:
    params = [p for p in inspect.signature(decoder.feed).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(params) >= 2:
        return decoder.feed
    feed = decoder.feed
    return lambda event, data: feed(data)


def _chunks(body: bytes) -> Iterator[bytes]:
    for i in range(0, len(body), CHUNK):
        yield body[i : i + CHUNK]


def _frames(body: bytes) -> list[tuple[str | None, str]]:
    from chatcli.sse import iter_sse, iter_text

    return [(s.event, s.data) for s in iter_sse(iter_text(_chunks(body)))]


def _consume(out: Any, sink: list[Any]) -> None:
    if out is None:
        return
    if isinstance(out, Iterable):
        sink.extend(out)


def _construct(cls: type) -> Any:
    """The decoder with placeholder strings for required keyword-only arguments (Dify's `user`)."""
    import inspect

    required = {name: "bench" for name, p in inspect.signature(cls).parameters.items()
                if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    return cls(**required)


def _decode(cls: type, frames: Iterable[tuple[str | None, str]]) -> list[Any]:
    decoder = _construct(cls)
    feed = _feeder(decoder)
    events: list[Any] = []
    for event, data in frames:
        _consume(feed(event, data), events)
        if getattr(decoder, "done", False) is True:
            break
    finish = getattr(decoder, "finish", None)
    if callable(finish):
        _consume(finish(), events)
    return events


def _framed(cls: type, body: bytes) -> list[Any]:
    from chatcli.sse import iter_sse, iter_text

    return _decode(cls, ((s.event, s.data) for s in iter_sse(iter_text(_chunks(body)))))


def _text(events: list[Any]) -> str:
    parts: list[str] = []
    for e in events:
        kind = getattr(e, "type", None)
        if kind == "delta":
            parts.append(e.text)
        elif kind == "replace":
            parts = [e.text]
    return "".join(parts)


def _median_time(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(provider: str, wire: Wire, rounds: int) -> Result:
    if not provider_present(provider):
        return Result(False, "n/a (provider not present)")
    try:
        classes = decoder_classes(provider)
    except Exception as exc:  # noqa: BLE001
        return Result(False, f"n/a (import failed: {type(exc).__name__}: {exc})")
    if not classes:
        return Result(False, "n/a (no *Decoder class found)")
    frames = _frames(wire.body)
    problems = []
    for cls in classes:
        name = f"{cls.__module__.removeprefix('chatcli.providers.')}.{cls.__qualname__}"
        try:
            text = _text(_decode(cls, frames))
        except Exception as exc:  # noqa: BLE001 - report, try the next class
            problems.append(f"{cls.__qualname__}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        if text != wire.text:
            problems.append(f"{cls.__qualname__}: decoded {len(text)} of {len(wire.text)} chars")
            continue
        res = Result(True, decoder=name, events=wire.deltas, size=len(wire.body))
        res.seconds = _median_time(lambda: _decode(cls, frames), rounds)
        res.framed_seconds = _median_time(lambda: _framed(cls, wire.body), rounds)
        gc.collect()
        tracemalloc.start()
        _framed(cls, wire.body)
        res.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return res
    return Result(False, "n/a (no decoder reproduced the answer: " + "; ".join(problems) + ")")
