"""Interruption: Ctrl-C / SIGTERM while connecting, while streaming, during a state write;
`chatcli stop` racing the natural end; two stops at once; stop for a SIGKILLed owner; and a
real terminal under tmux (send-keys C-c).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from conftest import require

from reliability import harness
from reliability.faults import FAULTS, PARTIAL, FaultServer
from reliability.wire import OPENAI, WIRES

ITERATIONS = int(os.environ.get("CHATCLI_STRESS", "1"))


class Owner:
    """A spawned `chatcli ask --jsonl` whose stdout lines are collected as they come."""

    def __init__(self, cli, args: list[str], env: dict[str, str]) -> None:
        self.proc = harness.spawn(cli, args, env)
        self.lines: list[str] = []
        self.err: list[bytes] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self._e = threading.Thread(target=harness._reader, args=(self.proc.stderr, self.err), daemon=True)
        self._e.start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.append(line.decode())

    def wait_line(self, needle: str, timeout: float = 20) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(needle in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        return any(needle in line for line in self.lines)

    def finish(self, timeout: float = 30) -> tuple[int, list[dict], str]:
        code, _ = harness.reap(self.proc, timeout)
        self._t.join(5)
        self._e.join(5)
        stderr = b"".join(self.err).decode()
        harness.secrets_guard.record("owner", "".join(self.lines), stderr)
        return code, [orjson.loads(line) for line in self.lines if line.strip()], stderr


def _owner(cli, fs: FaultServer, *extra: str, timeout: str = "30") -> Owner:
    return Owner(cli, ["ask", *fs.args(), "--jsonl", "--retries", "0", "--timeout", timeout, *extra, "hi"], fs.env())


def _assert_stopped(code: int, events: list[dict], stderr: str, cli, text: str) -> None:
    assert code == 130, stderr
    assert "Traceback" not in stderr and harness.error_lines(stderr) == [], stderr
    assert events[0]["type"] == "start" and events[-1]["type"] == "done", events
    assert events[-1]["finish_reason"] == "stopped" and events[-1]["text"] == text, events[-1]
    msgs = harness.messages(cli)
    assert msgs[-1]["role"] == "assistant" and msgs[-1]["status"] == "stopped" and msgs[-1]["text"] == text, msgs
    assert not list((cli.home / "inflight").glob("*.json")), "the in-flight record was left behind"


def _providers():
    # Every provider is part of chatcli: a missing module is a failure, not a skip.
    return list(WIRES)


@pytest.mark.parametrize("provider", _providers())
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_connecting(cli, provider: str, sig: int) -> None:
    with FaultServer(WIRES[provider]) as fs:
        fs.fault = "stall_before_headers"
        owner = _owner(cli, fs)
        assert fs.srv.wait_for(lambda: len(fs.answer_requests) >= 1, 20)
        owner.proc.send_signal(sig)
        code, events, stderr = owner.finish()
        assert fs.srv.wait_for(lambda: len(fs.srv.disconnects) >= 1 or True, 1)
    _assert_stopped(code, events, stderr, cli, "")


@pytest.mark.parametrize("provider", _providers())
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_streaming(cli, provider: str, sig: int) -> None:
    with FaultServer(WIRES[provider]) as fs:
        fs.fault = "stall_mid_answer"
        owner = _owner(cli, fs)
        assert owner.wait_line('"delta"'), owner.lines
        owner.proc.send_signal(sig)
        code, events, stderr = owner.finish()
    _assert_stopped(code, events, stderr, cli, PARTIAL)


def _big_conversation(home: Path, mb: int) -> str:
    """A stored openai conversation of about `mb` MB, written with chatcli's own store."""
    from chatcli import store as st

    s = st.Store(home)
    conv = st.new_conversation(str(uuid.uuid4()), {"provider": "openai", "model": "m"})
    parent = None
    chunk = "lorem ipsum dolor sit amet " * 4000  # ~108 kB
    for i in range(mb * 10):
        mid = str(uuid.uuid4())
        conv["messages"].append({"message_id": mid, "parent_id": parent, "role": "user" if i % 2 == 0 else "assistant",
                                 "text": chunk, "created_at": st.now_iso(), "status": "complete"})
        parent = mid
    conv["current"] = parent
    conv["title"] = "big"
    s.save(conv, last=True)
    return conv["conversation_id"]


