"""Keep pydantic out of chatcli's start-up.

Typer 0.29 coerces every parameter value through a pydantic TypeAdapter; importing
pydantic and building the adapters costs about 0.1 s of CPU on every command (and on
every TAB press). chatcli's parameters are all str, int, float, bool or list[str] (plain
or optional), which need no pydantic: `install()` swaps in a small coercion for exactly
those annotations and leaves everything else to Typer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args, get_origin

_SIMPLE = (str, int, float, bool)
_WORD = {int: "integer", float: "float", bool: "boolean"}
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}


def _leaf(annotation: Any) -> Any:
    """str/int/float/bool, unwrapping Optional; None when not simple."""
    if annotation in _SIMPLE:
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) is not list and len(args) == 1 and args[0] in _SIMPLE:
        return args[0]
    return None


def install() -> None:
    try:
        import typer.core as core
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam
    except ImportError:  # another Typer: leave it alone
        return
    original = core.build_runtime_param

    @dataclass(frozen=True)
    class SimpleRuntimeParam(RuntimeParam):
        leaf: Any = None
        many: bool = False

        def _one(self, value: Any, param: Any, ctx: Any) -> Any:
            leaf = self.leaf
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            if leaf is str:
                return str(value)
            if isinstance(value, leaf) and not (leaf is int and isinstance(value, bool)):
                result = value
            elif leaf is bool:
                low = str(value).strip().lower()
                if low not in _TRUE | _FALSE:
                    raise BadParameter(f"{value!r} is not a valid boolean.", ctx=ctx, param=param)
                return low in _TRUE
            else:
                try:
                    result = leaf(str(value).strip())
                except ValueError:
                    raise BadParameter(f"{value!r} is not a valid {_WORD[leaf]}.", ctx=ctx, param=param) from None
            info = self.parameter_info
            lo, hi = getattr(info, "min", None), getattr(info, "max", None)
            if (lo is not None and result < lo) or (hi is not None and result > hi):
                if getattr(info, "clamp", False):
                    return leaf(lo) if lo is not None and result < lo else leaf(hi)
                bounds = f">={lo}" if hi is None else f"<={hi}" if lo is None else f"in {lo}..{hi}"
                raise BadParameter(f"{result} is not {bounds}.", ctx=ctx, param=param)
            return result

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if self.many:
                items = value if isinstance(value, (list, tuple)) else [value]
                return [self._one(v, param, ctx) for v in items]
            return self._one(value, param, ctx)

    def build(descriptor: Any) -> Any:
        info = descriptor.parameter_info
        annotation = descriptor.annotation
        if descriptor.file_annotation is None and getattr(info, "parser", None) is None:
            leaf, many = _leaf(annotation), False
            if leaf is None:
                target = annotation
                if get_origin(annotation) is not list:  # Optional[list[str]]
                    inner = [a for a in get_args(annotation) if a is not type(None)]
                    target = inner[0] if len(inner) == 1 else annotation
                if get_origin(target) is list and get_args(target)[0] in _SIMPLE:
                    leaf, many = get_args(target)[0], True
            if leaf is not None:
                return SimpleRuntimeParam(parameter_info=info, annotation=annotation, leaf=leaf, many=many)
        return original(descriptor)

    core.build_runtime_param = build
