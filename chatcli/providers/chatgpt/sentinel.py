"""Sentinel (spec §2): chat-requirements, its proof of work, and the send-call headers.

Pure parts: `requirements_token()` (the `p` of the chat-requirements body, §2.1/§2.3 step 4),
`solve(seed, difficulty)` (the proof-of-work search of §2.3, bounded in tries and time),
`verify(token, seed, difficulty)` (what a server checks; the loopback server uses it), and
`headers_for(answer)` turning the chat-requirements answer into the §2.5 headers, raising a
clear error when a Turnstile or Arkose challenge is required (chatcli cannot solve those).
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
import uuid
from typing import Any

import orjson

from chatcli.errors import AuthError, ProviderError

PROOF_PREFIX = "gAAAAAB"
REQUIREMENTS_PREFIX = "gAAAAAC"
MAX_TRIES = 500_000
MAX_SECONDS = 20.0
PROXY_HINT = (
    "chatgpt.com asks for a browser challenge this client cannot answer; point CHATGPT_BASE_URL "
    "(or --base-url) at a backend-api proxy that handles the sentinel, e.g. http://127.0.0.1:5005/backend-api"
)

_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"


def browser_config() -> list[Any]:
    """The imitation of what the web page collects (§2.3 step 1; not validated strictly)."""
    now = time.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", time.gmtime())
    return [
        3000, now, 4294705152, 0, _USER_AGENT,
        "https://cdn.oaistatic.com/_next/static/chunks/main.js", "dpl=chatcli", "en-US", "en-US,en",
        0, "webdriver\u2212false", "location", "__next_f", 1000.0, str(uuid.uuid4()),
    ]


def _answer(config: list[Any], i: int) -> str:
    config[3] = i
    config[9] = i >> 1
    return base64.b64encode(orjson.dumps(config)).decode()


def _ok(seed: str, answer: str, difficulty: str) -> bool:
    digest = hashlib.sha3_512((seed + answer).encode()).hexdigest()
    return digest[: len(difficulty)] <= difficulty


def solve(seed: str, difficulty: str, *, max_tries: int = MAX_TRIES, max_seconds: float = MAX_SECONDS,
          config: list[Any] | None = None) -> str | None:
    """The base64 answer whose SHA3-512(seed + answer) hex prefix is <= difficulty, or None."""
    config = list(config or browser_config())
    seed_b = seed.encode()
    n = len(difficulty)
    target = difficulty.lower()
    deadline = time.monotonic() + max_seconds
    for i in range(max_tries):
        answer = _answer(config, i)
        if hashlib.sha3_512(seed_b + answer.encode()).hexdigest()[:n] <= target:
            return answer
        if i & 1023 == 1023 and time.monotonic() > deadline:
            break
    return None


def verify(token: str, seed: str, difficulty: str) -> bool:
    """Spec §2.3 test-server hint: strip the prefix, recompute, compare the hex prefix."""
    if not token.startswith(PROOF_PREFIX):
        return False
    return _ok(seed, token[len(PROOF_PREFIX):], difficulty.lower())


def requirements_token() -> str:
    """`gAAAAAC` + an answer for a random seed at difficulty 0fffff (§2.3 step 4)."""
    answer = solve(str(random.random()), "0fffff", max_seconds=5.0)
    return REQUIREMENTS_PREFIX + (answer or base64.b64encode(orjson.dumps(browser_config())).decode())


def proof_token(seed: str, difficulty: str, **kw: Any) -> str:
    answer = solve(seed, difficulty, **kw)
    if answer is None:
        raise ProviderError(
            f"chatgpt: could not solve the sentinel's proof-of-work challenge (difficulty {difficulty}) "
            f"within {kw.get('max_tries', MAX_TRIES)} tries",
            hint=PROXY_HINT,
        )
    return PROOF_PREFIX + answer


def headers_for(answer: Any, **solve_kw: Any) -> dict[str, str]:
    """The §2.5 headers for the send call, from the chat-requirements answer of §2.2."""
    if not isinstance(answer, dict):
        return {}
    if answer.get("force_login"):
        raise AuthError("chatgpt: the server wants a fresh login (force_login)",
                        hint="sign in at chatgpt.com and set a new CHATGPT_ACCESS_TOKEN")
    headers: dict[str, str] = {}
    token = answer.get("token")
    if isinstance(token, str) and token:
        headers["Openai-Sentinel-Chat-Requirements-Token"] = token
    for name in ("turnstile", "arkose"):
        part = answer.get(name)
        if isinstance(part, dict) and part.get("required"):
            raise AuthError(f"chatgpt: the server requires a {name.capitalize()} challenge, which chatcli cannot solve",
                            hint=PROXY_HINT)
    pow_ = answer.get("proofofwork")
    if isinstance(pow_, dict) and pow_.get("required"):
        seed, difficulty = pow_.get("seed"), pow_.get("difficulty")
        if not isinstance(seed, str) or not isinstance(difficulty, str) or not difficulty:
            raise ProviderError("chatgpt: the proof-of-work challenge has no seed or difficulty")
        headers["Openai-Sentinel-Proof-Token"] = proof_token(seed, difficulty, **solve_kw)
    return headers
