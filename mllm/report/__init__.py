"""The report: every stage's results read from its run folder (summary.json, logs, figures), nothing typed by hand.

`write_report(runs, preset)` writes runs/REPORT.md with its figures copied into runs/report/; `python main.py
report --out docs/REPORT.md` writes the committed copy. A stage whose run is missing is named, not invented.
"""

from __future__ import annotations

import time
from pathlib import Path

from mllm.io import atomic_write

from .sections import SECTIONS, Context, hardware_section, summary_section


def write_report(runs: Path, preset: str = "cpu", out: Path | None = None) -> Path:
    """Write the markdown report for the runs of `preset` under `runs`; returns its path."""
    runs, out = Path(runs), Path(out) if out else Path(runs) / "REPORT.md"
    ctx = Context(runs, preset, out.parent, out.parent / f"{out.stem.lower()}_figures")
    parts = [f"# MLLM from scratch: the report ({preset} preset)\n",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python main.py report --preset {preset}` from the "
             f"run folders under `{runs}/`: every number below is read from a run's own summary, metrics and logs "
             f"(its config.json is kept beside them).\n",
             summary_section(ctx)]
    parts += [section(ctx) for section in SECTIONS]
    parts.append(hardware_section(ctx))
    challenges = Path(__file__).resolve().parents[2] / "docs" / "challenges.md"
    if challenges.is_file():
        parts.append(challenges.read_text())
    text = "\n".join(p.rstrip() + "\n" for p in parts)
    atomic_write(out, lambda f: f.write(text.encode()))
    return out


__all__ = ["write_report"]
