"""Help with examples on every command, --version, `chatcli config` (masked secrets and
their sources, --init), `chatcli paths`, and the import budget of --help/history/config."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conftest import clean_env
from shellkit import seed

COMMANDS = ["ask", "continue", "stop", "history", "config", "paths"]
HEAVY = ("httpx", "httpcore", "rich", "websocket", "llama_cpp", "h11", "anyio", "ssl", "pydantic")


@pytest.fixture
def inproc() -> Any:
    from typer.testing import CliRunner

    from chatcli.cli import _app

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        return CliRunner().invoke(_app(), list(args), prog_name="chatcli", env=env)

    return run


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_examples(inproc: Any, command: str) -> None:
    r = inproc(command, "--help")
    assert r.exit_code == 0
    text = r.stdout
    examples = text.split("  Examples:\n")[1].split("\n\n")[0].splitlines()
    assert len(examples) >= 2
    # Printed as written (\b blocks): one example per line, indented, never rewrapped.
    assert all(line.startswith("    ") for line in examples)
    assert sum(f"chatcli {command}" in line for line in examples) >= 2
    assert "<str>" not in text and "<list[str]>" not in text


def test_prompt_metavar_and_root_help(inproc: Any) -> None:
    assert "Usage: chatcli ask [OPTIONS] [PROMPT]..." in inproc("ask", "--help").stdout
    root = inproc("--help").stdout
    for command in COMMANDS:
        assert f"\n  {command} " in root


def test_version(cli: Any) -> None:
    from chatcli import __version__

    for args in (["--version"], ["--version", "history"]):
        r = cli(*args)
        assert r.code == 0 and r.stdout == f"chatcli {__version__}\n"


def test_config_shows_sources_and_masks_secrets(cli: Any, home: Path) -> None:
    home.mkdir(parents=True)
    (home / "config.toml").write_text('[profiles.work]\nprovider = "dify"\nbase_url = "http://dify.local/v1"\n'
                                      'api_key_env = "WORK_KEY"\nuser = "me"\ntemperature = 0.2\n')
    secret = "app-SECRET-dify-123456789"
    r = cli("config", "--profile", "work", env={"WORK_KEY": secret, "CHATCLI_TIMEOUT": "12"})
    assert r.code == 0, r
    assert secret not in r.stdout + r.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in r.stdout.splitlines()[1:]}
    assert rows["provider"] == ["dify", "profile work"]
    assert rows["base_url"] == ["http://dify.local/v1", "profile work"]
    assert rows["api_key"] == ["app…6789", "environment WORK_KEY (profile work)"]
    assert rows["timeout"] == ["12", "environment CHATCLI_TIMEOUT"]
    assert rows["user"] == ["me", "profile work"]
    assert rows["temperature"][0] == "0.2"
    machine = [json.loads(x) for x in cli("config", "--profile", "work", "--jsonl",
                                          env={"WORK_KEY": secret}).stdout.splitlines()]
    assert {"key": "api_key", "value": "app…6789", "source": "environment WORK_KEY (profile work)"} in machine
    short = cli("config", "-p", "openai", env={"OPENAI_API_KEY": "sk-short"})
    assert "[set]" in short.stdout and "sk-short" not in short.stdout
    missing = cli("config", "-p", "coze")
    assert missing.code == 0 and "not set (set COZE_API_TOKEN)" in missing.stdout


def test_config_errors(cli: Any) -> None:
    r = cli("config", "--profile", "nope")
    assert r.code == 2 and r.stderr.startswith("chatcli: error: unknown profile 'nope'")


def test_config_init(cli: Any, home: Path) -> None:
    r = cli("config", "--init")
    assert r.code == 0, r
    path = home / "config.toml"
    assert r.stdout.strip() == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parsed = tomllib.loads(path.read_text())
    assert parsed["profiles"]["local"]["provider"] == "local"
    text = path.read_text()
    for provider in ("openai", "dify", "coze", "chatgpt"):
        assert f'# provider = "{provider}"' in text
    # Uncommented, every example profile is valid and resolves.
    uncommented = "\n".join(line[2:] if line.startswith("# ") and "=" in line or line.startswith("# [") else line
                            for line in text.splitlines() if not line.startswith("# A ") )
    profiles = tomllib.loads("\n".join(x for x in uncommented.splitlines()
                                       if not x.startswith("#")))["profiles"]
    assert set(profiles) == {"local", "openai", "llamacpp", "dify", "coze", "chatgpt"}
    again = cli("config", "--init")
    assert again.code == 2 and "exists already" in again.stderr
    assert cli("config", "--init", "--force").code == 0


def test_paths(cli: Any, home: Path, tmp_path: Path) -> None:
    r = cli("paths")
    assert r.code == 0
    assert f"state   {home}" in r.stdout and f"config  {home / 'config.toml'}" in r.stdout
    env = {"CHATCLI_HOME": "", "XDG_STATE_HOME": str(tmp_path / "st"), "XDG_CONFIG_HOME": str(tmp_path / "cf")}
    assert cli("paths", "--state", env=env).stdout == f"{tmp_path / 'st' / 'chatcli'}\n"
    assert cli("paths", "--config", env=env).stdout == f"{tmp_path / 'cf' / 'chatcli' / 'config.toml'}\n"


@pytest.fixture(scope="module")
def big_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("big") / "home"
    seed(home, 1000)
    return home


@pytest.mark.parametrize("args", [["--help"], ["ask", "--help"], ["history"], ["history", "--jsonl", "-n", "3"],
                                  ["history", "--search", "number 999"], ["config"], ["paths"]])
def test_no_network_or_rich_imports(big_home: Path, args: list[str]) -> None:
    env = clean_env(big_home, OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatcli", *args], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-800:]
    mods = {row.split("|")[-1].strip() for row in out.stderr.splitlines() if row.startswith("import time:")}
    assert "chatcli.cli" in mods
    bad = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    assert not bad, bad
    if args[0] == "history" and "--search" not in args and "-n" not in args:
        assert len(out.stdout.splitlines()) == 1000


@pytest.mark.parametrize("args, message", [
    (["history", "-n", "x"], "Invalid value for '--limit' / '-n': Input should be a valid integer"),
    (["history", "-n", "-1"], "Invalid value for '--limit' / '-n': Input should be greater than or equal to 0"),
    (["ask", "--timeout", "soon", "hi"], "Invalid value for '--timeout': Input should be a valid number"),
    (["ask", "--max-tokens", "1.5", "hi"], "Invalid value for '--max-tokens': Input should be a valid integer"),
])
def test_option_values_are_checked(inproc: Any, args: list[str], message: str) -> None:
    # Valid values are converted without pydantic (_typerfast); an invalid one gets Typer's own message.
    r = inproc(*args)
    assert r.exit_code == 2
    assert message in r.stderr


def test_option_values_are_converted(inproc: Any, home: Path) -> None:
    seed(home, 3)
    r = inproc("history", "--jsonl", "-n", " 2")
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
