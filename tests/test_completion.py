"""Shell completion: the scripts in completions/ are what the app generates, and they
complete commands, options, providers, profiles and conversation ids in real bash, zsh
(under tmux) and fish, reading only local state (no httpx, no rich on a TAB press).

CHATCLI_UPDATE_GOLDEN=1 rewrites completions/* from the app (review the diff).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, require
from shellkit import Tmux, have, install_launcher, seed, shell_env

UPDATE = bool(os.environ.get("CHATCLI_UPDATE_GOLDEN"))  # read now: the autouse fixture strips CHATCLI_*
HEAVY = ("httpx", "httpcore", "rich", "websocket", "llama_cpp", "pydantic", "ssl")
SCRIPTS = {"bash": "chatcli.bash", "zsh": "_chatcli", "fish": "chatcli.fish"}
CONFIG = """
default_profile = "work"
[profiles.work]
provider = "openai"
model = "loop-1"
[profiles.home-dify]
provider = "dify"
"""


@pytest.fixture
def env(tmp_path: Path, home: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    install_launcher(bindir)
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(CONFIG)
    return shell_env(home, bindir, HOME=str(tmp_path))


@pytest.fixture
def ids(home: Path) -> list[str]:
    return seed(home, 3)


def generate(shell: str, env: dict[str, str]) -> str:
    out = subprocess.run(["chatcli"], env=dict(env, _CHATCLI_COMPLETE=f"source_{shell}"), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_scripts_match_the_app(shell: str, env: dict[str, str]) -> None:
    path = ROOT / "completions" / SCRIPTS[shell]
    text = generate(shell, env)
    if UPDATE:
        path.write_text(text)
    assert path.read_text() == text, f"{path} is stale: regenerate with CHATCLI_UPDATE_GOLDEN=1"
    assert "_CHATCLI_COMPLETE" in text


def bash_complete(env: dict[str, str], line: str) -> list[str]:
    """COMPREPLY for `line` (cursor at the end) from the shipped bash script."""
    script = f"""
source {ROOT / 'completions' / 'chatcli.bash'}
complete -p chatcli >&2
COMP_LINE={line!r}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_chatcli_completion chatcli
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], env=env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert "-F _chatcli_completion chatcli" in out.stderr
    return [x for x in out.stdout.splitlines() if x]


def test_bash_commands_options_values(env: dict[str, str], ids: list[str]) -> None:
    assert set(bash_complete(env, "chatcli ")) >= {"ask", "continue", "stop", "history", "config", "paths"}
    assert bash_complete(env, "chatcli hi") == ["history"]
    assert set(bash_complete(env, "chatcli ask --pro")) == {"--provider", "--profile"}
    assert bash_complete(env, "chatcli ask -p o") == ["openai"]
    assert set(bash_complete(env, "chatcli ask --provider ")) == {"chatgpt", "dify", "coze", "openai", "local"}
    assert set(bash_complete(env, "chatcli continue --profile ")) == {"work", "home-dify"}
    assert bash_complete(env, "chatcli ask --profile h") == ["home-dify"]
    # Most recently used first, the way `history` lists them.
    newest_first = ids[::-1]
    assert bash_complete(env, "chatcli continue --cid ") == newest_first
    assert bash_complete(env, f"chatcli history {ids[1][:8]}") == [ids[1]]
    assert bash_complete(env, f"chatcli history --delete {ids[2][:8]}") == [ids[2]]


def test_bash_with_no_state_and_broken_config(env: dict[str, str], home: Path) -> None:
    (home / "config.toml").write_text("this is [not toml")
    assert bash_complete(env, "chatcli continue --cid ") == []
    assert bash_complete(env, "chatcli ask --profile ") == []


