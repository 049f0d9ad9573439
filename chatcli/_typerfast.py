"""Start-up cost: let Typer coerce plain str/int/float/bool/list[str] values without pydantic.

Typer 0.29 coerces every parsed parameter through a pydantic `TypeAdapter`, built
lazily for each parameter of the command being run. Importing pydantic and building
those adapters is ~120 ms of the ~200 ms that `chatcli history`, `chatcli stop` and a
TAB completion took (`python -X importtime`, cProfile: typer._coercion.build_runtime_param).

chatcli's parameters are all plain `str`, `int`, `float`, `bool` or `list[str]` options
without min/max, choices, paths or custom parsers, and their values arrive from the
command line as text. For those, `install()` makes Typer use `_Plain` below, which
converts the obvious cases itself (a str as is, "12" -> 12, "0.5" -> 0.5) and hands
anything else, including every invalid value, to Typer's own pydantic adapter: the
results and the error messages stay exactly Typer's. Anything this does not recognise
(another Typer version, another kind of parameter) keeps Typer's behaviour unchanged.
"""

from __future__ import annotations

import re
from typing import Any

_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_installed = False


def _simple(descriptor: Any) -> str | None:
    """'str', 'int', 'float', 'bool', 'list' (of str) or None when Typer must handle it."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None:
        return None
    for attr in ("parser", "click_type"):
        if getattr(info, attr, None) is not None:
            return None
    ann = descriptor.annotation
    if (getattr(info, "min", None) is not None or getattr(info, "max", None) is not None) and ann not in (int, float):
        return None
    if ann in (str, int, float, bool):
        return ann.__name__
    if getattr(ann, "__origin__", None) is list and getattr(ann, "__args__", None) == (str,):
        return "list"
    return None


def install() -> None:
    """Patch Typer's lazy runtime-parameter builder (idempotent; a no-op on other Typer versions)."""
    global _installed
    if _installed:
        return
    try:
        from typer import _coercion, core
    except ImportError:
        return
    base = getattr(_coercion, "RuntimeParam", None)
    build = getattr(_coercion, "build_runtime_param", None)
    param_cls = getattr(core, "_TyperParameter", None)
    if base is None or build is None or param_cls is None or not hasattr(param_cls, "get_runtime_param"):
        return

    class _Plain(base):  # type: ignore[misc, valid-type]
        """A RuntimeParam that converts plain values itself and defers the rest to Typer's."""

        def __init__(self, descriptor: Any, kind: str) -> None:
            object.__setattr__(self, "parameter_info", descriptor.parameter_info)
            object.__setattr__(self, "annotation", descriptor.annotation)
            object.__setattr__(self, "_descriptor", descriptor)
            object.__setattr__(self, "_kind", kind)
            object.__setattr__(self, "_full", None)

        def _in_range(self, number: float) -> bool:
            """Within the option's min/max (outside: Typer's adapter gives its own error)."""
            low = getattr(self.parameter_info, "min", None)
            high = getattr(self.parameter_info, "max", None)
            return (low is None or number >= low) and (high is None or number <= high)

        def _typer(self) -> Any:
            if self._full is None:
                object.__setattr__(self, "_full", build(self._descriptor))
            return self._full

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            kind = self._kind
            if isinstance(value, str):
                if kind == "str":
                    return value
                if kind == "int" and _INT.match(value):
                    number: int | float = int(value)
                    if self._in_range(number):
                        return number
                elif kind == "float" and _FLOAT.match(value):
                    number = float(value)
                    if self._in_range(number):
                        return number
            elif kind == "list" and isinstance(value, (list, tuple)) and all(type(v) is str for v in value):
                return list(value)
            elif kind == "bool" and type(value) is bool:
                return value
            return self._typer()._coerce_value(value, param=param, ctx=ctx)

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            kind = _simple(self.type_descriptor)
            self._runtime_param = _Plain(self.type_descriptor, kind) if kind else build(self.type_descriptor)
        return self._runtime_param

    param_cls.get_runtime_param = get_runtime_param
    _installed = True
