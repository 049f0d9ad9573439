"""Local state under real processes: `stop` from another shell, stale records, parallel
writers, SIGKILL at random moments, file modes, secrets (CONTRACT.md "State")."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from loopback import openai as fo

SECRET = "sk-SECRET-state-31337"


def parse_all(home: Path) -> list[Path]:
    """Every state file parses as JSON (temporary files aside); returns the conversation files."""
    for path in home.rglob("*"):
        if path.is_file() and not path.name.endswith(".tmp") and path.name not in (".lock", "config.toml"):
            json.loads(path.read_bytes())
    return sorted((home / "conversations").glob("*.json"))


def spawn_slow(cli, fake, *extra, gap=0.2, n=200, env=None):
    fake.push(fo.slow_answer([f"w{i} " for i in range(n)], gap))
    return cli.spawn("ask", "-p", "openai", "--base-url", fake.base_url, "--jsonl", *extra, "tell me a story",
                     env=env)


def first_delta(proc) -> list[dict]:
    lines = [json.loads(proc.stdout.readline())]
    while lines[-1]["type"] != "delta":
        lines.append(json.loads(proc.stdout.readline()))
    return lines


def test_stop_from_a_second_process(cli, server, home):
    fake = fo.FakeOpenAI(server)
    proc = spawn_slow(cli, fake)
    lines = first_delta(proc)
    assert len(list((home / "inflight").glob("*.json"))) == 1
    r = cli("stop")
    assert r.code == 0, r
    assert "stopped" in r.stderr and lines[0]["conversation_id"] in r.stderr
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    lines += [json.loads(line) for line in out.decode().splitlines()]
    assert lines[-1]["type"] == "done" and lines[-1]["finish_reason"] == "stopped"
    text = "".join(e["text"] for e in lines if e["type"] == "delta")
    assert text and lines[-1]["text"] == text
    (path,) = parse_all(home)
    msg = json.loads(path.read_text())["messages"][-1]
    assert (msg["role"], msg["status"], msg["text"]) == ("assistant", "stopped", text)
    assert not list((home / "inflight").glob("*.json"))
    assert server.wait_for(lambda: len(server.disconnects) == 1)
    # nothing left to stop
    assert cli("stop").code == 2


def test_stop_by_cid_picks_the_right_answer(cli, server, home):
    fake = fo.FakeOpenAI(server)
    a, b = spawn_slow(cli, fake), None
    first_delta(a)
    b = spawn_slow(cli, fake)
    b_lines = first_delta(b)
    r = cli("stop", "--cid", b_lines[0]["conversation_id"][:8])
    assert r.code == 0, r
    b.communicate(timeout=20)
    assert b.returncode == 130
    assert a.poll() is None  # the other answer goes on
    r = cli("stop")
    assert r.code == 0
    a.communicate(timeout=20)
    assert a.returncode == 130


def test_stop_for_a_dead_process_cleans_up(cli, home):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home / "inflight").mkdir(parents=True)
    rec = home / "inflight" / f"{dead.pid}.json"
    rec.write_text(json.dumps({"version": 1, "pid": dead.pid, "proc_start": None, "provider": "openai",
                               "conversation_id": "conv-gone", "started_at": "2026-01-01T00:00:00Z",
                               "stop": None}))
    r = cli("stop")
    assert r.code == 2, r
    assert "no longer exists" in r.stderr and "cleaned up" in r.stderr and "conv-gone" in r.stderr
    assert not rec.exists()
    r = cli("stop")
    assert r.code == 2 and "no longer exists" not in r.stderr


def test_sixteen_parallel_asks_lose_nothing(cli, server, home):
    fake = fo.FakeOpenAI(server)
    procs = [cli.spawn("ask", "-p", "openai", "--base-url", fake.base_url, "--jsonl", f"question {i}")
             for i in range(16)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, [o[1] for o in outs]
    files = parse_all(home)
    assert len(files) == 16
    prompts = set()
    for path in files:
        conv = json.loads(path.read_text())
        assert [(m["role"], m["status"]) for m in conv["messages"]] == [("user", "complete"),
                                                                       ("assistant", "complete")]
        prompts.add(conv["messages"][0]["text"])
    assert prompts == {f"question {i}" for i in range(16)}
    index = json.loads((home / "index.json").read_text())["conversations"]
    assert len(index) == 16
    r = cli("history", "--jsonl")
    assert len(r.events) == 16


def test_parallel_continues_of_one_conversation_lose_nothing(cli, server, home):
    fake = fo.FakeOpenAI(server)
    assert cli("ask", "-p", "openai", "--base-url", fake.base_url, "root").code == 0
    procs = [cli.spawn("continue", f"branch {i}") for i in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1] for o in outs]
    (path,) = parse_all(home)
    conv = json.loads(path.read_text())
    users = sorted(m["text"] for m in conv["messages"] if m["role"] == "user")
    assert users == sorted(["root"] + [f"branch {i}" for i in range(8)])
    assert len(conv["messages"]) == 18
    assert json.loads((home / "index.json").read_text())["conversations"][conv["conversation_id"]]["messages"] == 18


def test_sigkill_at_random_moments_leaves_a_loadable_state(cli, server, home):
    fake = fo.FakeOpenAI(server)
    rng = random.Random(1234)
    for round_ in range(4):
        proc = spawn_slow(cli, fake, gap=0.05, n=400)
        first_delta(proc)
        time.sleep(rng.uniform(0.0, 1.6))  # not a timing assert: a random moment to kill at
        proc.kill()
        proc.wait()
        files = parse_all(home)
        assert len(files) == round_ + 1
        for path in files:
            conv = json.loads(path.read_text())
            assert conv["messages"][0]["role"] == "user"
            for m in conv["messages"][1:]:
                assert m["status"] in ("failed", "complete") and isinstance(m["text"], str)
    r = cli("history", "--jsonl")
    assert r.code == 0 and len(r.events) == 4
    # the dead owners' records are stale: stop cleans them up
    r = cli("stop")
    assert r.code == 2 and "no longer exists" in r.stderr
    assert not list((home / "inflight").glob("*.json"))
    # and the state still works for the next turn
    r = cli("continue", "--jsonl", "after the kills")
    assert r.code == 0, r


def test_file_and_directory_modes(cli, server, home):
    fake = fo.FakeOpenAI(server)
    old = os.umask(0)
    try:
        assert cli("ask", "-p", "openai", "--base-url", fake.base_url, "hi").code == 0
        proc = spawn_slow(cli, fake)
        first_delta(proc)
        modes = {p.relative_to(home): stat.S_IMODE(p.stat().st_mode) for p in [home, *home.rglob("*")]}
        proc.kill()
        proc.wait()
    finally:
        os.umask(old)
    assert Path("inflight") in modes and Path("index.json") in modes
    for rel, mode in modes.items():
        want = 0o700 if (home / rel).is_dir() else 0o600
        assert mode == want, (rel, oct(mode))


def test_no_secret_in_any_state_file(cli, server, home):
    fake = fo.FakeOpenAI(server)
    env = {"OPENAI_API_KEY": SECRET}
    assert cli("ask", "-p", "openai", "--base-url", fake.base_url, "hi", env=env).code == 0
    # a server that echoes the key back in its error message
    fake.push(fo.http_error(401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}))
    r = cli("continue", "again", env=env)
    assert r.code == 3 and SECRET not in r.stderr + r.stdout
    fake.push(fo.stream(fo.frames([fo.chunk("x"), {"error": {"message": f"bad key {SECRET}"}}], done=False)))
    r = cli("continue", "--jsonl", "once more", env=env)
    assert r.code == 6 and SECRET not in r.stderr + r.stdout
    proc = spawn_slow(cli, fake, env=env)
    first_delta(proc)
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.parent.name == "inflight" for p in files)
    texts = [p.read_bytes() for p in files]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    texts += [p.read_bytes() for p in home.rglob("*") if p.is_file()]
    assert fake.chat_requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    for data in texts:
        assert SECRET.encode() not in data


def test_corrupt_last_file_is_a_state_error(cli, server, home):
    fake = fo.FakeOpenAI(server)
    assert cli("ask", "-p", "openai", "--base-url", fake.base_url, "hi").code == 0
    (home / "last.json").write_bytes(b"{torn")
    r = cli("continue", "again")
    assert r.code == 7, r
    assert list(home.glob("last.json.corrupt-*"))


def test_parallel_continues_with_checkpoints_keep_one_answer_each(cli, server, home):
    """Two long answers into one conversation, each checkpointed, then both stopped."""
    fake = fo.FakeOpenAI(server)
    assert cli("ask", "-p", "openai", "--base-url", fake.base_url, "root").code == 0
    fake.push(fo.slow_answer([f"a{i} " for i in range(400)], 0.05), fo.slow_answer([f"b{i} " for i in range(400)], 0.05))
    procs = [cli.spawn("continue", "--jsonl", f"branch {i}") for i in range(2)]
    for p in procs:
        first_delta(p)
    # wait until both have checkpointed (a partial answer of each is in the file)
    def both_checkpointed() -> bool:
        (path,) = parse_all(home)
        return sum(1 for m in json.loads(path.read_text())["messages"] if m.get("_checkpoint")) == 2
    assert server.wait_for(both_checkpointed, timeout=20)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.communicate(timeout=20)
        assert p.returncode == 130
    (path,) = parse_all(home)
    conv = json.loads(path.read_text())
    answers = [m for m in conv["messages"] if m["role"] == "assistant"]
    assert len(conv["messages"]) == 6
    assert sorted(m["status"] for m in answers) == ["complete", "stopped", "stopped"]
    assert not any(m.get("_checkpoint") for m in answers)


SIGNAL_DURING_SAVE = r'''
import os, signal, sys
from chatcli import events as ev, providers, store as st
from chatcli.config import Options
from chatcli.providers.base import Provider
from chatcli.run import TurnRequest, run_turn

class Quick(Provider):
    name = "openai"
    def stream(self, turn):
        yield ev.Start(provider="openai")
        yield ev.Delta("done already")
        yield ev.Done()

real_save = st.Store.save
def save(self, conv, **kw):
    real_save(self, conv, **kw)
    if conv["messages"][-1].get("status") == "complete" and conv["messages"][-1]["role"] == "assistant":
        os.kill(os.getpid(), signal.SIG)  # `chatcli stop` arriving just as the answer is saved
st.Store.save = save
providers.load = lambda name: Quick
sys.exit(run_turn(TurnRequest(prompt="hi", mode="jsonl", options=Options(provider="openai"))))
'''


def test_a_stop_that_arrives_while_the_finished_answer_is_saved_is_harmless(cli, home, tmp_path):
    """The answer is complete: a late SIGTERM/SIGINT must not kill the process before `done`."""
    for sig in ("SIGTERM", "SIGINT"):
        code = SIGNAL_DURING_SAVE.replace("signal.SIG)", f"signal.{sig})")
        out = subprocess.run([sys.executable, "-c", code], env=cli.env, capture_output=True, timeout=30)
        assert out.returncode == 0, (sig, out)
        events = [json.loads(line) for line in out.stdout.splitlines()]
        assert events[-1]["type"] == "done" and events[-1]["text"] == "done already"
