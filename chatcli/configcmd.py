"""`chatcli config` (resolved settings and their sources, `--init`) and `chatcli paths`.

Local only: config.py and the standard library, no network import.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson

from chatcli.config import Options, PROVIDER_ENV, config_path, resolve, state_dir
from chatcli.errors import UsageError
from chatcli.output import Style, use_color

SHOWN = ("provider", "profile", "base_url", "model", "api_key", "bot_id", "user", "system", "timeout",
         "connect_timeout", "retries")


def mask(secret: str | None) -> str | None:
    """`sk-…1234` for a long secret (enough to tell two keys apart), `[set]` for a short one."""
    if not secret:
        return None
    if len(secret) < 16:
        return "[set]"
    return f"{secret[:3]}…{secret[-4:]}"


def show(*, profile: str | None, provider: str | None, jsonl: bool) -> int:
    settings, note = resolve(Options(provider=provider, profile=profile), need_secret=False)
    rows: list[tuple[str, Any, str]] = []
    for key in SHOWN:
        value = getattr(settings, key)
        if key == "api_key":
            value = mask(value)
        source = settings.sources.get(key)
        if key in ("system", "connect_timeout") and source is None and value is not None:
            source = f"profile {settings.profile}" if settings.profile else "default"
        if key == "api_key" and value is None:
            var = PROVIDER_ENV.get(settings.provider, (None, None, None, False))[2]
            source = f"not set (set {var})" if var else "not needed"
        rows.append((key, value, source or ("default" if value is not None else "-")))
    for key, value in sorted(settings.extra.items()):
        rows.append((key, value, f"profile {settings.profile}" if settings.profile else "option"))
    if jsonl:
        out = sys.stdout.buffer
        for key, value, source in rows:
            out.write(orjson.dumps({"key": key, "value": value, "source": source}) + b"\n")
        out.flush()
        return 0
    style = Style(use_color(sys.stdout))
    if note:
        print(style.dim(f"chatcli: {note}"), file=sys.stderr)
    path = config_path()
    head = f"config file: {path}" + ("" if path.exists() else " (none; `chatcli config --init` writes one)")
    lines = [style.dim(head)]
    width = max(len(k) for k, _, _ in rows)
    vwidth = min(50, max(len(_fmt(v)) for _, v, _ in rows))
    for key, value, source in rows:
        lines.append(f"{key.ljust(width)}  {_fmt(value).ljust(vwidth)}  {style.dim(source)}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


STARTER = '''\
# chatcli configuration: named profiles, picked with --profile NAME or CHATCLI_PROFILE.
# Precedence: command-line option > environment > profile > default.
# A profile names where its secret comes from (api_key_env = "VAR" or api_key_cmd =
# "a command that prints it"); it never needs to hold the secret itself.
# `chatcli config --profile NAME` shows what a profile resolves to.

# default_profile = "local"

[profiles.local]
provider = "local"
# model = "/path/to/model.gguf"

# [profiles.openai]
# provider = "openai"
# base_url = "https://api.openai.com/v1"
# model = "gpt-4o-mini"
# api_key_env = "OPENAI_API_KEY"

# [profiles.llamacpp]            # any OpenAI-compatible server (llama.cpp, vLLM, LiteLLM, Ollama)
# provider = "openai"
# base_url = "http://127.0.0.1:8080/v1"
# model = "smollm2"

# [profiles.dify]
# provider = "dify"
# base_url = "https://api.dify.ai/v1"
# api_key_env = "DIFY_API_KEY"
# user = "chatcli"

# [profiles.coze]
# provider = "coze"
# base_url = "https://api.coze.com"
# bot_id = "7000000000000000000"
# api_key_cmd = "pass show coze/token"

# [profiles.chatgpt]
# provider = "chatgpt"
# api_key_env = "CHATGPT_ACCESS_TOKEN"
# model = "auto"
'''


def init(*, force: bool) -> int:
    path = config_path()
    if path.exists() and not force:
        raise UsageError(f"{path} exists already; edit it, or pass --force to replace it")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, STARTER.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        from chatcli.errors import ConfigError

        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(path)
    print("chatcli: wrote a starter config; see `chatcli config --profile NAME`", file=sys.stderr)
    return 0


def paths(*, only: str | None) -> int:
    state, cfg = state_dir(), config_path()
    if only == "state":
        print(state)
        return 0
    if only == "config":
        print(cfg)
        return 0
    def status(p: Any) -> str:
        return "" if p.exists() else "  (not created yet)"
    src = "CHATCLI_HOME" if os.environ.get("CHATCLI_HOME") else "XDG / default"
    print(f"state   {state}{status(state)}")
    print(f"config  {cfg}{status(cfg)}")
    print(f"        (from {src})")
    return 0
