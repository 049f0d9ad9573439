"""Parallel use and crashes: 32 concurrent ask/continue on one state directory, and a
store writer SIGKILLed at random instants, 200 times. Nothing lost, nothing torn."""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from pathlib import Path

import orjson
import pytest

from reliability import harness
from reliability.faults import FaultServer
from reliability.wire import OPENAI

PARALLEL = 32
KILLS = int(os.environ.get("CHATCLI_KILLS", "200"))


def _all_parse(home: Path) -> int:
    n = 0
    for path in home.rglob("*.json"):
        orjson.loads(path.read_bytes())
        n += 1
    assert not list(home.rglob("*.corrupt-*")), "a file was moved aside as corrupt"
    return n


def test_32_concurrent_ask_and_continue(cli) -> None:
    with FaultServer(OPENAI) as fs:
        fs.fault = "ok"
        # Four conversations to continue, made one by one.
        seeds = []
        for i in range(4):
            r = cli("ask", *fs.args(), "--jsonl", f"seed {i}", env=fs.env())
            assert r.code == 0, r
            seeds.append(r.events[-1]["conversation_id"])
        procs = []
        for i in range(PARALLEL):
            if i % 2 == 0:
                args = ["ask", *fs.args(), "--jsonl", f"new {i}"]
            else:
                args = ["continue", "--cid", seeds[i % 4], "--jsonl", f"more {i}"]
            procs.append((args, harness.spawn(cli, args, fs.env())))
        results = []
        for args, p in procs:
            out, err = p.communicate(timeout=120)
            harness.secrets_guard.record("parallel", out, err)
            results.append((args, p.returncode, out.decode(), err.decode()))
    for args, code, out, err in results:
        assert code == 0, (args, out, err)
        assert "Traceback" not in err
    _all_parse(cli.home)
    convs = {c["conversation_id"]: c for c in harness.conversations(cli)}
    assert len(convs) == 4 + PARALLEL // 2, sorted(convs)
    # Every prompt and every answer is stored, in the conversation it was sent to. (Read the
    # files: two continues from one parent are sibling branches, and `history ID` shows one thread.)
    from chatcli import store as st

    store = st.Store(cli.home)
    prompts: dict[str, list[str]] = {}
    for cid in convs:
        msgs = store.load(cid)["messages"]
        assert all(m["status"] == "complete" for m in msgs), msgs
        assert not [m for m in msgs if m.get("_checkpoint")], "a stale checkpoint was left"
        users = [m for m in msgs if m["role"] == "user"]
        answers = [m for m in msgs if m["role"] == "assistant"]
        prompts[cid] = [m["text"] for m in users]
        assert sorted(a["parent_id"] for a in answers) == sorted(u["message_id"] for u in users), msgs
        assert len(msgs) == convs[cid]["messages"]
    for seed in seeds:
        i0 = seeds.index(seed)
        assert sorted(prompts[seed]) == sorted([f"seed {i0}"] + [f"more {i}" for i in range(PARALLEL) if i % 2
                                                                 and i % 4 == i0]), prompts[seed]
    news = sorted(p for c, ps in prompts.items() if c not in seeds for p in ps)
    assert news == sorted(f"new {i}" for i in range(0, PARALLEL, 2))


def _writer_loop(home: Path, report_fd: int, seed: int) -> None:
    """In a forked child: store writes in a loop, reporting each completed one."""
    from chatcli import store as st

    s = st.Store(home)
    cid = "conv-kill"
    rng = random.Random(seed)
    while True:
        try:
            conv = s.load(cid)
        except Exception:
            conv = st.new_conversation(cid, {"provider": "openai"})
        mid = str(uuid.uuid4())
        conv["messages"].append({"message_id": mid, "parent_id": conv.get("current"), "role": "user",
                                 "text": "x" * rng.randint(1, 20000), "created_at": st.now_iso(),
                                 "status": "complete"})
        conv["current"] = mid
        s.save(conv, last=True)
        s.add_inflight({"pid": os.getpid(), "conversation_id": cid, "started_at": st.now_iso()})
        s.remove_inflight(os.getpid())
        os.write(report_fd, (mid + "\n").encode())


def test_sigkill_at_random_points_of_state_writes(home: Path) -> None:
    from chatcli import store as st

    rng = random.Random(1234)
    saved: list[str] = []
    kills = 0
    for i in range(KILLS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(r)
                _writer_loop(home, w, i)
            finally:
                os._exit(0)
        os.close(w)
        time.sleep(rng.uniform(0.0, 0.1))  # one save is ~4 fsyncs (~35 ms here)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        kills += 1
        with os.fdopen(r, "rb") as f:
            saved += [line.decode() for line in f.read().splitlines() if len(line) == 36]
        # After every kill: everything parses and every completed write is there.
        s = st.Store(home)
        if (home / "conversations" / "conv-kill.json").exists():
            conv = s.load("conv-kill")
            ids = {m["message_id"] for m in conv["messages"]}
            assert set(saved) <= ids, f"kill {i}: {len(set(saved) - ids)} completed writes lost"
            if saved:  # (a kill between a first save's files may leave last.json unwritten)
                assert s.last() == "conv-kill"
            assert [c["conversation_id"] for c in s.list()] == ["conv-kill"]
        _all_parse(home)
    assert kills == KILLS
    assert len(saved) > KILLS // 10, f"only {len(saved)} writes completed: the kills came too early"
    print(f"\n{kills} SIGKILLs survived, {len(saved)} completed writes, 0 lost")
