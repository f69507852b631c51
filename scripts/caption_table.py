"""One table of captioner runs on the Flickr8k test split: a main run with its baselines, and ablation runs.

    python scripts/caption_table.py results/mllm-cpu --ablations results/mllm-cpu-blind results/mllm-abl-word ...

Reads each run's summary.json (steps, wall time, best dev CIDEr-D, test metrics, config) and writes
<main run>/metrics_all.json and metrics_all.md. Every figure comes from those files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")


def load(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    summary["run"] = str(run)
    return summary


def describe(summary: dict, main: dict) -> str:
    """What a run's config changes against the main run's (model, init, augment and train keys)."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(main["config"]), flat(summary["config"])
    keys = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k) and k.split(".")[0] in
            ("model", "init", "augment", "train") and not k.startswith(("train.eval_interval", "train.checkpoint"))]
    return ", ".join(f"{k}={b.get(k)}" for k in keys) or "the main run"


def rows(main: dict, ablations: list[dict]) -> list[dict]:
    out = []
    for summary in [main, *ablations]:
        for name, metrics in summary["test"].items():
            if name.startswith("baseline") and summary is not main:
                continue  # the baselines need no training: listed once, from the main run
            out.append({"run": summary["run"], "captioner": name,
                        "differs": "" if name.startswith("baseline") else describe(summary, main),
                        "steps": summary["steps"], "minutes": round(summary["wall_time_s"] / 60, 1),
                        "dev_cider": summary.get("best_val_cider"),
                        **{k: metrics.get(k) for k in COLUMNS}, "distinct": metrics.get("distinct_candidates")})
    return out


def markdown(table: list[dict]) -> str:
    head = ["run", "captioner", "differs from the main run", "steps", "training min", "best dev CIDEr-D", *COLUMNS,
            "distinct"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        trained = bool(r["differs"])  # a baseline row: no training of its own
        cells = [f"`{r['run']}`", r["captioner"], r["differs"], str(r["steps"]) if trained else "-",
                 str(r["minutes"]) if trained else "-",
                 "-" if r["dev_cider"] is None or not trained else f"{r['dev_cider']:.3f}",
                 *("-" if r[k] is None else f"{r[k]:.3f}" for k in COLUMNS), str(r["distinct"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("main", type=Path)
    p.add_argument("--ablations", nargs="*", type=Path, default=[])
    args = p.parse_args()
    table = rows(load(args.main), [load(r) for r in args.ablations])
    (args.main / "metrics_all.json").write_text(json.dumps(table, indent=1) + "\n")
    text = ("# Captioners on the Flickr8k test split (1,000 images, 5 references each)\n\n"
            "Checkpoints chosen on dev CIDEr-D (greedy); the test split scored once per run. Ablations are shorter "
            "runs: compare them with each other and their own steps and minutes, not with the main run.\n\n"
            + markdown(table))
    (args.main / "metrics_all.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
