"""Copy a finished run's small artefacts (no checkpoints) into results/<name>/ and print its README row.

    python scripts/collect_results.py runs/gpt-cpu runs/vit-cpu [--log runs/gpt-cpu.log ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

KEEP = ("config.json", "metrics.jsonl", "summary.json", "curves.png", "samples.md", "style.json",
        "samples_during_training.txt", "confusion.png", "attention.png", "predictions.png", "per_class_accuracy.json",
        "metrics.json", "metrics.md", "captions_test.json", "gallery.png")


def row(summary: dict) -> str:
    m = summary["machine"]
    where = m.get("gpu") or f"{m['cpu']} ({m['torch_threads']} threads)"
    if summary["kind"] == "gpt":
        figure = f"val loss {summary['val_loss']:.4f}"
    elif summary["kind"] == "captioner":
        beam = next(v for k, v in summary["test"].items() if "beam" in k and k.startswith(("captioner", "SCST",
                                                                                            "blind")))
        figure = f"test beam BLEU-4 {beam['BLEU-4']:.3f}, CIDEr-D {beam['CIDEr-D']:.3f}"
    else:
        figure = f"test accuracy {summary['test_accuracy'] * 100:.2f}%"
    return (f"| {summary['kind']} | {summary['preset']} | {figure} | {summary['steps']} | "
            f"{summary['wall_time_s'] / 60:.1f} min | {where} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--log", nargs="*", default=[], help="console logs to keep beside the runs, in the same order")
    p.add_argument("--out", default="results")
    args = p.parse_args()
    for i, run in enumerate(map(Path, args.runs)):
        dest = Path(args.out) / run.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            if (run / name).is_file():
                shutil.copy2(run / name, dest / name)
        if i < len(args.log):
            shutil.copy2(args.log[i], dest / "train.log")
        print(row(json.loads((run / "summary.json").read_text())))


if __name__ == "__main__":
    main()
