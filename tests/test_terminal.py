"""Terminal behaviour: a spinner on stderr only on a terminal, erased before the answer;
the conversation id and usage on stderr; NO_COLOR / FORCE_COLOR / TERM=dumb; no escape
code ever on a pipe; `--render` only when stdout is a terminal.

Real chatcli processes against a loopback OpenAI-compatible server, through pipes and
inside tmux (send-keys, capture-pane).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import require
from loopback import LoopbackServer
from shellkit import Tmux, have, install_launcher, openai_routes, seed, shell_env


def ask(url: str, *words: str) -> list[str]:
    return ["ask", "-p", "openai", "--base-url", url + "/v1", *words]


@pytest.fixture
def gate() -> threading.Event:
    return threading.Event()


@pytest.fixture
def srv(server: LoopbackServer, gate: threading.Event) -> LoopbackServer:
    return openai_routes(server, gate=gate)


@pytest.fixture
def tmux(tmp_path: Path, home: Path) -> Any:
    require(have("tmux"), "tmux")
    bindir = tmp_path / "bin"
    install_launcher(bindir)
    t = Tmux(tmp_path, shell_env(home, bindir))
    t.wait_for("$")
    yield t
    t.kill()


def cmdline(url: str, *words: str, env: str = "") -> str:
    quoted = " ".join(f"'{w}'" for w in ask(url, *words))
    return f"{env} chatcli {quoted}".strip()


@pytest.mark.parametrize("extra", [{}, {"NO_COLOR": "1"}, {"FORCE_COLOR": "1"}, {"TERM": "xterm-256color"}])
def test_pipes_never_get_escapes_or_spinner(cli: Any, server: LoopbackServer, extra: dict[str, str]) -> None:
    openai_routes(server, first_delay=0.6)
    r = cli(*ask(server.url, "hello there"), env=extra)
    assert r.code == 0, r
    assert r.stdout == "echo: hello there\n"
    assert "\x1b" not in r.stdout
    assert "\r" not in r.stderr and "waiting" not in r.stderr
    if extra.get("FORCE_COLOR"):
        assert "\x1b[2m" in r.stderr  # FORCE_COLOR forces styling on stderr, never on stdout
    else:
        assert "\x1b" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[-1].startswith("chatcli: conversation ") or "conversation " in lines[-1]
    assert "tokens in 5, out 7" in lines[-1]


def test_render_on_a_pipe_is_plain_text(cli: Any, server: LoopbackServer) -> None:
    openai_routes(server, answer="# Title\n\n**bold** text")
    r = cli(*ask(server.url, "--render", "md"))
    assert r.code == 0, r
    assert r.stdout == "# Title\n\n**bold** text\n"


@pytest.mark.parametrize("other", ["--jsonl", "--raw"])
def test_render_excludes_machine_output(cli: Any, server: LoopbackServer, other: str) -> None:
    openai_routes(server)
    r = cli(*ask(server.url, "--render", other, "x"))
    assert r.code == 2
    assert "--render goes with text output" in r.stderr
    assert not server.requests
    if other == "--jsonl":
        # CONTRACT: `start` is the first line, always; then the one terminal event.
        assert [e["type"] for e in r.events] == ["start", "error"] and r.events[-1]["code"] == "config"
    else:
        assert r.stdout == ""


def test_spinner_on_a_terminal_then_erased(tmux: Tmux, srv: LoopbackServer, gate: threading.Event,
                                           tmp_path: Path) -> None:
    out = tmp_path / "answer.txt"
    tmux.line(cmdline(srv.url, "hello spinner") + f" > {out}")
    screen = tmux.wait_for("waiting for the first token")
    assert "s" in screen.split("waiting for the first token")[1][:4]  # elapsed seconds follow
    gate.set()
    screen = tmux.wait_for("tokens in 5, out 7")
    assert "waiting" not in screen
    # stdout went to a file: the exact answer, not one escape code or carriage return.
    assert out.read_bytes() == b"echo: hello spinner\n"
    conv_line = [line for line in screen.splitlines() if "tokens in" in line][0]
    assert conv_line.startswith("chatcli: conversation ")
    # Dimmed on the terminal.
    assert "\x1b[2m" in tmux.capture(escapes=True)


def test_spinner_never_mixes_with_the_answer(tmux: Tmux, srv: LoopbackServer, gate: threading.Event) -> None:
    tmux.line(cmdline(srv.url, "both on the tty"))
    tmux.wait_for("waiting for")
    gate.set()
    screen = tmux.wait_for("tokens in 5")
    lines = screen.splitlines()
    i = lines.index("echo: both on the tty")
    assert lines[i + 1].startswith("chatcli: conversation ")
    assert "waiting" not in screen and "\u280b" not in screen


@pytest.mark.parametrize("prefix", ["NO_COLOR=1", "TERM=dumb"])
def test_no_spinner_with_no_color_or_dumb_terminal(tmux: Tmux, srv: LoopbackServer, gate: threading.Event,
                                                  prefix: str) -> None:
    tmux.line(cmdline(srv.url, "quiet please", env=prefix))
    assert srv.wait_for(lambda: bool(srv.requests_to("/v1/chat/completions")), timeout=20)
    # Longer than the spinner's 0.3 s delay and several frames.
    threading.Event().wait(1.0)
    assert "waiting" not in tmux.capture()
    gate.set()
    screen = tmux.wait_for("tokens in 5")
    assert "echo: quiet please" in screen
    assert "\x1b[2m" not in tmux.capture(escapes=True).split("quiet please")[-1]


def test_render_markdown_on_a_terminal(tmux: Tmux, server: LoopbackServer) -> None:
    openai_routes(server, answer="# Big title\n\nsome **bold** words and `code`\n\n- one\n- two\n")
    tmux.line(cmdline(server.url, "--render", "markdown please"))
    screen = tmux.wait_for("tokens in 5")
    assert "Big title" in screen and "bold" in screen
    assert "**bold**" not in screen and "# Big title" not in screen
    assert "• one" in screen


def test_ctrl_c_while_waiting_erases_the_spinner(tmux: Tmux, srv: LoopbackServer) -> None:
    tmux.line(cmdline(srv.url, "never answered") + "; echo exit=$?")
    tmux.wait_for("waiting for the first token")  # the request was accepted
    tmux.send("C-c")
    screen = tmux.wait_for("exit=130")
    assert "stopped; the partial answer was saved" in screen
    assert "waiting" not in screen and "Traceback" not in screen


def test_history_on_a_terminal_has_a_header_and_fits(tmux: Tmux, home: Path) -> None:
    ids = seed(home, 3)
    conv = home / "conversations" / f"{ids[0]}.json"
    data = json.loads(conv.read_text())
    data["title"] = "a very long title " * 10
    conv.write_text(json.dumps(data))
    (home / "index.json").unlink()  # rebuilt from the files
    tmux.line("chatcli history")
    screen = tmux.wait_for("conversation number 2")
    lines = screen.splitlines()
    head = [line for line in lines if line.startswith("ID ")][0]
    assert head.split() == ["ID", "PROVIDER", "WHEN", "MSGS", "TITLE"]
    long = [line for line in lines if "a very long title" in line][0]
    assert long.endswith("…") and len(long) <= 100


def test_render_split_points() -> None:
    from chatcli.render import split_point

    assert split_point("one\n\ntwo", 0) == 3
    assert split_point("one\n\ntwo\n\nthree", 0) == 8
    assert split_point("one\n\ntwo", 5) == -1
    text = "intro\n\n```py\na = 1\n\nb = 2\n"  # the last blank line is inside a fence
    assert split_point(text, 0) == 5
    assert split_point("```\nx\n\ny\n```\n\nafter", 0) == len("```\nx\n\ny\n```")


def test_render_a_long_answer_once(tmux: Tmux, server: LoopbackServer) -> None:
    """Longer than the screen (30 rows): every paragraph appears exactly once in the scrollback."""
    answer = "\n\n".join(f"Paragraph **{i}** of the answer." for i in range(60))
    openai_routes(server, answer=answer, chunk=5)
    tmux.line(cmdline(server.url, "--render", "long please"))
    tmux.wait_for("tokens in 5")
    history = tmux._run("capture-pane", "-p", "-S", "-1000", "-t", "t")
    for i in range(60):
        assert history.count(f"Paragraph {i} of the answer.") == 1, i
    assert "**" not in history


def test_render_streams_blocks_and_long_code_once(tmux: Tmux, server: LoopbackServer) -> None:
    code = "\n".join(f"line_{i} = {i}" for i in range(40))
    answer = "\n\n".join(f"Paragraph {i} here." for i in range(20)) + f"\n\n```python\n{code}\n```\n\nThe end."
    openai_routes(server, answer=answer, chunk=40, delay=0.02)
    tmux.line(cmdline(server.url, "--render", "stream please"))
    tmux.wait_for("tokens in 5", timeout=40)
    history = tmux._run("capture-pane", "-p", "-S", "-1000", "-t", "t")
    for i in range(20):
        assert history.count(f"Paragraph {i} here.") == 1, i
    for i in range(40):
        assert history.count(f"line_{i} = {i}") == 1, i
    assert history.count("The end.") == 1 and "```" not in history
