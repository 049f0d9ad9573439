"""`chatcli history` for people and scripts: aligned columns, a dialogue view, --jsonl
with the contract's keys, --limit, --provider, --search (titles and message text),
--rename, --delete (local, and on the provider through the optional hooks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loopback import LoopbackServer
from shellkit import openai_routes, seed

class Inproc:
    """The real app run in this process (Typer's CliRunner): fast for local-only commands."""

    def __call__(self, *args: str) -> Any:
        from typer.testing import CliRunner

        from chatcli.cli import _app

        res = CliRunner().invoke(_app(), list(args), prog_name="chatcli")
        res.code = res.exit_code
        return res


@pytest.fixture
def hist() -> Inproc:
    return Inproc()


LIST_KEYS = {"conversation_id", "provider", "title", "model", "created_at", "updated_at", "messages"}
MSG_KEYS = ["message_id", "parent_id", "role", "text", "created_at", "status"]


def test_listing_is_aligned_newest_first(hist: Inproc, home: Path) -> None:
    ids = seed(home, 12)
    r = hist("history")
    assert r.code == 0, r
    lines = r.stdout.splitlines()
    assert len(lines) == 12  # no header on a pipe: every line is a conversation
    assert [line.split()[0] for line in lines] == [cid[:8] for cid in reversed(ids)]
    # Columns line up: the title starts at the same place on every line.
    starts = {line.index("conversation number") for line in lines}
    assert len(starts) == 1
    assert all(line.split()[1] == "openai" for line in lines)
    assert "\x1b" not in r.stdout


def test_id_column_is_a_unique_prefix_that_resolves(cli: Any, home: Path, server: LoopbackServer) -> None:
    openai_routes(server)
    for word in ("first", "second"):
        assert cli("ask", "-p", "openai", "--base-url", server.url + "/v1", word).code == 0
    r = cli("history")
    prefixes = [line.split()[0] for line in r.stdout.splitlines()]
    assert len(prefixes) == 2 and all(len(p) >= 8 for p in prefixes)
    shown = cli("history", prefixes[1])
    assert shown.code == 0, shown
    assert "echo: first" in shown.stdout


def test_jsonl_listing_keys_limit_provider(hist: Inproc, home: Path) -> None:
    seed(home, 5)
    r = hist("history", "--jsonl", "--limit", "2")
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == 2 and all(LIST_KEYS <= set(row) for row in rows)
    assert rows[0]["messages"] == 2
    assert hist("history", "--jsonl", "-p", "dify").stdout == ""
    assert len(hist("history", "--jsonl", "--provider", "openai").stdout.splitlines()) == 5
    none = hist("history", "-p", "dify")
    assert none.code == 0 and none.stdout == "" and "no conversation matches" in none.stderr


def test_search_titles_and_message_text(hist: Inproc, home: Path) -> None:
    ids = seed(home, 4)
    by_title = hist("history", "--jsonl", "--search", "NUMBER 2")
    assert [json.loads(x)["conversation_id"] for x in by_title.stdout.splitlines()] == [ids[2]]
    by_text = hist("history", "--jsonl", "--search", "text 3.1")  # only in an answer's text
    assert [json.loads(x)["conversation_id"] for x in by_text.stdout.splitlines()] == [ids[3]]
    assert hist("history", "--jsonl", "--search", "nowhere").stdout == ""


def test_one_conversation_as_dialogue_and_jsonl(cli: Any, home: Path, server: LoopbackServer) -> None:
    openai_routes(server)
    url = server.url + "/v1"
    assert cli("ask", "-p", "openai", "--base-url", url, "one").code == 0
    assert cli("continue", "two").code == 0
    cid = json.loads(cli("history", "--jsonl").stdout)["conversation_id"]
    r = cli("history", cid)
    assert r.code == 0, r
    blocks = r.stdout.split("\n\n")
    assert blocks[0].startswith("one  (openai, loop-1, ")
    roles = [b.splitlines()[0].split()[0] for b in blocks[1:]]
    assert roles == ["you", "assistant", "you", "assistant"]
    assert blocks[4].splitlines()[1:] == ["echo: two"]
    msgs = [json.loads(x) for x in cli("history", cid, "--jsonl").stdout.splitlines()]
    assert [list(m)[:6] for m in msgs] == [MSG_KEYS] * 4
    assert [m["text"] for m in msgs] == ["one", "echo: one", "two", "echo: two"]
    assert all(m["created_at"].endswith("Z") for m in msgs)


def test_rename_keeps_order_and_shows_everywhere(hist: Inproc, home: Path) -> None:
    ids = seed(home, 3)
    r = hist("history", ids[0][:8], "--rename", "  Regex   help ")
    assert r.code == 0, r
    assert f"renamed {ids[0]}" in r.stderr
    rows = [json.loads(x) for x in hist("history", "--jsonl").stdout.splitlines()]
    assert [row["conversation_id"] for row in rows] == ids[::-1]  # renaming is not using
    assert rows[-1]["title"] == "Regex help"
    assert json.loads((home / "conversations" / f"{ids[0]}.json").read_text())["title"] == "Regex help"
    assert hist("history", ids[0], "--rename", "   ").code == 2


def test_delete(hist: Inproc, home: Path) -> None:
    ids = seed(home, 3)
    r = hist("history", "--delete", ids[1][:8])
    assert r.code == 0, r
    assert f"deleted {ids[1]}" in r.stderr
    left = [json.loads(x)["conversation_id"] for x in hist("history", "--jsonl").stdout.splitlines()]
    assert left == [ids[2], ids[0]]
    assert not (home / "conversations" / f"{ids[1]}.json").exists()
    gone = hist("history", ids[1])
    assert gone.code == 2 and "no conversation matches" in gone.stderr


@pytest.mark.parametrize("args, message", [
    (["--delete"], "--delete needs a conversation ID"),
    (["--rename", "x"], "--rename needs a conversation ID"),
    (["c0000000", "--delete", "--rename", "x"], "exclude each other"),
    (["c", "--delete"], "ambiguous"),
    (["nope", "--delete"], "no conversation matches"),
])
def test_usage_errors(hist: Inproc, home: Path, args: list[str], message: str) -> None:
    seed(home, 2)
    r = hist("history", *args)
    assert r.code == 2, r
    assert message in r.stderr and r.stderr.startswith("chatcli: error: ")
    assert len(hist("history", "--jsonl").stdout.splitlines()) == 2  # nothing was deleted


def test_remote_without_a_hook_changes_nothing(hist: Inproc, home: Path) -> None:
    ids = seed(home, 1)
    conv_path = home / "conversations" / f"{ids[0]}.json"
    conv = json.loads(conv_path.read_text())
    conv["remote_id"] = "remote-1"
    conv_path.write_text(json.dumps(conv))
    r = hist("history", ids[0], "--delete", "--remote")
    assert r.code == 2 and "does not support deleting remote conversations" in r.stderr
    assert conv_path.exists()


def test_remote_hooks_are_called(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from chatcli import historycmd, providers

    ids = seed(home, 2)
    for cid in ids:
        p = home / "conversations" / f"{cid}.json"
        conv = json.loads(p.read_text())
        conv["remote_id"] = "R-" + cid
        p.write_text(json.dumps(conv))
    log = tmp_path / "remote.log"
    monkeypatch.setenv("FAKE_REMOTE_LOG", str(log))
    monkeypatch.setitem(providers.PROVIDERS, "openai", "fake_remote:WithHooks")
    assert historycmd.rename_conversation(ids[0], "New", remote=True) == 0
    assert historycmd.delete_conversation(ids[1], remote=True) == 0
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert calls == [["rename", "R-" + ids[0], "New"], ["delete", "R-" + ids[1]]]
    assert "locally and on the provider" in capsys.readouterr().err
    assert not (home / "conversations" / f"{ids[1]}.json").exists()


def test_unique_prefixes() -> None:
    from chatcli.historycmd import _prefixes

    ids = ["abcdefgh1", "abcdefgh2", "abcdefghij9", "zz", "3f2a0000-1111"]
    assert _prefixes(ids) == {"abcdefgh1": "abcdefgh1", "abcdefgh2": "abcdefgh2", "abcdefghij9": "abcdefghi",
                              "zz": "zz", "3f2a0000-1111": "3f2a0000"}
