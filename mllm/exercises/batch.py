"""Many `exercise check` runs for the price of one start: import torch and the project once, then run each
job's pytest in a forked child (POSIX only). `python -m mllm.exercises.batch JOBS.json OUT.json`, where
JOBS.json is a list of jobs, each a list of [exercise, learner file]; OUT.json gets one report per job."""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

from .catalog import exercise

REPO = Path(__file__).resolve().parents[2]


def run_job(pairs: list[list[str]], report: Path) -> None:
    """In a forked child: the job's tests through pytest.main with the plugin; never returns."""
    os.environ["MLLM_EXERCISES"] = ";".join(f"{n}={Path(p).resolve()}" for n, p in pairs)
    os.environ["MLLM_EXERCISE_REPORT"] = str(report)
    nodeids = [t for name, _ in pairs for t in exercise(name).tests]
    import pytest

    with open(os.devnull, "w") as quiet:
        os.dup2(quiet.fileno(), 1)
        code = pytest.main(["-q", "-p", "mllm.exercises.plugin", "-p", "no:cacheprovider", *nodeids])
    os._exit(int(code))


def main(argv: list[str]) -> int:
    jobs = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    os.chdir(REPO)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the tests need no installed plugin; loading them is slow
    for module in ("torch", "pytest", "numpy", "pycocoevalcap.cider.cider", "mllm.multimodal.mllm",
                   "mllm.rl.train", "mllm.vision.analysis", "mllm.language.train"):
        importlib.import_module(module)  # the parent pays for these once; every child inherits them
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, pairs in enumerate(jobs):
            report = Path(tmp) / f"{i}.json"
            pid = os.fork()
            if pid == 0:
                run_job(pairs, report)
            os.waitpid(pid, 0)
            reports.append(json.loads(report.read_text(encoding="utf-8")) if report.exists()
                           else {"tests": [], "load_error": {"exercise": pairs[0][0], "message": "pytest crashed"}})
    Path(argv[1]).write_text(json.dumps(reports), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