def test_fish(env: dict[str, str], ids: list[str]) -> None:
    require(have("fish"), "fish")
    script = f"source {ROOT / 'completions' / 'chatcli.fish'}; complete -C 'chatcli history {ids[0][:8]}'"
    out = subprocess.run(["fish", "--no-config", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{ids[0]}\tconversation number 0 (openai)"]
    script = f"source {ROOT / 'completions' / 'chatcli.fish'}; complete -C 'chatcli ask --provider c'"
    out = subprocess.run(["fish", "--no-config", "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert sorted(out.stdout.splitlines()) == ["chatgpt\tChatGPT web (backend-api)", "coze\tCoze bot (v3 chat API)"]


def test_zsh_protocol(env: dict[str, str], ids: list[str]) -> None:
    """What the zsh function evals: `_arguments` with value:description pairs (colons escaped)."""
    out = subprocess.run(["chatcli"], env=dict(env, _CHATCLI_COMPLETE="complete_zsh",
                                               _TYPER_COMPLETE_ARGS="chatcli --profile"),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    out = subprocess.run(["chatcli"], env=dict(env, _CHATCLI_COMPLETE="complete_zsh",
                                               _TYPER_COMPLETE_ARGS=f"chatcli continue --cid {ids[0][:8]}"),
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == f"_arguments '*: :((\"{ids[0]}\":\"conversation number 0 (openai)\"))'"


def test_zsh_in_tmux(env: dict[str, str], ids: list[str], tmp_path: Path) -> None:
    require(have("zsh") and have("tmux"), "zsh and tmux")
    zdot = tmp_path / "zdot"
    zdot.mkdir()
    fpath = tmp_path / "zfunc"
    fpath.mkdir()
    (fpath / "_chatcli").write_text((ROOT / "completions" / "_chatcli").read_text())
    # The documented installation: the file on $fpath, then compinit.
    (zdot / ".zshrc").write_text(f"fpath=({fpath} $fpath)\nautoload -Uz compinit && compinit -u\nPS1='%% '\n")
    tmux = Tmux(tmp_path, dict(env, ZDOTDIR=str(zdot)))
    try:
        tmux.line("exec zsh")
        tmux.wait_for("%")
        tmux.send("-l", f"chatcli history {ids[2][:8]}")
        tmux.send("Tab")
        tmux.wait_for(f"chatcli history {ids[2]}")
        tmux.send("C-u")
        tmux.wait_until(lambda screen: "chatcli history" not in screen)
        tmux.send("-l", "chatcli continue --profile ")
        tmux.wait_for("--profile")
        tmux.send("Tab")
        screen = tmux.wait_for("home-dify")
        assert "work" in screen
    finally:
        tmux.kill()


def test_tab_imports_no_network_or_rich(env: dict[str, str], ids: list[str]) -> None:
    cases = [
        ("bash", {"COMP_WORDS": "chatcli continue --cid ", "COMP_CWORD": "3"}, ids[0]),
        ("zsh", {"_TYPER_COMPLETE_ARGS": "chatcli ask --profile "}, "home-dify"),
        ("fish", {"_TYPER_COMPLETE_ARGS": "chatcli history ", "_TYPER_COMPLETE_FISH_ACTION": "get-args"}, ids[1]),
    ]
    for shell, extra, expected in cases:
        out = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatcli"],
                             env=dict(env, _CHATCLI_COMPLETE=f"complete_{shell}", **extra),
                             capture_output=True, text=True, timeout=30)
        assert expected in out.stdout, (shell, out.stdout)
        mods = {row.split("|")[-1].strip() for row in out.stderr.splitlines() if row.startswith("import time:")}
        assert "chatcli.complete" in mods
        bad = sorted(m for m in mods if m.split(".")[0] in HEAVY)
        assert not bad, (shell, bad)


def test_show_and_install_completion_use_the_same_scripts(env: dict[str, str], tmp_path: Path) -> None:
    for shell in sorted(SCRIPTS):
        out = subprocess.run(["chatcli", "--show-completion", shell], capture_output=True, text=True, timeout=30,
                             env=dict(env, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == (ROOT / "completions" / SCRIPTS[shell]).read_text().strip()
    out = subprocess.run(["chatcli", "--install-completion", "zsh"], capture_output=True, text=True, timeout=30,
                         env=dict(env, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"))
    assert out.returncode == 0, out.stderr
    installed = (tmp_path / ".zfunc" / "_chatcli").read_text()
    assert installed.strip() == (ROOT / "completions" / "_chatcli").read_text().strip()
