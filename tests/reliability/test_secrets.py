"""Secrets: tokens never in state, stdout, stderr, --raw, exception text or history;
Authorization and access_token= redacted everywhere; a readable config holding a key is
warned about. (Every output of the suite is also grepped by secrets_guard.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatcli.errors import ChatCliError, ProviderError, redact, register_secret
from reliability import harness
from reliability.faults import FAULTS, FaultServer
from reliability.secrets_guard import TOKEN
from reliability.wire import WIRES


def _providers():
    # Every provider is part of chatcli: a missing module is a failure, not a skip.
    return list(WIRES)


def _reflect_auth(w, ex):
    """A hostile server: its error page quotes the request's credentials back."""
    auth = ex.headers.get("authorization", "") or ex.headers.get("x-api-key", "")
    body, ctype = w.error_body(401, f"invalid credentials: Authorization: {auth} token={w.token} {w.token}")
    ex.send(401, body, {"WWW-Authenticate": f'Bearer realm="{w.token}"'}, ctype)


def _with_field(frame: bytes, key: str, value: str) -> bytes:
    """The frame with one more key in its JSON data (the answer text left alone)."""
    import json

    head, data = frame.split(b"data:", 1)
    obj = json.loads(data)
    obj[key] = value
    return head + b"data: " + json.dumps(obj).encode() + b"\n\n"


def _reflect_in_stream(w, ex):
    """The token inside wire events, outside the answer text (as in a ChatGPT
    `wss_url ...?access_token=`): --raw shows wire events, so it must redact them."""
    ex.start(200)
    ex.write(w.preamble())
    ex.write(_with_field(w.delta("fine"), "debug_url", "https://h/x?access_token=" + w.token))
    ex.write(w.ending("fine"))


FAULTS["reflect_auth"] = _reflect_auth
FAULTS["reflect_in_stream"] = _reflect_in_stream


@pytest.mark.parametrize("provider", _providers())
@pytest.mark.parametrize("mode", ["text", "--jsonl", "--raw"])
def test_credentials_quoted_back_by_the_server_are_redacted(cli, provider: str, mode: str) -> None:
    wire = WIRES[provider]
    with FaultServer(wire) as fs:
        fs.fault = "reflect_auth"
        args = ["ask", *fs.args(), "--retries", "0", *([mode] if mode != "text" else []), "hi"]
        r = harness.run(cli, args, env=fs.env())
        sent = fs.answer_requests[0].headers
    assert wire.token in str(sent), "the fake token should have been sent"
    assert r.code == 3, r
    out = r.stdout + r.stderr
    assert wire.token not in out and not TOKEN.search(out), r
    assert "[REDACTED]" in r.stderr, r.stderr
    for path in cli.home.rglob("*"):
        if path.is_file():
            assert wire.token.encode() not in path.read_bytes(), path
    hist = cli("history", harness.conversations(cli)[0]["conversation_id"], "--jsonl")
    assert wire.token not in hist.stdout + hist.stderr


@pytest.mark.parametrize("provider", _providers())
def test_raw_wire_events_are_redacted(cli, provider: str) -> None:
    wire = WIRES[provider]
    with FaultServer(wire) as fs:
        fs.fault = "reflect_in_stream"
        r = harness.run(cli, ["ask", *fs.args(), "--retries", "0", "--raw", "hi"], env=fs.env())
    assert r.code == 0, r
    assert wire.token not in r.stdout and "access_token=[REDACTED]" in r.stdout, r


def test_redact_patterns() -> None:
    cases = {
        "Authorization: Bearer sk-SECRET-a1b2c3d4": "sk-SECRET",
        "authorization: Basic dXNlcjpwYXNzd29yZA==": "dXNlcjpw",
        '{"Authorization": "Token tok-SECRET-zz"}': "tok-SECRET",
        "wss://h/client/hubs/c?access_token=eyJSECRET-h.eyJSECRET-p.SECRET-s&x=1": "SECRET",
        "x-api-key: pat_SECRET_coze_99": "pat_SECRET",
        "key app-SECRET-dify-123 used": "app-SECRET",
        "jwt eyJSECRET-chatgpt-header.eyJSECRET-payload.SECRET-signature": "SECRET",
    }
    for text, secret in cases.items():
        assert secret not in redact(text), (text, redact(text))
    assert redact("the authorization step failed") == "the authorization step failed"


def test_exception_text_is_redacted() -> None:
    register_secret("tok-SECRET-registered-plain")
    exc = ProviderError("failed with tok-SECRET-registered-plain and Bearer sk-SECRET-x9y8z7w6",
                        hint="Authorization: Basic Zm9vOmJhcg==")
    for text in (str(exc), exc.message, repr(exc), exc.hint or ""):
        assert "SECRET" not in text and "Zm9vOmJhcg" not in text, text
    assert isinstance(exc, ChatCliError)


def _config(cli, mode: int) -> Path:
    cli.home.mkdir(parents=True, exist_ok=True)
    path = cli.home / "config.toml"
    path.write_text("[profiles.p]\nprovider = 'openai'\nmodel = 'm'\napi_key = 'sk-SECRET-from-config-77'\n")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o600])
def test_readable_config_with_a_key_is_warned_about(cli, mode: int) -> None:
    path = _config(cli, mode)
    with FaultServer(WIRES["openai"]) as fs:
        fs.fault = "ok"
        r = harness.run(cli, ["ask", "--profile", "p", "--base-url", fs.base_url, "--jsonl", "hi"])
        sent = fs.answer_requests[0].headers.get("authorization")
    assert r.code == 0, r
    assert sent == "Bearer sk-SECRET-from-config-77"
    warned = f"{path} holds a secret and is readable by others; run: chmod 600 {path}" in r.stderr
    assert warned == (mode != 0o600), r.stderr
    assert "sk-SECRET-from-config" not in r.stdout + r.stderr


def test_warn_if_readable_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chatcli.config import _warn_if_readable

    p = tmp_path / "config.toml"
    p.write_text("x = 1\n")
    p.chmod(0o600)
    _warn_if_readable(p)
    assert capsys.readouterr().err == ""
    p.chmod(0o660)
    _warn_if_readable(p)
    assert "readable by others" in capsys.readouterr().err
    _warn_if_readable(tmp_path / "missing.toml")  # no file: no warning, no error
    assert capsys.readouterr().err == ""


def test_the_guard_fails_a_session_that_leaks(tmp_path: Path) -> None:
    """secrets_guard itself: a session whose output carries a fake token fails."""
    (tmp_path / "test_leak.py").write_text(
        "from reliability import secrets_guard\n"
        "def test_leaks():\n"
        "    secrets_guard.record('demo', 'oops sk-SECRET-leaked-123 in stderr')\n"
    )
    tests_dir = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=f"{tests_dir}{os.pathsep}{tests_dir.parent}")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "reliability.secrets_guard", "-p",
                        "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "LEAK demo: sk-SECRET-leaked-123" in r.stdout, r.stdout
    assert "1 passed" in r.stdout
