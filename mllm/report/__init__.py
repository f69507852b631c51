"""The report: every stage's results read from its run folder (summary.json, logs, figures), nothing typed by hand.

`write_report(runs, preset)` writes runs/REPORT.md with its figures copied into runs/report_figures/; `python main.py
report --out docs/REPORT.md` writes the committed copy, `--html`/`--pdf` one self-contained file of it
(`mllm.report.html`). The test stage keeps the suite's result per file and a picture of its console
(`mllm.report.testrun`). A stage whose run is missing is named, not invented.

The package imports its modules when they are used, so that the pytest plugin (`mllm.report.pytest_plugin`) loads
without torch.
"""

from __future__ import annotations

from pathlib import Path


def write_report(runs: Path, preset: str = "cpu", out: Path | None = None, tests_ran: bool | None = None) -> Path:
    """Write the markdown report for the runs of `preset` under `runs`; returns its path (see `writer`)."""
    from .writer import write_report as write

    return write(runs, preset, out, tests_ran)


__all__ = ["write_report"]
