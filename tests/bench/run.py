#!/usr/bin/env python3
"""chatcli's benchmark: start-up, time to first text, streaming throughput, `continue`.

    python tests/bench/run.py [--quick] [--llm PATH] [--json FILE]

Not a test: it prints a table of medians and ratios, all measured side by side in one run
(the rounds of each section are interleaved, so machine load hits every case alike), then
each budget with PASS/FAIL and measured/limit. Everything runs against loopback servers
in this process and a temporary CHATCLI_HOME; nothing outside /tmp is written except
__pycache__ next to chatcli's sources (as an installed copy has).

chatcli runs as `sys.executable -m chatcli` with PYTHONPATH=<this checkout>; if a
`chatcli` console script is on PATH (or next to sys.executable) its start-up is measured
too. `llm` (https://llm.datasette.io) is compared where it is installed: on PATH, at
--llm, or in ~/.cache/chatcli-bench/llm-venv (`python3 -m venv ~/.cache/chatcli-bench/llm-venv
&& ~/.cache/chatcli-bench/llm-venv/bin/pip install llm`); never in chatcli's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (str(HERE), str(ROOT / "tests"), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import decoders  # noqa: E402
import streams  # noqa: E402
from fixtures import find_console_script, find_llm, make_home, streamer  # noqa: E402
from importguard import SITECUSTOMIZE, forbidden  # noqa: E402
from proc import Run, clean_env, run  # noqa: E402


def med(runs: list[Run], key: Callable[[Run], float | None] = lambda r: r.wall) -> float:
    values = [v for v in (key(r) for r in runs) if v is not None]
    return statistics.median(values) if values else float("nan")


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []
        self.budgets: list[tuple[str, str, str, str]] = []
        self.data: dict[str, Any] = {}

    def section(self, title: str) -> None:
        self.rows.append(("", ""))
        self.rows.append((f"## {title}",))

    def row(self, *cells: str) -> None:
        self.rows.append(cells)
        print("  " + " | ".join(cells), file=sys.stderr, flush=True)

    def budget(self, name: str, measured: str, ok: bool | None, frac: float | None) -> None:
        verdict = "n/a" if ok is None else "PASS" if ok else "FAIL"
        self.budgets.append((name, measured, verdict, "" if frac is None else f"{frac:.2f}"))

    def print(self) -> None:
        widths: dict[int, int] = {}
        for r in self.rows:
            if len(r) > 1:
                for i, c in enumerate(r):
                    widths[i] = max(widths.get(i, 0), len(c))
        for r in self.rows:
            if len(r) == 1:
                print(r[0])
            else:
                print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        print("\n## Budgets (measured / limit: below 1.00 is within budget; 'more is better' limits inverted)")
        w = [max(len(b[i]) for b in self.budgets) for i in range(4)]
        for b in self.budgets:
            print(f"  {b[2]:<4}  {b[0].ljust(w[0])}  {b[1].ljust(w[1])}  {b[3]}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# ----- sections ---------------------------------------------------------------------------


def startup(t: Table, tmp: Path, homes: dict[int, Path], rounds: int, llm: str | None,
            console: str | None) -> dict[str, list[Run]]:
    py = [sys.executable]
    cc = [sys.executable, "-m", "chatcli"]
    complete = {"_CHATCLI_COMPLETE": "complete_bash", "COMP_WORDS": "chatcli hi", "COMP_CWORD": "1"}
    empty = tmp / "home-empty"
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": (py + ["-c", "pass"], clean_env(empty)),
        "chatcli --version": (cc + ["--version"], clean_env(empty)),
        "chatcli --help": (cc + ["--help"], clean_env(empty)),
        "chatcli history (10)": (cc + ["history"], clean_env(homes[10])),
        "chatcli history (1,000)": (cc + ["history"], clean_env(homes[1000])),
        "chatcli history (10,000)": (cc + ["history"], clean_env(homes[10000])),
        "chatcli stop (nothing in flight)": (cc + ["stop"], clean_env(empty)),
        "TAB completion `chatcli hi<TAB>`": (cc, clean_env(empty, **complete)),
    }
    if console:
        cases["console script --version"] = ([console, "--version"], clean_env(empty))
        cases["console script --help"] = ([console, "--help"], clean_env(empty))
        cases["console script history (1,000)"] = ([console, "history"], clean_env(homes[1000]))
    if llm:
        cases["llm --version"] = ([llm, "--version"], clean_env(empty, LLM_USER_PATH=str(tmp / "llm-home")))
    expect = {"chatcli stop (nothing in flight)": 2}
    results: dict[str, list[Run]] = {k: [] for k in cases}
    for name, (cmd, env) in cases.items():  # warm-up: bytecode caches, page cache
        r = run(cmd, env, capture=True, keep=True)
        if r.code != expect.get(name, 0):
            print(f"warning: {name} exited {r.code}: {r.err.decode(errors='replace')[-300:]}", file=sys.stderr)
        if name.startswith("TAB") and b"history" not in r.out:
            print(f"warning: the completion printed {r.out!r}, not 'history'", file=sys.stderr)
    for _ in range(rounds):
        for name, (cmd, env) in cases.items():
            results[name].append(run(cmd, env))
    base = med(results["python -c pass"])
    llm_v = med(results["llm --version"]) if llm else None
    t.section(f"Start-up ({rounds} interleaved rounds; chatcli = {' '.join(cc[1:])} with PYTHONPATH={ROOT}"
              + (f"; console script {console}" if console else "; no console script on PATH") + ")")
    t.row("case", "median wall", "min wall", "median CPU", "x python -c pass",
          "x llm --version" if llm else "(llm not installed)", "peak RSS")
    for name, runs in results.items():
        m = med(runs)
        t.row(name, ms(m), ms(min(r.wall for r in runs)), ms(med(runs, lambda r: r.cpu)), f"{m / base:.2f}",
              f"{m / llm_v:.2f}" if llm_v else "-", f"{med(runs, lambda r: r.rss_mb):.1f} MB")
    # Which modules each command imports (sitecustomize atexit hook on PYTHONPATH).
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    bad: dict[str, list[str]] = {}
    for name, (cmd, env) in cases.items():
        if not name.startswith(("chatcli", "TAB")):
            continue
        out = tmp / "modules.txt"
        out.unlink(missing_ok=True)
        run(cmd, dict(env, PYTHONPATH=f"{site}{os.pathsep}{env['PYTHONPATH']}", CHATCLI_MODULES_OUT=str(out)))
        mods = set(out.read_text().split()) if out.exists() else {"<no module list written>"}
        hit = forbidden(mods) + sorted(m for m in mods if m == "<no module list written>")
        if hit:
            bad[name] = hit
    t.data["startup_forbidden"] = bad
    return results


def ttfb(t: Table, srv: Any, tmp: Path, rounds: int, llm: str | None) -> dict[str, list[Run]]:
    first = streams.openai(1)
    frames = first.body.split(b"\n\n")
    head_first = b"\n\n".join(frames[:2]) + b"\n\n"  # the role chunk and the first text, at once
    srv.route("POST", r"/ttfb/v1/chat/completions", streamer(first.body[len(head_first):], 0.3, head_first))
    url = srv.url + "/ttfb/v1"
    home = tmp / "home-ttfb"
    body = json.dumps({"model": "bench-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "curl -N": (["curl", "-sN", url + "/chat/completions", "-H", "Content-Type: application/json",
                     "-d", body], clean_env(home)),
        "chatcli ask (text)": ([sys.executable, "-m", "chatcli", "ask", "-p", "openai", "--base-url", url,
                                "-m", "bench-model", "hi"], clean_env(home)),
    }
    if llm:
        lhome = tmp / "llm-home"
        lhome.mkdir(exist_ok=True)
        (lhome / "extra-openai-models.yaml").write_text(
            f'- model_id: bench\n  model_name: bench-model\n  api_base: "{url}"\n')
        cases["llm -m bench"] = ([llm, "-m", "bench", "hi"],
                                 clean_env(home, LLM_USER_PATH=str(lhome), OPENAI_API_KEY="sk-bench-fake"))
    results: dict[str, list[Run]] = {k: [] for k in cases}
    for name, (cmd, env) in cases.items():
        r = run(cmd, env, capture=True, keep=True)
        if r.code or not r.out:
            print(f"warning: {name} exited {r.code}: {r.err.decode(errors='replace')[-300:]}", file=sys.stderr)
    for _ in range(rounds):
        for name, (cmd, env) in cases.items():
            results[name].append(run(cmd, env, capture=True))
    curl = med(results["curl -N"], lambda r: r.first)
    t.section(f"Time to first answer byte, OpenAI-compatible loopback server, first event immediate ({rounds} rounds)")
    t.row("client", "median first byte", "minus curl", "x curl", "min first byte", "median CPU (whole run)",
          "peak RSS")
    for name, runs in results.items():
        m = med(runs, lambda r: r.first)
        t.row(name, ms(m), ms(m - curl), f"{m / curl:.2f}", ms(min(r.first or 0 for r in runs)),
              ms(med(runs, lambda r: r.cpu)), f"{med(runs, lambda r: r.rss_mb):.1f} MB")
    return results


E2E_ROUTES = {
    "openai": ("POST", r"/{tag}/v1/chat/completions", "/{tag}/v1", {}, ["-m", "bench-model"]),
    "dify": ("POST", r"/{tag}/v1/chat-messages", "/{tag}/v1", {"DIFY_API_KEY": "app-bench-fake"}, []),
    "coze": ("POST", r"/{tag}/v3/chat", "/{tag}", {"COZE_API_TOKEN": "pat-bench-fake"},
             ["--bot-id", "7498765432109876543"]),
    "chatgpt": ("POST", r"/{tag}/backend-api/(f/)?conversation", "/{tag}/backend-api",
                {"CHATGPT_ACCESS_TOKEN": "eyJbench.fake.token"}, []),
}


def throughput(t: Table, srv: Any, tmp: Path, rounds: int, quick: bool) -> None:
    cases = [
        ("openai", "OpenAI, 20,000 chunks", streams.openai(20_000), True),
        ("openai", "OpenAI, 10 MB answer (10,000 x 1 KB)", streams.openai(10_000, 1000), False),
        ("dify", "Dify, 20,000 message events", streams.dify(20_000), True),
        ("coze", "Coze v3, 20,000 deltas", streams.coze(20_000), True),
        ("chatgpt", "ChatGPT legacy, 2,000 frames", streams.chatgpt_legacy(2_000), False),
        ("chatgpt", "ChatGPT v1, 20,000 deltas", streams.chatgpt_v1(20_000), True),
    ]
    t.section(f"Decoders in-process (median of {max(3, rounds)}; framing = chatcli.sse over 16 KB chunks)")
    t.row("stream", "decoder", "events/s alone", "events/s framed", "MB/s framed", "peak heap", "wire")
    rates: list[tuple[str, bool, decoders.Result]] = []
    for provider, label, wire, small in cases:
        res = decoders.measure(provider, wire, max(3, rounds))
        rates.append((label, small, res))
        if not res.ok:
            t.row(label, res.note, "", "", "", "", f"{len(wire.body) / 1e6:.1f} MB")
            continue
        t.row(label, res.decoder, f"{res.rate:,.0f}", f"{res.framed_rate:,.0f}", f"{res.mb_s:.1f}",
              f"{res.peak_bytes / 1e6:.1f} MB", f"{len(wire.body) / 1e6:.1f} MB")
    for label, small, res in rates:
        if small:
            t.budget(f"decoder alone >= 100,000 events/s: {label}",
                     f"{res.rate:,.0f}/s" if res.ok else res.note, res.ok and res.rate >= 100_000 if res.ok else None,
                     100_000 / res.rate if res.ok and res.rate else None)

    t.section(f"End to end: `chatcli ask --jsonl` vs `curl -N > /dev/null`, same loopback server ({rounds} rounds)")
    t.row("stream", "chatcli wall", "curl wall", "x curl", "events/s (stream phase)", "MB/s (stream phase)",
          "chatcli peak RSS")
    home = tmp / "home-e2e"
    for i, (provider, label, wire, small) in enumerate(cases):
        if not decoders.provider_present(provider):
            t.row(label, "n/a (provider not present)")
            if small:
                t.budget(f"end to end >= 50,000 events/s: {label}", "n/a (provider not present)", None, None)
            continue
        method, path, base, env_extra, args = E2E_ROUTES[provider]
        tag = f"e2e{i}"
        srv.route("*", rf"/{tag}/.*", lambda ex: ex.send_json(200, {}))
        srv.route(method, path.format(tag=tag), streamer(wire.body))
        url = srv.url + base.format(tag=tag)
        endpoint = srv.url + path.format(tag=tag).replace("(f/)?", "")
        cmd = [sys.executable, "-m", "chatcli", "ask", "--jsonl", "-p", provider, "--base-url", url, *args, "hi"]
        env = clean_env(home, **env_extra)
        curl = ["curl", "-sN", "-X", "POST", endpoint, "-H", "Content-Type: application/json", "-d", "{}"]
        check = run(cmd, env, capture=True, keep=True)
        problem = _check_jsonl(check, wire)
        if problem:
            t.row(label, f"n/a ({problem})")
            if small:
                t.budget(f"end to end >= 50,000 events/s: {label}", f"n/a ({problem})", None, None)
            continue
        cc: list[Run] = []
        cu: list[Run] = []
        for _ in range(rounds):
            cu.append(run(curl, env))
            cc.append(run(cmd, env, capture=True))
        phase = med(cc, lambda r: (r.last - r.first) if r.first is not None and r.last is not None else None)
        wall, cwall = med(cc), med(cu)
        rss = med(cc, lambda r: r.rss_mb)
        rate = wire.deltas / phase
        t.row(label, ms(wall), ms(cwall), f"{wall / cwall:.2f}", f"{rate:,.0f}", f"{check.size / 1e6 / phase:.1f}",
              f"{rss:.1f} MB")
        if small:
            t.budget(f"end to end >= 50,000 events/s: {label}", f"{rate:,.0f}/s", rate >= 50_000, 50_000 / rate)
        if "10 MB" in label:
            t.budget("peak memory < 80 MB for a 10 MB answer (chatcli ask --jsonl, RSS)", f"{rss:.1f} MB",
                     rss < 80, rss / 80)


def _check_jsonl(r: Run, wire: streams.Wire) -> str | None:
    if r.code != 0:
        tail = r.err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return f"exit {r.code}: {tail[0][:120]}"
    lines = r.out.splitlines()
    deltas = sum(1 for line in lines if line.startswith(b'{"type":"delta"'))
    done = json.loads(lines[-1]) if lines else {}
    if done.get("type") != "done" or done.get("text") != wire.text:
        return f"wrong answer: {deltas} deltas, last event {done.get('type')!r}"
    return None


def continue_latency(t: Table, srv: Any, homes: dict[int, Path], rounds: int) -> dict[int, list[Run]]:
    results: dict[int, list[Run]] = {10: [], 10000: []}
    cmd = [sys.executable, "-m", "chatcli", "continue", "and then?"]
    for n in results:
        r = run(cmd, clean_env(homes[n]), capture=True, keep=True)
        if r.code:
            print(f"warning: continue ({n}) exited {r.code}: {r.err.decode(errors='replace')[-300:]}",
                  file=sys.stderr)
    for _ in range(rounds):
        for n in results:
            results[n].append(run(cmd, clean_env(homes[n])))
    t.section(f"`chatcli continue` (whole command, short answer from the loopback server; {rounds} rounds)")
    t.row("stored conversations", "median wall", "ratio to 10", "peak RSS")
    for n, runs in results.items():
        t.row(f"{n:,}", ms(med(runs)), f"{med(runs) / med(results[10]):.2f}", f"{med(runs, lambda r: r.rss_mb):.1f} MB")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a rough look, ~1 minute)")
    ap.add_argument("--llm", help="path of an `llm` executable to compare with")
    ap.add_argument("--json", help="also write the raw medians here")
    args = ap.parse_args()
    rounds = 5 if args.quick else 15
    if not shutil.which("curl"):
        print("run.py needs curl", file=sys.stderr)
        return 2
    from loopback import LoopbackServer

    llm = find_llm(args.llm)
    console = find_console_script()
    t = Table()
    started = time.monotonic()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="chatcli-bench-") as tmpdir, LoopbackServer() as srv:
        srv._httpd.handle_error = lambda request, address: None  # clients closing keep-alive connections
        tmp = Path(tmpdir)
        srv.route("POST", r"/cont/v1/chat/completions", streamer(streams.openai(20).body))
        homes = {n: make_home(tmp / f"home-{n}", n, srv.url + "/cont/v1") for n in (10, 1000, 10000)}
        res = startup(t, tmp, homes, rounds, llm, console)
        tt = ttfb(t, srv, tmp, max(3, rounds // 2 if args.quick else rounds), llm)
        throughput(t, srv, tmp, 2 if args.quick else 5, args.quick)
        cont = continue_latency(t, srv, homes, rounds)

    base = med(res["python -c pass"])
    budgets = t.budgets[:]
    t.budgets.clear()
    v = med(res["chatcli --version"])
    t.budget("--version <= 3x python -c pass", f"{v / base:.2f}x", v / base <= 3, v / base / 3)
    for name in ("chatcli --help", "chatcli history (1,000)", "chatcli stop (nothing in flight)",
                 "TAB completion `chatcli hi<TAB>`"):
        m = med(res[name])
        t.budget(f"{name.removeprefix('chatcli ')} <= 120 ms", f"{ms(m)} (min {ms(min(r.wall for r in res[name]))}, "
                 f"CPU {ms(med(res[name], lambda r: r.cpu))})", m <= 0.120, m / 0.120)
    bad = t.data["startup_forbidden"]
    t.budget("no network library imported by --help/--version/history/stop/completion",
             "none" if not bad else "; ".join(f"{k}: {', '.join(v)}" for k, v in bad.items()), not bad, None)
    first = med(tt["chatcli ask (text)"], lambda r: r.first)
    curl = med(tt["curl -N"], lambda r: r.first)
    best = min(r.first or 0 for r in tt["chatcli ask (text)"]) - min(r.first or 0 for r in tt["curl -N"])
    t.budget("ask time to first text <= curl's + 150 ms", f"curl + {ms(first - curl)} (min: + {ms(best)})",
             first - curl <= 0.150, (first - curl) / 0.150)
    if "llm -m bench" in tt:
        lf = med(tt["llm -m bench"], lambda r: r.first)
        t.budget("ask time to first text <= 1/5 of llm's", f"{ms(first)} vs llm {ms(lf)}", first <= lf / 5,
                 first / (lf / 5))
    else:
        t.budget("ask time to first text <= 1/5 of llm's", "n/a (llm not installed)", None, None)
    t.budgets.extend(budgets)
    c10, c10k = med(cont[10]), med(cont[10000])
    t.budget("continue with 10,000 conversations <= 1.3x with 10", f"{c10k / c10:.2f}x", c10k / c10 <= 1.3,
             c10k / c10 / 1.3)

    print(f"chatcli benchmark  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average at start "
          f"{load0:.2f}, at end {os.getloadavg()[0]:.2f}, {'quick' if args.quick else 'full'} run, "
          f"{time.monotonic() - started:.0f} s)")
    base_min = min(r.wall for r in res["python -c pass"])
    if max(load0, os.getloadavg()[0]) > (os.cpu_count() or 1) or base > 1.5 * base_min:
        print(f"note: the machine was busy (load average above the CPU count, or `python -c pass` took "
              f"{ms(base)} median vs {ms(base_min)} at best): wall times are inflated; ratios measured "
              "side by side, min wall and CPU time are the steadier figures")
    print(f"chatcli from {ROOT} via `{Path(sys.executable).name} -m chatcli`"
          + (f"; console script {console}" if console else "; no chatcli console script found")
          + (f"; llm: {llm}" if llm else "; llm: not installed (comparisons marked n/a)"))
    t.print()
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": t.rows, "budgets": t.budgets}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
