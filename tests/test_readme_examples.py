"""The README's shell examples, run for real so they cannot rot.

Marker: a ```sh fenced block whose first line is `# test: NAME` is run with
`bash -e -o pipefail` in a fresh directory with a fresh CHATCLI_HOME, `chatcli` on PATH
(a launcher for this checkout) and OPENAI_BASE_URL pointing at a loopback
OpenAI-compatible server (its answer echoes the prompt). It must exit 0. A ```text block
that follows it (only blank lines between) is its exact expected stdout.

README.md without such blocks is a failure, not a skip: the examples are part of the
contract with users. CHATCLI_README=path runs another file (e.g. a draft section).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from loopback import LoopbackServer
from shellkit import install_launcher, openai_routes, shell_env

README = Path(os.environ.get("CHATCLI_README") or ROOT / "README.md")
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"^# test: ([\w.-]+)[ \t]*$")


def examples(text: str) -> list[tuple[str, str, str | None]]:
    """(name, script, expected stdout or None) for every marked block, in order."""
    out: list[tuple[str, str, str | None]] = []
    blocks = [(m.group(1), m.group(2), m.start(), m.end()) for m in FENCE.finditer(text)]
    for i, (lang, body, _, end) in enumerate(blocks):
        first = body.split("\n", 1)[0]
        mark = MARK.match(first)
        if lang != "sh" or not mark:
            continue
        expected = None
        if i + 1 < len(blocks):
            nlang, nbody, nstart, _ = blocks[i + 1]
            if nlang == "text" and not text[end:nstart].strip("\n ").strip():
                expected = nbody
        out.append((mark.group(1), body, expected))
    return out


def _load() -> list[tuple[str, str, str | None]]:
    if not README.exists():
        return []
    return examples(README.read_text(encoding="utf-8"))


EXAMPLES = _load()


def test_readme_has_tested_examples() -> None:
    assert README.exists(), f"{README} is missing"
    names = [name for name, _, _ in EXAMPLES]
    assert len(names) >= 5, (f"{README} has {len(names)} tested examples: mark each ```sh block with a first "
                             "line `# test: NAME` (tests/test_readme_examples.py)")
    assert len(set(names)) == len(names), f"duplicate example names: {names}"
    scripts = [body for _, body, _ in EXAMPLES]
    assert any("| jq" in s and "--jsonl" in s for s in scripts), "no tested `--jsonl | jq` example"
    assert any("while" in s and "read" in s and "chatcli continue" in s for s in scripts), \
        "no tested `while read` loop that chains `chatcli continue`"


def test_the_marker_parser() -> None:
    text = ("x\n```sh\n# test: a\necho 1\n```\n\n```text\n1\n```\n```sh\necho unmarked\n```\n"
            "```sh\n# test: b\necho 2\n```\nprose\n```text\nnot b's\n```\n")
    assert examples(text) == [("a", "# test: a\necho 1\n", "1\n"), ("b", "# test: b\necho 2\n", None)]


@pytest.mark.parametrize("name, script, expected", EXAMPLES or [("none", "", None)],
                         ids=[e[0] for e in EXAMPLES] or ["none"])
def test_example(name: str, script: str, expected: str | None, server: LoopbackServer, tmp_path: Path,
                 home: Path) -> None:
    assert EXAMPLES, f"{README} has no `# test:` examples"
    assert shutil.which("jq"), "jq is needed (bash tests/run.sh installs it)"
    openai_routes(server)
    bindir = tmp_path / "bin"
    install_launcher(bindir)
    work = tmp_path / "work"
    work.mkdir()
    env = shell_env(home, bindir, OPENAI_BASE_URL=server.url + "/v1", HOME=str(tmp_path))
    out = subprocess.run(["bash", "--norc", "--noprofile", "-e", "-o", "pipefail", "-c", script], cwd=work, env=env,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"example {name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr
    if expected is not None:
        assert out.stdout == expected, f"example {name}: stdout differs\n{out.stderr}"
