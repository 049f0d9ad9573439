"""ChatGPT's HTTP error bodies (spec §10) -> chatcli errors, for `_http.error_for_status`.

FastAPI `{"detail": ...}` bodies (string, object with code/message/clears_in, or the 422
list), Cloudflare challenge pages (HTML: one line, never the page), token expiry.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from chatcli.errors import AuthError, ChatCliError, NotFound, ProviderError, RateLimited

TOKEN_HINT = ("the access token has probably expired (they last about 10 days): open "
              "https://chatgpt.com/api/auth/session while signed in, copy accessToken, and set CHATGPT_ACCESS_TOKEN")
CLOUDFLARE_HINT = ("Cloudflare asks for a browser check on this host; use a backend-api proxy as CHATGPT_BASE_URL "
                   "(or --base-url), or try again later")


def _detail(data: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(data, dict):
        detail = data.get("detail", data)
        return detail, detail if isinstance(detail, dict) else {}
    return None, {}


def _duration(seconds: Any) -> str | None:
    try:
        s = int(float(seconds))
    except (TypeError, ValueError):
        return None
    h, rem = divmod(max(0, s), 3600)
    m = rem // 60
    return f"{h}h {m:02d}m" if h else f"{m}m {s % 60:02d}s" if m else f"{s}s"


def classify(status: int, code: Any, data: Any, message: str | None) -> ChatCliError | None:
    detail, obj = _detail(data)
    text = message or ""
    if isinstance(detail, list) and detail:
        first = detail[0] if isinstance(detail[0], dict) else {}
        loc = ".".join(str(x) for x in first.get("loc") or ())
        text = (first.get("msg") or text) + (f" (at {loc})" if loc else "")
    code = obj.get("code", code)
    if status == 401:
        what = "has expired" if code == "token_expired" or "expired" in text.lower() else "was rejected"
        return AuthError(f"chatgpt: the access token {what} (HTTP 401" + (f": {text})" if text else ")"),
                         hint=TOKEN_HINT)
    if status == 403:
        if data is None and (text.startswith("an HTML page") or not text):
            return AuthError("chatgpt: blocked by a Cloudflare challenge (HTTP 403)", hint=CLOUDFLARE_HINT)
        if "unusual activity" in text.lower():
            return AuthError(f"chatgpt: the request was refused (HTTP 403): {text}",
                             hint="the sentinel check failed; a backend-api proxy as CHATGPT_BASE_URL may help")
        return AuthError(f"chatgpt: access denied (HTTP 403)" + (f": {text}" if text else ""), hint=TOKEN_HINT)
    if status == 429 and "one message at a time" in text.lower():
        # chatgpt.md §10: another answer in this account is still being generated. Asking
        # again at once cannot help: never retried (the rule for "one at a time").
        return RateLimited(f"chatgpt: {text}", retryable=False,
                           hint="wait for the other answer to finish, or stop it with `chatcli stop`")
    if status == 429:
        clears = obj.get("clears_in")
        shown = f"chatgpt: rate limited (HTTP 429): {text or 'too many requests'}"
        if code and str(code) not in shown:
            shown += f" ({code})"
        wait = _duration(clears)
        if wait:
            shown += f"; the limit clears in {wait}"
        retry_after = float(clears) if isinstance(clears, (int, float)) else None
        return RateLimited(shown, retryable=True, retry_after=retry_after)
    if status == 404:
        return NotFound(f"chatgpt: {text or 'not found'} (HTTP 404)",
                        hint="the conversation may have been deleted on chatgpt.com; start a new one with `chatcli ask`")
    if status == 413:
        return ProviderError(f"chatgpt: the message is too long (HTTP 413): {text}".rstrip(": "),
                             hint="send something shorter")
    if status == 422:
        return ProviderError(f"chatgpt: the server rejected the request (HTTP 422): {text}".rstrip(": "))
    return None


def token_expiry(token: str | None) -> float | None:
    """The `exp` claim of a JWT access token (spec §1.2; no signature check), or None."""
    parts = (token or "").split(".")
    if len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


def check_token(token: str | None, now: float | None = None) -> None:
    """Refuse a token whose `exp` has passed before anything is sent (a clear exit 3)."""
    exp = token_expiry(token)
    if exp is not None and exp < (now if now is not None else time.time()):
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(exp))
        raise AuthError(f"chatgpt: the access token expired at {when}", hint=TOKEN_HINT)
