"""`exercise check`: run the project's real tests with the learner's code in place, and say in plain words
which behaviours pass and which are still missing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import Exercise, exercise
from .workspace import ExerciseError

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Check:
    test: str  # the test function's name
    behaviour: str  # what it checks, in plain words
    passed: bool = True
    problem: str = ""  # the first failure's message, shortened


@dataclass
class Result:
    exercise: Exercise
    checks: list[Check] = field(default_factory=list)
    load_error: str = ""

    @property
    def passed(self) -> bool:
        return not self.load_error and bool(self.checks) and all(c.passed for c in self.checks)

    def text(self) -> str:
        """The verdict in plain words, one line a behaviour."""
        ex = self.exercise
        if self.load_error:
            return (f"Exercise {ex.name}: your file could not be used, so no test ran.\n  {self.load_error}\n"
                    f"Fix that line and run `python main.py exercise check {ex.name}` again.")
        done = sum(c.passed for c in self.checks)
        lines = [f"Exercise {ex.name} ({ex.title}): {done} of {len(self.checks)} checks pass."]
        for c in self.checks:
            lines.append(f"  {'PASS' if c.passed else 'TODO'}  {c.behaviour}")
            if not c.passed:
                lines.append(f"        {c.problem}")
        if self.passed:
            lines.append(f"Well done. What you should see now: {ex.expect}")
        else:
            lines.append(f"Stuck? `python main.py exercise hint {ex.name}` gives the next hint.")
        return "\n".join(lines)


def explain(message: str) -> str:
    """A failure message in plain words: the stub's own message, or the assertion's first lines."""
    if "NotImplementedError" in message:
        found = re.search(r"NotImplementedError: (.*)", message)
        return f"not written yet ({found.group(1) if found else 'a stub still raises NotImplementedError'})"
    lines = [line.strip() for line in message.strip().splitlines()
             if line.strip() and not line.strip().startswith(("+", "where "))]  # pytest's introspection noise
    short = " / ".join(lines[:3])
    return f"still wrong: {short[:300]}"


def test_name(nodeid: str) -> str:
    return nodeid.split("::")[-1].split("[")[0]


def run_tests(pairs: list[tuple[str, Path]], timeout: float = 600) -> tuple[dict, str]:
    """Run every listed exercise's tests in one pytest process with the learner's files in place."""
    tests_dir = REPO / "tests"
    if not tests_dir.is_dir():
        raise ExerciseError(f"the project's tests are not at {tests_dir}: `exercise check` needs a clone of the "
                            f"repository (pip install -e .), not an installed copy")
    for name, path in pairs:
        if not path.is_file():
            raise ExerciseError(f"{path} does not exist; run `python main.py exercise start {name}` first")
    nodeids = [t for name, _ in pairs for t in exercise(name).tests]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        env = dict(os.environ, MLLM_EXERCISE_REPORT=str(report),
                   MLLM_EXERCISES=";".join(f"{n}={p.resolve()}" for n, p in pairs),
                   PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")  # the tests need no installed plugin; loading them is slow
        env.setdefault("OMP_NUM_THREADS", "1")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "mllm.exercises.plugin", "-p", "no:cacheprovider",
               "--no-header", "-rN", *nodeids]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        if not report.exists():
            raise ExerciseError(f"pytest did not run the tests (exit status {proc.returncode}):\n"
                                f"{(proc.stdout + proc.stderr)[-2000:]}")
        return json.loads(report.read_text(encoding="utf-8")), proc.stdout + proc.stderr


def grade(ex: Exercise, report: dict) -> Result:
    """The exercise's checks from a pytest run's report (one check per test function, parameters together)."""
    error = report.get("load_error")
    if error and error["exercise"] == ex.name:
        where = f"line {error['line']}: " if error.get("line") else ""
        return Result(ex, load_error=where + error["message"].splitlines()[-1])
    checks = {test_name(t): Check(test_name(t), ex.checks.get(test_name(t), test_name(t))) for t in ex.tests}
    ran = set()
    for entry in report["tests"]:
        check = checks.get(test_name(entry["nodeid"]))
        if check is None or entry["nodeid"].split("::")[0] not in {t.split("::")[0] for t in ex.tests}:
            continue
        ran.add(check.test)
        if entry["outcome"] == "failed" and check.passed:
            check.passed, check.problem = False, explain(entry["message"])
        elif entry["outcome"] == "skipped" and check.passed:
            check.passed, check.problem = False, f"skipped: {entry['message'] or 'see pytest -rs'}"
    for check in checks.values():
        if check.test not in ran:
            check.passed, check.problem = False, "did not run"
    return Result(ex, list(checks.values()))


def check(name: str, path: Path) -> Result:
    """Run exercise `name`'s tests against the learner's file `path`."""
    report, _ = run_tests([(name, path)])
    return grade(exercise(name), report)


def check_many(pairs: list[tuple[str, Path]]) -> list[Result]:
    """Several exercises in one pytest process (their targets must not overlap)."""
    report, _ = run_tests(pairs)
    return [grade(exercise(name), report) for name, _ in pairs]


def check_jobs(jobs: list[list[tuple[str, Path]]], timeout: float = 900) -> list[list[Result]]:
    """Several independent checks (each a list of exercises and files) in one process start, forked per job."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "jobs.json", Path(tmp) / "reports.json"
        spec.write_text(json.dumps([[[n, str(p.resolve())] for n, p in job] for job in jobs]), encoding="utf-8")
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        proc = subprocess.run([sys.executable, "-m", "mllm.exercises.batch", str(spec), str(out)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=timeout)
        if not out.exists():
            raise ExerciseError(f"the batch did not finish (exit status {proc.returncode}):\n{proc.stderr[-2000:]}")
        reports = json.loads(out.read_text(encoding="utf-8"))
    return [[grade(exercise(n), report) for n, _ in job] for job, report in zip(jobs, reports, strict=True)]
