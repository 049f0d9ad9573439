"""Dify's error catalogue (spec §6, §3.3) -> chatcli errors. Pure.

`classify` is the `_http.raise_for_response` hook for HTTP errors before a stream starts;
`in_band_error` maps an `error` event inside a stream (always `provider`, exit 6, per the
contract, with Dify's code and message). Codes are matched, never whole messages, and only
message prefixes where Dify offers no code (§8.10).
"""

from __future__ import annotations

from typing import Any

from chatcli.errors import AuthError, ChatCliError, NotFound, ProviderError, RateLimited

NEW_CONVERSATION = "start a new conversation with `chatcli ask`"

HINTS = {
    "provider_not_initialize": "set up the model provider's credentials in Dify (Settings > Model Provider)",
    "app_unavailable": "check the app's configuration in Dify (a Chatflow must be published)",
    "not_chat_app": "this key belongs to a completion or workflow app; chatcli needs a chat, agent or Chatflow app",
    "conversation_completed": NEW_CONVERSATION,
    "model_currently_not_support": "choose another model for the app in Dify",
    "provider_quota_exceeded": "the hosted model quota is exhausted: add your own model credentials in Dify",
    "completion_request_error": "the model behind the Dify app failed; check its provider in Dify",
    "forbidden": "the app is gone, disabled or its API access is off; check the app in Dify",
}


def clean_message(message: Any) -> str:
    """One line; without flask-restx's 404 route hint (>=1.8.0, §6.1)."""
    text = " ".join(str(message or "").split())
    cut = text.find(" You have requested this URI")
    return text[:cut] if cut > 0 else text


def _details(data: Any) -> str:
    # flask-restx 1.8-1.10 validation bodies: {"errors": {field: text}, "message": ...} (§6.1)
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, dict) and errors:
        return "; ".join(f"{k}: {v}" for k, v in errors.items())
    params = data.get("params") if isinstance(data, dict) else None
    return f"parameter {params}" if params else ""


def classify(status: int, code: Any, data: Any, message: str | None) -> ChatCliError | None:
    code = str(code) if code not in (None, "") else None
    text = clean_message(message)
    extra = _details(data)
    if extra:
        text = f"{text}: {extra}" if text else extra
    shown = f"dify: HTTP {status}: {text or 'no details'}" + (f" ({code})" if code else "")
    if status == 429:
        return None  # the default: RateLimited, retryable, honouring Retry-After
    if code in ("too_many_requests", "rate_limit_error") or text.startswith("Too many requests"):
        # The app concurrency limit became a 400 invalid_param in 0.14.2 (§6.2).
        return RateLimited(shown, status=status, retryable=True)
    if code == "provider_quota_exceeded":
        return RateLimited(shown, status=status, hint=HINTS[code])
    if status == 401:
        return AuthError(shown, status=status, hint="check DIFY_API_KEY (an app key, app-...)")
    if status == 403:
        if code == "workflow_version_execution_not_allowed":
            return ProviderError(shown, status=status)
        return AuthError(shown, status=status, hint=HINTS["forbidden"])
    if status == 404:
        if text.startswith("Conversation Not Exists"):
            return NotFound(shown, status=status, hint="it was deleted on the server, or it belongs to another "
                            f"DIFY_USER; {NEW_CONVERSATION}")
        if code == "not_found" and text.startswith(("The app", "App ")):
            return NotFound(shown, status=status, hint=HINTS["forbidden"])
        return NotFound(shown, status=status, hint="check DIFY_BASE_URL (the service API ends in /v1)")
    if code == "completion_request_error" and "Rate Limit" in text:
        return RateLimited(shown, status=status, hint=HINTS[code])
    if 400 <= status < 500:
        return ProviderError(shown, status=status, hint=HINTS.get(code or ""))
    return None  # 5xx and the rest: the default (retryable where it makes sense)


def in_band_error(obj: dict[str, Any]) -> ProviderError:
    """An `error` event (§3.3): the answer failed after the stream started."""
    code = obj.get("code")
    text = clean_message(obj.get("message")) or "the answer failed"
    shown = f"dify: {text}" + (f" ({code})" if code else "")
    return ProviderError(shown, status=None, hint=HINTS.get(str(code)))
