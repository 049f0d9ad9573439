"""The one place chatcli builds HTTP clients, and maps transport failures to its errors.

Every provider gets its `httpx.Client` from `make_client` (timeouts from --timeout, the
user agent, proxies from the environment via httpx's trust_env) and wraps network calls
in `mapped()`, which turns httpx and websocket-client exceptions into `TransportError`,
`StreamTimeout` or `ConfigError`. `raise_for_response` turns an HTTP error response of any
shape (JSON wrapped or flat, string or numeric codes, plain text, HTML) into the
contract's error; providers refine it through the `classify` hook.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson

from chatcli import __version__
from chatcli.errors import (
    AuthError,
    ChatCliError,
    ConfigError,
    NotFound,
    ProtocolError,
    ProviderError,
    RateLimited,
    StreamTimeout,
    TransportError,
    redact,
)

if TYPE_CHECKING:
    from chatcli.config import Settings

USER_AGENT = f"chatcli/{__version__}"
# The most of an error body we read and keep; error pages can be large.
MAX_ERROR_BODY = 64 * 1024


def timeout_for(settings: Settings) -> httpx.Timeout:
    """--timeout is the longest silence tolerated while connecting and between bytes."""
    t = settings.timeout
    return httpx.Timeout(connect=min(t, settings.connect_timeout), read=t, write=t, pool=t)


def make_client(
    settings: Settings,
    *,
    base_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    all_headers = {"User-Agent": USER_AGENT}
    if headers:
        all_headers.update(headers)
    base = (base_url or settings.base_url or "").rstrip("/") + "/"
    extra: dict[str, Any] = {}
    if _tls_unused(base):
        extra["verify"] = _no_ca_context()
    return httpx.Client(
        base_url=base,
        headers=all_headers,
        timeout=timeout_for(settings),
        trust_env=True,
        follow_redirects=False,
        **extra,
    )


_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _tls_unused(base_url: str) -> bool:
    """A plain-http base URL with no proxy configured: this client never speaks TLS.

    (Redirects are not followed, and requests go to the base URL's origin.) httpx still
    builds a TLS context up front and loads certifi's CA bundle into it, ~25 ms of CPU
    before the first byte of every `ask` against a local server (ollama, llama.cpp, vLLM).
    """
    return base_url[:7].lower() == "http://" and not any(os.environ.get(k) for k in _PROXY_VARS)


def _no_ca_context() -> Any:
    """A verifying TLS context that trusts no CA: should TLS ever be attempted, it fails closed."""
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default


def host_of(url: str) -> str:
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


@contextlib.contextmanager
def mapped(what: str = "the server") -> Iterator[None]:
    """Translate transport exceptions raised inside the block into chatcli errors."""
    try:
        yield
    except ChatCliError:
        raise
    except httpx.TimeoutException as exc:
        phase = "connecting to" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else "waiting for"
        raise StreamTimeout(f"timed out {phase} {what}", retryable=True) from None
    except httpx.ConnectError as exc:
        raise TransportError(f"cannot connect to {what}: {_reason(exc)}", retryable=True) from None
    except httpx.RemoteProtocolError as exc:
        raise TransportError(f"the connection to {what} broke: {_reason(exc)}", retryable=True) from None
    except (httpx.ReadError, httpx.WriteError, httpx.CloseError, httpx.ProxyError) as exc:
        raise TransportError(f"network error with {what}: {_reason(exc)}", retryable=True) from None
    except httpx.UnsupportedProtocol as exc:
        raise ConfigError(f"bad base URL: {_reason(exc)}", hint="use an http:// or https:// URL") from None
    except httpx.InvalidURL as exc:
        raise ConfigError(f"bad base URL: {_reason(exc)}") from None
    except httpx.DecodingError as exc:
        raise ProtocolError(f"cannot decode the answer from {what}: {_reason(exc)}") from None
    except httpx.TooManyRedirects as exc:
        raise ProviderError(f"too many redirects from {what}: {_reason(exc)}") from None
    except httpx.TransportError as exc:
        raise TransportError(f"network error with {what}: {_reason(exc)}", retryable=True) from None
    except (ConnectionError, OSError) as exc:
        # Raw socket errors (websocket-client raises these directly).
        raise TransportError(f"network error with {what}: {_reason(exc)}", retryable=True) from None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # httpx wraps e.g. "[Errno 111] Connection refused"; keep it short and secret-free.
    return redact(text.splitlines()[0] if text else type(exc).__name__)[:300]


def retry_after_seconds(headers: httpx.Headers | dict[str, str], now: float | None = None) -> float | None:
    """Retry-After (seconds or an HTTP date), or retry-after-ms; None when absent or bad."""
    h = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in h:
        try:
            return max(0.0, float(h["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = h.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


def parse_error_body(body: bytes, content_type: str = "") -> tuple[str | None, Any, Any]:
    """(message, code, parsed JSON or None) from an error body of any shape."""
    text = body.decode("utf-8", errors="replace").strip()
    data: Any = None
    if text[:1] in "{[":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        code: Any = None
        message: Any = None
        if isinstance(err, str):
            message = err
            code = data.get("code")
        elif isinstance(err, dict):
            detail = err.get("detail")
            # A list/dict `detail` (FastAPI validation errors) is read below, not dumped as JSON.
            message = err.get("message") or err.get("msg") or (detail if isinstance(detail, str) else None)
            code = err.get("code") if err.get("code") is not None else err.get("type")
        if not message:
            message = data.get("message") or data.get("msg")
        if not message:
            detail = data.get("detail")
            if isinstance(detail, str):
                message = detail
            elif isinstance(detail, dict):
                message = detail.get("message") or detail.get("code")
                code = code or detail.get("code")
            elif isinstance(detail, list) and detail:
                first = detail[0]
                message = first.get("msg") if isinstance(first, dict) else str(first)
        if code is None:
            code = data.get("code")
        if isinstance(message, (dict, list)):
            message = orjson.dumps(message).decode()
        return (str(message) if message else None), code, data
    if "html" in content_type.lower() or text[:1] == "<":
        title = _html_title(text)
        return (f"an HTML page ({title})" if title else "an HTML page"), None, None
    if text:
        return text.splitlines()[0][:300], None, None
    return None, None, None


def _html_title(text: str) -> str | None:
    lower = text.lower()
    start = lower.find("<title")
    if start < 0:
        return None
    start = lower.find(">", start)
    end = lower.find("</title>", start)
    if start < 0 or end < 0:
        return None
    title = " ".join(text[start + 1 : end].split())
    return title[:120] or None


Classifier = Callable[[int, Any, Any, str | None], ChatCliError | None]


def error_for_status(
    status: int,
    headers: httpx.Headers | dict[str, str],
    body: bytes,
    *,
    provider: str,
    url: str = "",
    classify: Classifier | None = None,
) -> ChatCliError:
    """The chatcli error for an HTTP error response (pure: no I/O)."""
    content_type = dict((k.lower(), v) for k, v in headers.items()).get("content-type", "")
    message, code, data = parse_error_body(body, content_type)
    if classify is not None:
        custom = classify(status, code, data, message)
        if custom is not None:
            custom.status = custom.status or status
            return custom
    shown = f"{provider}: HTTP {status}" + (f": {message}" if message else "")
    if code not in (None, "", status, str(status)) and message and str(code) not in message:
        shown += f" ({code})"
    if status in (401, 403):
        return AuthError(shown, status=status, hint=_auth_hint(provider))
    if status == 429:
        return RateLimited(shown, status=status, retryable=True, retry_after=retry_after_seconds(headers))
    if status == 404:
        return NotFound(shown, status=status)
    if 300 <= status < 400:
        location = dict((k.lower(), v) for k, v in headers.items()).get("location", "")
        return ProviderError(
            f"{provider}: HTTP {status} redirect" + (f" to {redact(location)}" if location else ""),
            status=status,
            hint="point --base-url at the final address" if location else None,
        )
    retryable = status in (408, 500, 502, 503, 504)
    return ProviderError(shown, status=status, retryable=retryable, retry_after=retry_after_seconds(headers))


def _auth_hint(provider: str) -> str:
    return {
        "openai": "check OPENAI_API_KEY",
        "dify": "check DIFY_API_KEY (an app key, app-...)",
        "coze": "check COZE_API_TOKEN",
        "chatgpt": "the access token may have expired: get a fresh one and set CHATGPT_ACCESS_TOKEN",
    }.get(provider, "check the credentials")


def raise_for_response(
    response: httpx.Response,
    *,
    provider: str,
    classify: Classifier | None = None,
) -> None:
    """Raise the chatcli error for a non-2xx streamed response, reading a bounded body."""
    if response.status_code < 300:
        return
    body = b""
    with mapped(provider):
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= MAX_ERROR_BODY:
                break
    raise error_for_status(
        response.status_code,
        response.headers,
        body[:MAX_ERROR_BODY],
        provider=provider,
        url=str(response.request.url),
        classify=classify,
    )
