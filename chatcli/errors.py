"""chatcli's exceptions, each carrying the contract's exit code and `error.code`.

    ChatCliError (1, internal)
    ├── UsageError (2, config)          bad option, empty prompt
    │   └── ConversationNotFound (2, not_found)   unknown or ambiguous --cid
    ├── ConfigError (3, config)         nothing configured, unknown provider, missing key
    │   └── AuthError (3, auth)         401/403, expired token, challenge pages
    ├── ProviderError (6, provider)     an error the provider reports, an unexpected status
    │   ├── NotFound (6, not_found)     the provider does not know the conversation/bot/model
    │   ├── RateLimited (4, rate_limit) 429, quota codes
    │   └── ProtocolError (6, protocol) a malformed stream or body
    ├── TransportError (5, network)     refused, DNS, TLS, stream cut off
    │   └── StreamTimeout (5, timeout)  silence longer than --timeout
    ├── StateError (7, state)           the state cannot be read or written
    └── Stopped (130)                   Ctrl-C, SIGTERM, `chatcli stop` (a BaseException below)

Messages never contain secrets: `redact()` is applied to every message on construction.
"""

from __future__ import annotations

import re

_SECRET_PATTERNS = [
    # Authorization / API-key header values of any scheme (Basic, Token, Bearer ...), as
    # header lines, JSON or repr'd dicts
    (re.compile(r"""((?<![A-Za-z0-9-])(?:proxy-)?(?:authorization|x-api-key|api-key)["']?\s*[:=]\s*["']?)"""
                r"""(?:(?:bearer|basic|token|digest)\s+)?[^\s"',;}&]+""", re.I), r"\1[REDACTED]"),
    # access_token=... in URLs (ChatGPT wss_url), and similar query parameters
    (re.compile(r"((?<![A-Za-z0-9])(?:access_token|token|api_key|apikey|sig|signature)=)[^&\s\"']+", re.I), r"\1[REDACTED]"),
    # Authorization: Bearer xxx / Bearer xxx
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\1[REDACTED]"),
    # typical key shapes: sk-..., app-..., pat_..., eyJ... (JWT)
    (re.compile(r"\b(?:sk-|app-|pat_|cztei_)[A-Za-z0-9_-]{6,}"), "[REDACTED]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9._-]+"), "[REDACTED]"),
]

_extra_secrets: list[str] = []


def register_secret(value: str | None) -> None:
    """Remember a secret in use so that `redact` removes it from anything printed."""
    if value and len(value) >= 4 and value not in _extra_secrets:
        _extra_secrets.append(value)


def redact(text: str) -> str:
    """Remove tokens from text bound for a terminal, a log or the state."""
    if not text:
        return text
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class ChatCliError(Exception):
    exit_code = 1
    code = "internal"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        hint: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        message = redact(" ".join(str(message).split()))
        super().__init__(message)
        self.message = message
        self.status = status
        self.hint = redact(hint) if hint else None
        self.retryable = retryable
        self.retry_after = retry_after


class UsageError(ChatCliError):
    exit_code = 2
    code = "config"


class ConversationNotFound(UsageError):
    code = "not_found"


class ConfigError(ChatCliError):
    exit_code = 3
    code = "config"


class AuthError(ConfigError):
    code = "auth"


class ProviderError(ChatCliError):
    exit_code = 6
    code = "provider"


class NotFound(ProviderError):
    code = "not_found"


class RateLimited(ProviderError):
    exit_code = 4
    code = "rate_limit"


class ProtocolError(ProviderError):
    code = "protocol"


class TransportError(ChatCliError):
    exit_code = 5
    code = "network"


class StreamTimeout(TransportError):
    code = "timeout"


class StateError(ChatCliError):
    exit_code = 7
    code = "state"


class Stopped(BaseException):
    """The answer was stopped: Ctrl-C, SIGTERM or `chatcli stop` (exit 130).

    A BaseException, like KeyboardInterrupt, so that no `except Exception` in a library
    swallows it.
    """

    exit_code = 130

    def __init__(self, reason: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason
