"""A trade-off over a training setting: each SCST run's dev evaluation at one step, CIDEr-D against distinct dev
captions, one point per run marked with its value of a config key.

    python scripts/run_curve.py runs/rl-cpu-mean-s0 runs/rl-dev-xe0.2-r1-s0 runs/rl-dev-xe1.0-r1-s0 \
        --key rl.xe_weight --step 750 --out results/rl-dev/xe-curve.png

Reads each run's config.json and metrics.jsonl (the evaluations: val_cider, val_distinct, val_top_share, greedy
decoding on the dev split, scored like test). Dev only: nothing here reads the test split. Runs may differ in
other keys too (say rl.xe_refs): give --label KEY to print it beside each point.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from variety_curve import save_trade_off  # noqa: E402  (scripts/, the folder Python runs this file from)


def setting(config: dict, key: str):
    """The value of a dotted key in a run's config (None if the run's config predates the key)."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def evaluation(run: Path, step: int) -> dict:
    """The run's dev evaluation logged at `step`."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("step") == step and "val_cider" in row:
            return row
    raise SystemExit(f"{run}: no dev evaluation at step {step} in metrics.jsonl (evaluations every "
                     f"train.eval_interval steps); pick a step it evaluated at")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="SCST run folders")
    p.add_argument("--key", required=True, help="the config key that varies, e.g. rl.xe_weight")
    p.add_argument("--label", action="append", default=[], help="another config key to print at each point")
    p.add_argument("--step", type=int, required=True, help="the evaluation step to compare at")
    p.add_argument("--out", required=True, help="the PNG to write")
    args = p.parse_args()
    points = []
    for run in args.runs:
        config = json.loads((run / "config.json").read_text())
        row = evaluation(run, args.step)
        extra = ", ".join(f"{k.split('.')[-1]} {setting(config, k)}" for k in args.label)
        points.append((setting(config, args.key) or 0.0, row["val_distinct"], row["val_cider"], extra))
        print(f"{run}: {args.key}={points[-1][0]} dev CIDEr-D {row['val_cider']:.4f}, {row['val_distinct']:.0f} "
              f"distinct, top caption share {row['val_top_share']:.3f} {extra}")
    points.sort()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.plot([q[1] for q in points], [q[2] for q in points], "o")
    for value, x, y, extra in points:
        ax.annotate(f"{value:g}" + (f" ({extra})" if extra else ""), (x, y), textcoords="offset points",
                    xytext=(4, 4), fontsize=9)
    save_trade_off(fig, ax, "distinct dev captions (of 1,000)", "dev CIDEr-D (greedy)",
                   f"SCST at step {args.step}: dev CIDEr-D against variety over {args.key}", args.out)


if __name__ == "__main__":
    main()