def _all_state_parses(home: Path) -> int:
    n = 0
    for path in home.rglob("*.json"):
        orjson.loads(path.read_bytes())  # raises on a torn file
        n += 1
    assert not [p for p in home.rglob("*.corrupt-*")], "something was moved aside as corrupt"
    return n


def test_signal_storm_during_state_writes(cli) -> None:
    """SIGTERM every few ms while a ~20 MB conversation is being saved: never a torn file,
    the exit code agrees with the saved status, nothing is lost."""
    cid = _big_conversation(cli.home, 20)
    before = orjson.loads((cli.home / "conversations" / f"{cid}.json").read_bytes())
    with FaultServer(OPENAI) as fs:
        fs.fault = "ok"
        proc = harness.spawn(cli, ["continue", *fs.args(), "--jsonl", "--retries", "0", "next"], fs.env())
        out: list[bytes] = []
        t = threading.Thread(target=harness._reader, args=(proc.stdout, out), daemon=True)
        t.start()
        inflight = cli.home / "inflight"
        # Storm from the moment the turn's first write (user message + in-flight record) began.
        end = time.monotonic() + 30
        while time.monotonic() < end and proc.poll() is None and not any(inflight.glob("*.json")):
            time.sleep(0.002)
        sent = 0
        while proc.poll() is None and time.monotonic() < end:
            try:
                proc.send_signal(signal.SIGTERM)
                sent += 1
            except ProcessLookupError:
                break
            time.sleep(0.003)
        code, _ = harness.reap(proc, 30)
        t.join(5)
    _all_state_parses(cli.home)
    conv = orjson.loads((cli.home / "conversations" / f"{cid}.json").read_bytes())
    assert conv["messages"][: len(before["messages"])] == before["messages"], "stored messages were lost"
    new = conv["messages"][len(before["messages"]) :]
    assert code in (0, 130), f"exit {code} after {sent} signals"
    assert [m["role"] for m in new] == ["user", "assistant"], new
    assert new[1]["status"] == ("complete" if code == 0 else "stopped"), (code, new[1]["status"])
    assert b"Traceback" not in proc.stderr.read()


@pytest.mark.parametrize("iteration", range(8 * ITERATIONS))
def test_stop_races_the_natural_end(cli, iteration: int) -> None:
    """`chatcli stop` fired at a random instant around the end of a short answer."""

    def short_answer(w, ex):
        ex.start(200)
        ex.write(w.preamble())
        for part in ("one ", "two ", "three"):
            ex.write(w.delta(part))
            time.sleep(0.02)
        ex.write(w.ending("one two three"))

    FAULTS.setdefault("short_answer", short_answer)
    rng = random.Random(iteration)
    with FaultServer(OPENAI) as fs:
        fs.fault = "short_answer"
        owner = _owner(cli, fs)
        assert fs.srv.wait_for(lambda: len(fs.answer_requests) >= 1, 20)
        time.sleep(rng.uniform(0.0, 0.15))
        stop = cli("stop")
        code, events, stderr = owner.finish()
    assert stop.code in (0, 2), stop
    assert "Traceback" not in stderr + stop.stderr
    assert code in (0, 130), stderr
    _all_state_parses(cli.home)
    msgs = harness.messages(cli)
    last = msgs[-1]
    assert events[-1]["type"] == "done"
    if code == 130:
        assert last["status"] == "stopped" and events[-1]["finish_reason"] == "stopped"
        assert "one two three".startswith(last["text"])
    else:
        assert last["status"] == "complete" and last["text"] == "one two three"
        assert events[-1]["finish_reason"] == "stop"
    assert events[-1]["text"] == last["text"]
    assert not list((cli.home / "inflight").glob("*.json"))


