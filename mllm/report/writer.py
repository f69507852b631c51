"""The markdown report: its sections in order, figures copied beside it, the challenges inlined under docs/."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mllm.io import atomic_write
from mllm.training.config import ConfigError

from .sections import SECTIONS, STAGE_FOLDERS, Context, hardware_section, summary_section

DOCS = Path(__file__).resolve().parents[2] / "docs"


def write_report(runs: Path, preset: str = "cpu", out: Path | None = None, tests_ran: bool | None = None) -> Path:
    """Write the markdown report for the runs of `preset` under `runs`; returns its path. `tests_ran`: True when
    the test stage ran just before (a demo), False when a demo left it out (its section says so and shows no
    older result), None for `report` (the kept result is shown with when and where it was recorded)."""
    runs = Path(runs)
    out = Path(out) if out else runs / "REPORT.md"
    ctx = Context(runs, preset, out.parent, out.parent / f"{out.stem.lower()}_figures", tests_ran)
    found = [stage for stage in STAGE_FOLDERS if ctx.summary(stage)]
    if not found:
        there = sorted({p.parent.name for p in runs.glob("*/summary.json")})
        raise ConfigError(f"no finished run of preset {preset!r} under {runs}/ (looked for "
                          f"{', '.join(str(ctx.folder(s).name) for s in STAGE_FOLDERS)}; found: "
                          f"{', '.join(there) or 'none'}); pass --runs and --preset of runs that exist")
    parts = [f"# MLLM from scratch: the report ({preset} preset)\n",
             f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python main.py report --runs {runs} --preset {preset}` "
             f"from the run folders under `{runs}/`: every number in the sections below up to the challenges is read "
             f"from a run's own summary, metrics and logs (its config.json is kept beside them).\n",
             summary_section(ctx)]
    parts += [section(ctx) for section in SECTIONS]
    parts.append(hardware_section(ctx))
    challenges = DOCS / "challenges.md"
    if challenges.is_file() and out.parent.resolve() == DOCS:  # its links are relative to docs/
        parts.append(challenges.read_text())
    elif challenges.is_file():
        parts.append(f"## Challenges and solutions\n\nThe problems met while building this, with the evidence: "
                     f"[`docs/challenges.md`]({Path(os.path.relpath(challenges, out.parent.resolve())).as_posix()}).\n")
    text = "\n".join(p.rstrip() + "\n" for p in parts)
    atomic_write(out, lambda f: f.write(text.encode()))
    return out

