"""A pytest plugin that keeps the session's result per test and per file as JSON, from pytest's own records.

Loaded with `-p mllm.report.pytest_plugin` and the environment variable MLLM_TEST_RESULTS naming the JSON file
to write (without it the plugin does nothing). It reads the terminal reporter's `stats` (the lists of reports
that pytest's closing line counts) and `build_summary_stats_line()` (that line's words), so the numbers written
are pytest's own: nothing is parsed from the console.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

ENV = "MLLM_TEST_RESULTS"
_START: list[float] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _START.append(time.time())


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _message(report: Any) -> str | None:
    """The one-line reason of a skip, or the crash message of a failure or error; None for a pass."""
    longrepr = getattr(report, "longrepr", None)
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(longrepr)
    return text.strip().splitlines()[0][:300] if text.strip() else None


def collect_results(stats: dict[str, list[Any]], summary_words: list[str], seconds: float) -> dict[str, Any]:
    """Counts per outcome (pytest's categories: passed, failed, skipped, error, xfailed, xpassed, deselected)
    for the session, for each file and for each test, with the time spent in each file's tests."""
    files: dict[str, dict[str, Any]] = {}
    tests: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for category, reports in stats.items():
        if category == "warnings":
            continue
        for report in reports:
            nodeid = getattr(report, "nodeid", None)
            if nodeid is None:
                continue
            f = files.setdefault(_file_of(nodeid), {"file": _file_of(nodeid), "counts": {}, "seconds": 0.0})
            t = tests.setdefault(nodeid, {"nodeid": nodeid, "outcomes": [], "seconds": 0.0})
            duration = float(getattr(report, "duration", 0.0) or 0.0)
            f["seconds"] += duration
            t["seconds"] += duration
            if category and getattr(report, "count_towards_summary", True):
                f["counts"][category] = f["counts"].get(category, 0) + 1
                counts[category] = counts.get(category, 0) + 1
                t["outcomes"].append(category)
                if category != "passed" and _message(report):
                    t["message"] = _message(report)
    for entry in (*files.values(), *tests.values()):
        entry["seconds"] = round(entry["seconds"], 3)
    return {"summary": ", ".join(summary_words), "counts": counts, "seconds": round(seconds, 2),
            "files": sorted(files.values(), key=lambda f: f["file"]),
            "tests": [t for t in tests.values() if t["outcomes"]]}


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    words = [text for text, _ in terminalreporter.build_summary_stats_line()[0]]
    seconds = time.time() - _START[0] if _START else 0.0
    result = collect_results(terminalreporter.stats, words, seconds)
    result["exit_status"] = int(exitstatus)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1))