def test_two_stops_at_once(cli) -> None:
    with FaultServer(OPENAI) as fs:
        fs.fault = "stall_mid_answer"
        owner = _owner(cli, fs)
        assert owner.wait_line('"delta"')
        stops = [harness.spawn(cli, ["stop"]) for _ in range(2)]
        results = [(p.wait(20), p.stderr.read().decode()) for p in stops]
        for p in stops:
            p.stdout.close()
            p.stderr.close()
        code, events, stderr = owner.finish()
    for c, err in results:
        harness.secrets_guard.record("stop", err)
        assert "Traceback" not in err
    codes = sorted(c for c, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for c, err in results:
        if c == 2:
            assert "nothing in flight" in err, err
    _assert_stopped(code, events, stderr, cli, PARTIAL)


def test_stop_for_a_sigkilled_owner(cli) -> None:
    with FaultServer(OPENAI) as fs:
        fs.fault = "stall_mid_answer"
        owner = _owner(cli, fs)
        assert owner.wait_line('"delta"')
        # The checkpoint of the first delta follows right after it is printed.
        assert fs.srv.wait_for(lambda: any(PARTIAL.encode() in p.read_bytes()
                                           for p in (cli.home / "conversations").glob("*.json")), 10)
        owner.proc.kill()
        code, _, _ = owner.finish()
    assert code == -signal.SIGKILL
    assert list((cli.home / "inflight").glob("*.json")), "the record should still be there"
    r = cli("stop")
    assert r.code == 2, r
    assert len(harness.error_lines(r.stderr)) == 1
    assert "no longer exists" in r.stderr and "cleaned up" in r.stderr, r.stderr
    assert not list((cli.home / "inflight").glob("*.json"))
    again = cli("stop")
    assert again.code == 2 and "nothing in flight" in again.stderr, again
    # The checkpoint taken on the first delta kept the partial answer (a SIGKILL loses <= 1 s).
    msgs = harness.messages(cli)
    assert msgs[-1]["role"] == "assistant" and msgs[-1]["text"] == PARTIAL and msgs[-1]["status"] == "failed"


# ----- a real terminal ------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["connecting", "streaming"])
def test_ctrl_c_in_a_real_terminal(cli, tmp_path: Path, phase: str) -> None:
    require(shutil.which("tmux") is not None, "tmux")
    sock = f"chatcli-rel-{os.getpid()}-{phase}"
    done = tmp_path / "exit"
    with FaultServer(OPENAI) as fs:
        fs.fault = "stall_before_headers" if phase == "connecting" else "stall_mid_answer"
        env = dict(cli.env, **fs.env())
        envs = " ".join(f"{k}={_q(v)}" for k, v in env.items() if k.startswith(("CHATCLI_", "OPENAI_", "PYTHON")))
        cmd = " ".join(_q(c) for c in cli.cmd("ask", *fs.args(), "--retries", "0", "hi"))
        script = f"env {envs} {cmd}; echo $? > {_q(str(done))}; sleep 30"
        subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-x", "120", "-y", "20", script], check=True,
                       env={k: v for k, v in os.environ.items() if k != "TMUX"})
        try:
            if phase == "connecting":
                assert fs.srv.wait_for(lambda: len(fs.answer_requests) >= 1, 20)
            else:
                assert _wait_pane(sock, PARTIAL.strip()), _pane(sock)
            subprocess.run(["tmux", "-L", sock, "send-keys", "C-c"], check=True)
            end = time.monotonic() + 20
            while not done.exists() and time.monotonic() < end:
                time.sleep(0.05)
            pane = _pane(sock)
        finally:
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    harness.secrets_guard.record("tmux pane", pane)
    assert done.exists(), pane
    assert done.read_text().strip() == "130", pane
    assert "Traceback" not in pane and "chatcli: error:" not in pane, pane
    msgs = harness.messages(cli)
    assert msgs[-1]["status"] == "stopped"
    assert msgs[-1]["text"] == ("" if phase == "connecting" else PARTIAL)


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _pane(sock: str) -> str:
    r = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p"], capture_output=True, text=True)
    return r.stdout


def _wait_pane(sock: str, needle: str, timeout: float = 20) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if needle in _pane(sock):
            return True
        time.sleep(0.05)
    return False
