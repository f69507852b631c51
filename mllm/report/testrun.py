"""The test stage: run pytest with the results plugin, keep in <runs>/tests/ its result per file and per test
(results.json, pytest's own counts), its console output (console.txt) and a picture of that console
(screenshot.png); and the report's section made from them, the core's three files first."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm.io import atomic_write_json, git_output

from .pytest_plugin import ENV
from .terminal import render_terminal

REPO = Path(__file__).resolve().parents[2]
FOLDER, RESULTS, CONSOLE, SCREENSHOT = "tests", "results.json", "console.txt", "screenshot.png"
CORE = ("test_attention.py", "test_blocks.py", "test_transformer.py")  # the Transformer core's tests
FLAGS = ("-p", "no:cacheprovider", "-p", "mllm.report.pytest_plugin", "--color=yes", "-ra", "--tb=short",
         "--disable-warnings")
COLUMNS = ("passed", "failed", "error", "skipped")  # then any other outcome that occurred (xfailed, ...)
BAD = ("failed", "error", "skipped", "xpassed")  # shown in red
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _machine() -> dict[str, Any]:
    import torch

    from mllm.training.runtime import machine_info

    return machine_info(torch.device("cpu"))


def run_tests(out_dir: Path, args: Sequence[str] = (), root: Path = REPO, columns: int = 100) -> dict[str, Any]:
    """Run `python -m pytest [args]` in `root`; write results.json, console.txt and screenshot.png to `out_dir`
    (an older result there is removed first) and return the results. A failing suite is a result, not an error."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (RESULTS, CONSOLE, SCREENSHOT):
        (out_dir / name).unlink(missing_ok=True)
    raw = out_dir / ".plugin-results.json"
    raw.unlink(missing_ok=True)
    command = ["python", "-m", "pytest", *FLAGS, *args]
    env = {**os.environ, ENV: str(raw.resolve()), "COLUMNS": str(columns)}
    start = time.time()
    proc = subprocess.run([sys.executable, *command[1:]], cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace")
    seconds = time.time() - start
    (out_dir / CONSOLE).write_text(ANSI.sub("", proc.stdout))
    if raw.is_file():
        result = json.loads(raw.read_text())
        raw.unlink()
    else:  # pytest stopped before its summary (a usage error, an internal error)
        tail = ANSI.sub("", proc.stdout).strip().splitlines()[-3:]
        result = {"summary": None, "counts": {}, "files": [], "tests": [],
                  "error": f"pytest exited with code {proc.returncode} before its summary: {' | '.join(tail)}"}
    commit, dirty = git_output(root, "rev-parse", "--short", "HEAD"), git_output(root, "status", "--porcelain", "-uno")
    result.update({"command": shlex.join(command), "exit_code": proc.returncode, "wall_time_s": round(seconds, 1),
                   "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit, "uncommitted_changes": bool(dirty),
                   "machine": _machine(), "console": CONSOLE, "screenshot": SCREENSHOT})
    render_terminal(proc.stdout, out_dir / SCREENSHOT, shlex.join(command), columns=columns,
                    where=str(out_dir / CONSOLE))
    atomic_write_json(out_dir / RESULTS, result)
    print(f"{result['summary'] or result.get('error')} in {seconds:.1f} s (exit code {proc.returncode}); "
          f"per-file results and a screenshot in {out_dir}")
    return result


def ordered_files(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The core's three test files first (in CORE's order), then the others by path."""
    def key(f: dict[str, Any]) -> tuple[int, str]:
        name = Path(f["file"]).name
        return (CORE.index(name) if name in CORE else len(CORE), f["file"])
    return sorted(files, key=key)


def _cell(n: int, outcome: str) -> str:
    return f'<b class="bad">{n}</b>' if n and outcome in BAD else str(n)


def results_table(result: dict[str, Any]) -> str:
    """Markdown: one row per file (its count of each outcome and its tests' time), then the whole session."""
    seen = {k for f in result["files"] for k in f["counts"]} | set(result["counts"])
    columns = [*COLUMNS, *sorted(seen - set(COLUMNS))]
    rows = [f"| file | {' | '.join('errors' if c == 'error' else c for c in columns)} | time |",
            "|---" * (len(columns) + 2) + "|"]
    for f in ordered_files(result["files"]):
        bad = any(f["counts"].get(c) for c in BAD)
        name = f'<b class="bad">{f["file"]}</b>' if bad else f"`{f['file']}`"
        core = " (core)" if Path(f["file"]).name in CORE else ""
        rows.append(f"| {name}{core} | " + " | ".join(_cell(f["counts"].get(c, 0), c) for c in columns)
                    + f" | {f['seconds']:.1f} s |")
    rows.append("| **all** | " + " | ".join(f"**{_cell(result['counts'].get(c, 0), c)}**" for c in columns)
                + f" | {result['seconds']:.1f} s |")
    return "\n".join(rows) + "\n"


def _not_passed(result: dict[str, Any], limit: int = 30) -> str:
    bad = [t for t in result["tests"] if any(o in BAD for o in t["outcomes"])]
    if not bad:
        return ""
    lines = ["Tests that did not pass (in red above):\n"]
    for t in bad[:limit]:
        reason = f": {t['message']}" if t.get("message") else ""
        lines.append(f'- <b class="bad">{"/".join(t["outcomes"])}</b> `{t["nodeid"]}`{reason}')
    if len(bad) > limit:
        lines.append(f"- ... and {len(bad) - limit} more (all of them: results.json)")
    return "\n".join(lines) + "\n"


def tests_section(runs: Path, out_dir: Path, fig_dir: Path, tests_ran: bool | None) -> str:
    """The report's section on the test suite. `tests_ran` as in `write_report`: False shows no kept result."""
    head, folder = "## The test suite\n\n", Path(runs) / FOLDER
    if tests_ran is False:
        return head + (f"*The test stage did not run in this demo (`--no-tests`), so no test result is shown: "
                       f"`python main.py report --tests --runs {runs}` runs the suite and writes it here.*\n")
    if not (folder / RESULTS).is_file():
        legacy = Path(runs) / "tests.json"  # written before per-file results were kept: its closing line only
        if legacy.is_file():
            t = json.loads(legacy.read_text())
            return head + (f"`{t['command']}` on {t['date']}: **{t['summary']}** (exit code {t['exit_code']}; "
                           f"no per-file results were kept by that run: `python main.py report --tests` "
                           f"records them).\n")
        return head + f"*No test result is kept under `{folder}`: `python main.py report --tests` runs the suite.*\n"
    r = json.loads((folder / RESULTS).read_text())
    when = ("The test stage ran for this report and finished" if tests_ran else
            "The test stage did not run for this report: the result below is from a run of it that finished")
    commit = f" at commit `{r['commit']}`" + (" with uncommitted changes" if r["uncommitted_changes"] else "") \
        if r.get("commit") else ""
    m = r["machine"]
    verdict = ("every test passed" if r["exit_code"] == 0 else
               f'<b class="bad">NOT all passed (pytest exit code {r["exit_code"]})</b>')
    summary = r["summary"] or f'<b class="bad">{r.get("error")}</b>'
    parts = [f"{when} on {r['date']}{commit}, on {m.get('cpu', '?')} ({m.get('cpu_count', '?')} cores, Python "
             f"{m.get('python')}, torch {m.get('torch')}): `{r['command']}`.\n",
             f"pytest's count: **{summary}** (session {r.get('seconds', 0):.1f} s); {verdict}. "
             f"Per file (the Transformer core's three files first; time = the file's tests' own time, the whole "
             f"run took {r['wall_time_s'] / 60:.1f} min):\n", results_table(r) if r["files"] else "",
             _not_passed(r)]
    shot = folder / SCREENSHOT
    if shot.is_file():
        fig_dir.mkdir(parents=True, exist_ok=True)
        target = fig_dir / "tests-screenshot.png"
        target.write_bytes(shot.read_bytes())
        parts.append(f"The session as it appeared in the terminal (`{folder / CONSOLE}` holds its text):\n\n"
                     f"![the pytest session: per-file lines and the closing summary]"
                     f"({target.relative_to(out_dir).as_posix()})\n")
    return head + "\n".join(p for p in parts if p)
