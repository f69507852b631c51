"""Mean and standard deviation across seeds of finished runs' dev and test metrics, as a Markdown table.

    python scripts/seed_table.py runs/rl-cpu-mean-s0 runs/rl-cpu-mean-s1 ... --out runs/rl-cpu-seeds.md
    python scripts/seed_table.py --dev runs/mllm-dev-ref-s0 ...   # runs without a test report: dev only

Reads each run's summary.json. Runs are grouped by their folder name without its seed suffix (`-s0`,
`-seed1`); within a group every config key but train.seed (and where the data and device were) must agree, and
no seed may appear twice. Each group gives one line per decoding of its test report (e.g. "SCST, greedy"): the
best dev CIDEr-D, then the test metrics and diagnostics, each as mean +- standard deviation over the seeds
(n - 1 in the denominator; a single seed shows its value alone). With --dev, one line per group from each run's
metrics.jsonl: the best dev CIDEr-D, the step it came at, the dev loss and distinct dev captions of that evaluation,
and the training time.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

COLUMNS = {"CIDEr-D": "CIDEr-D", "BLEU-4": "BLEU-4", "distinct": "distinct", "top_share": "top share",
           "vocabulary": "words", "bad_endings": "bad endings", "hallucination_per_caption": "hallucination"}
IGNORED = ("train.seed", "data.root", "data.mirror", "train.device")
SEED_SUFFIX = re.compile(r"[-_](s|seed)\d+$")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def group_runs(runs: list[Path]) -> dict[str, list[dict]]:
    """{group label: [summary, ...]} of finished runs; raises ValueError naming a run that breaks the rules."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        path = Path(run) / "summary.json"
        if not path.is_file():
            raise ValueError(f"{run}: no summary.json (the run is not finished); finish it or leave it out")
        summary = json.loads(path.read_text())
        summary["run"] = str(run)
        groups.setdefault(SEED_SUFFIX.sub("", Path(run).name), []).append(summary)
    for label, members in groups.items():
        first = {k: v for k, v in _flat(members[0].get("config", {})).items() if k not in IGNORED}
        seeds = [m.get("config", {}).get("train", {}).get("seed") for m in members]
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"group {label}: seed {max(seeds, key=seeds.count)} appears twice; give each run of a "
                             f"group its own train.seed")
        for m in members[1:]:
            other = {k: v for k, v in _flat(m.get("config", {})).items() if k not in IGNORED}
            differ = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            if differ:
                raise ValueError(f"group {label}: {m['run']} differs from {members[0]['run']} in "
                                 f"{', '.join(differ[:5])} (only train.seed may differ); name runs of another "
                                 f"setting differently")
    return groups


def mean_std(values: list[float]) -> str:
    """'0.296 ± 0.004' over the values (sample standard deviation); one value alone; '-' for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    digits = 1 if all(float(v).is_integer() and abs(v) >= 10 for v in values) else 3
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def seed_table(runs: list[Path]) -> str:
    """The Markdown table of `group_runs(runs)`: one line per group and test decoding."""
    lines = ["| runs | seeds | test captions | best dev CIDEr-D | " + " | ".join(COLUMNS.values()) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for label, members in group_runs(runs).items():
        seeds = ", ".join(str(m.get("config", {}).get("train", {}).get("seed")) for m in members)
        dev = mean_std([m.get("best_val_cider") for m in members])
        names = list((members[0].get("test") or {}).keys()) or ["-"]
        for name in names:
            rows = [(m.get("test") or {}).get(name, {}) for m in members]
            cells = [mean_std([r.get(k) for r in rows]) for k in COLUMNS]
            lines.append(f"| {label} | {seeds} | {name} | {dev} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def dev_table(runs: list[Path]) -> str:
    """The Markdown table of the dev evaluations of `group_runs(runs)`: each run's best one (by dev CIDEr-D)."""
    lines = ["| runs | seeds | best dev CIDEr-D | at step | dev loss there | distinct dev captions there | minutes |",
             "|---|---|---|---|---|---|---|"]
    for label, members in group_runs(runs).items():
        best = []
        for m in members:
            records = [json.loads(line) for line in (Path(m["run"]) / "metrics.jsonl").read_text().splitlines()]
            evals = [r for r in records if "val_cider" in r]
            if not evals:
                raise ValueError(f"{m['run']}: no dev evaluation (val_cider) in metrics.jsonl")
            best.append(max(evals, key=lambda r: r["val_cider"]))
        seeds = ", ".join(str(m.get("config", {}).get("train", {}).get("seed")) for m in members)
        cells = [mean_std([b["val_cider"] for b in best]), mean_std([b["step"] for b in best]),
                 mean_std([b.get("val_loss", b.get("val_xe")) for b in best]),
                 mean_std([b.get("val_distinct") for b in best]),
                 mean_std([m["wall_time_s"] / 60 if "wall_time_s" in m else None for m in members])]
        lines.append(f"| {label} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with summary.json")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--dev", action="store_true", help="the dev evaluations (runs without a test report)")
    args = parser.parse_args(argv)
    try:
        table = dev_table(args.runs) if args.dev else seed_table(args.runs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table, end="")
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
