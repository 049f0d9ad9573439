"""Damaged state: corrupt, truncated, newer-version or unwritable files are moved aside or
reported (exit 7), never silently emptied or overwritten."""

from __future__ import annotations

import os
import subprocess

import orjson
import pytest
from conftest import require

from reliability import harness
from reliability.faults import FaultServer
from reliability.wire import OPENAI


@pytest.fixture
def fs():
    with FaultServer(OPENAI) as f:
        f.fault = "ok"
        yield f


def _seed(cli, fs) -> str:
    r = cli("ask", *fs.args(), "--jsonl", "first", env=fs.env())
    assert r.code == 0, r
    return r.events[-1]["conversation_id"]


def _conv_path(cli, cid: str):
    return cli.home / "conversations" / f"{cid}.json"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not_an_object"])
def test_damaged_conversation_is_moved_aside_and_reported(cli, fs, damage: str) -> None:
    cid = _seed(cli, fs)
    path = _conv_path(cli, cid)
    good = path.read_bytes()
    bad = {"garbage": b"\x00\xff not json {", "truncated": good[: len(good) // 2], "empty": b"",
           "not_an_object": b"[1, 2, 3]"}[damage]
    path.write_bytes(bad)
    r = harness.run(cli, ["continue", "--cid", cid, *fs.args(), "--jsonl", "again"], env=fs.env())
    assert r.code == 7, r
    assert len(harness.error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr, r
    assert "moved to" in r.stderr, r.stderr
    aside = list(path.parent.glob(path.name + ".corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad, "the damaged bytes must be kept as they were"
    # A second look does not invent an empty conversation in its place.
    r2 = cli("history", cid)
    assert r2.code == 2 and "no conversation" in r2.stderr, r2


def test_newer_version_is_reported_and_left_alone(cli, fs) -> None:
    cid = _seed(cli, fs)
    path = _conv_path(cli, cid)
    data = orjson.loads(path.read_bytes())
    data["version"] = 99
    newer = orjson.dumps(data)
    path.write_bytes(newer)
    for args in (["continue", "--cid", cid, *fs.args(), "--jsonl", "again"], ["history", cid]):
        r = harness.run(cli, args, env=fs.env())
        assert r.code == 7, r
        assert "newer chatcli" in r.stderr and len(harness.error_lines(r.stderr)) == 1, r
    assert path.read_bytes() == newer, "a newer file must never be rewritten or moved"
    assert not list(path.parent.glob("*.corrupt-*"))


def test_newer_index_is_reported_not_rebuilt(cli, fs) -> None:
    _seed(cli, fs)
    index = cli.home / "index.json"
    index.write_bytes(b'{"version": 99, "conversations": {}}')
    r = cli("history")
    assert r.code == 7 and "newer chatcli" in r.stderr, r
    assert index.read_bytes() == b'{"version": 99, "conversations": {}}'


def test_corrupt_index_is_rebuilt_from_the_conversations(cli, fs) -> None:
    cid = _seed(cli, fs)
    index = cli.home / "index.json"
    index.write_bytes(b"{broken")
    r = cli("history", "--jsonl")
    assert r.code == 0, r
    assert [c["conversation_id"] for c in r.events] == [cid]
    assert "rebuilding" in r.stderr
    assert [p.read_bytes() for p in cli.home.glob("index.json.corrupt-*")] == [b"{broken"]


def test_corrupt_last_file_is_reported_not_taken_for_nothing(cli, fs) -> None:
    _seed(cli, fs)
    last = cli.home / "last.json"
    last.write_bytes(b"\x00garbage")
    r = harness.run(cli, ["continue", *fs.args(), "--jsonl", "again"], env=fs.env())
    assert r.code == 7, r
    assert "moved to" in r.stderr and len(harness.error_lines(r.stderr)) == 1, r
    assert [p.read_bytes() for p in cli.home.glob("last.json.corrupt-*")] == [b"\x00garbage"]


def test_unreadable_conversation_file(cli, fs) -> None:
    cid = _seed(cli, fs)
    path = _conv_path(cli, cid)
    os.replace(path, path.with_suffix(".bak"))
    path.mkdir()  # EISDIR on read, whoever runs the test (root ignores chmod)
    r = harness.run(cli, ["continue", "--cid", cid, *fs.args(), "--jsonl", "again"], env=fs.env())
    assert r.code == 7 and "cannot read" in r.stderr, r
    assert len(harness.error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr


def test_unwritable_state(cli, fs) -> None:
    cid = _seed(cli, fs)
    before = _conv_path(cli, cid).read_bytes()
    (cli.home / "index.json").unlink()
    (cli.home / "index.json").mkdir()  # the rename over it fails
    r = harness.run(cli, ["continue", "--cid", cid, *fs.args(), "--jsonl", "again"], env=fs.env())
    assert r.code == 7, r
    assert "cannot write" in r.stderr and len(harness.error_lines(r.stderr)) == 1, r
    assert r.events[-1]["type"] == "error" and r.events[-1]["code"] == "state"
    assert _conv_path(cli, cid).read_bytes() != b""  # never emptied
    assert orjson.loads(_conv_path(cli, cid).read_bytes())["messages"][: 2] == orjson.loads(before)["messages"]


def test_state_dir_that_cannot_be_created(cli, fs, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = harness.run(cli, ["ask", *fs.args(), "--jsonl", "hi"], env={**fs.env(), "CHATCLI_HOME": "",
                                                                     "XDG_STATE_HOME": str(blocker / "x"),
                                                                     "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert r.code == 7, r
    assert len(harness.error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr, r


def _make_read_only(path) -> None:
    """chmod 0500; as root (which ignores modes, e.g. in CI) the ext4 immutable flag instead."""
    if os.geteuid() != 0:
        path.chmod(0o500)
        return
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    require(done.returncode == 0, f"chattr +i (root ignores file modes): {done.stderr.decode().strip()}")


def _make_writable(path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o700)


def test_read_only_state_dir(cli, fs) -> None:
    cid = _seed(cli, fs)
    conv_dir = cli.home / "conversations"
    _make_read_only(conv_dir)
    try:
        r = harness.run(cli, ["continue", "--cid", cid, *fs.args(), "--jsonl", "again"], env=fs.env())
    finally:
        _make_writable(conv_dir)
    assert r.code == 7, r
