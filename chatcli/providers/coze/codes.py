"""Coze error codes -> chatcli errors (pure; shared/protocols/coze.md §4).

One classifier for every place Coze reports `{code, msg}`: a JSON body answering the chat
request instead of a stream (§2.2), the `error` event, `conversation.chat.failed`'s
`last_error`, v2's `error_information`, and the envelope of the non-streaming endpoints.
"""

from __future__ import annotations

from typing import Any

from chatcli.errors import AuthError, ChatCliError, NotFound, ProviderError, RateLimited

# §4: token invalid (4100), no permission / unknown token on coze.com (4101), OAuth/PAT layer.
AUTH_CODES = {4100, 4101, 700012006}
# §4: rate limits and concurrency: worth a retry after a pause.
RATE_CODES = {4009, 4013, 4020}
# §4: quotas and balances: exit 4 too, but retrying does not help.
QUOTA_CODES = {4008, 4011, 4019, 4027, 4028}
CANCEL_TOO_LATE = 4104

AUTH_HINT = (
    "check COZE_API_TOKEN (a personal access token, pat_...); a token from www.coze.com works only with "
    "https://api.coze.com and one from www.coze.cn only with https://api.coze.cn"
)
REGION_HINT = (
    "check the bot id and that the bot is published to the API channel; a bot made on coze.cn needs "
    "--base-url https://api.coze.cn (COZE_BASE_URL), one made on coze.com https://api.coze.com"
)
BUSY_HINT = "another answer is still running in this conversation: wait for it or run `chatcli stop`"


def as_code(value: Any) -> int | None:
    """Coze codes are ints; tolerate numeric strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def describe(code: Any, msg: Any, logid: str | None = None) -> str:
    text = str(msg).strip() if msg not in (None, "") else "no message"
    extra = []
    if code not in (None, ""):
        extra.append(f"code {code}")
    if logid:
        extra.append(f"logid {logid}")
    return f"{text} ({', '.join(extra)})" if extra else text


def classify(
    code: Any,
    msg: Any,
    *,
    logid: str | None = None,
    status: int | None = None,
    where: str = "coze",
    in_stream: bool = False,
) -> ChatCliError:
    """The chatcli error for a Coze `{code, msg}`.

    `in_stream`: the chat was already accepted, so a retry would post the question again;
    such errors are never marked retryable.
    """
    n = as_code(code)
    text = f"{where}: {describe(code, msg, logid)}"
    if n in AUTH_CODES:
        return AuthError(text, status=status, hint=AUTH_HINT)
    if n in RATE_CODES:
        return RateLimited(text, status=status, retryable=not in_stream)
    if n in QUOTA_CODES:
        return RateLimited(text, status=status)
    if n == 4200:
        return NotFound(text, status=status, hint=REGION_HINT)
    if n in (4001, 4002):
        return NotFound(text, status=status, hint="the conversation does not exist on this Coze site")
    if n == 4015:
        return ProviderError(text, status=status, hint="publish the bot to the API channel")
    if n == 4016:
        return ProviderError(text, status=status, hint=BUSY_HINT)
    if status in (401, 403):
        return AuthError(text, status=status, hint=AUTH_HINT)
    if status == 429:
        return RateLimited(text, status=status, retryable=not in_stream)
    # 5000 "internal error" of a rejected request may pass on retry; inside a stream it may not.
    return ProviderError(text, status=status, retryable=(n == 5000 and not in_stream))
