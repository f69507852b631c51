"""`python main.py demo`: every stage that has landed, in order, each skipped if its run is complete."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mllm.data.prepare import prepare_all


def run_demo(preset: str = "cpu", data_root: str | None = None, mirror: str | None = None,
             runs: str = "runs") -> int:
    from mllm.cli import main as cli

    data = ["--data-root", data_root or "data"] + (["--data-mirror", mirror] if mirror else [])
    print("== 1/4 data ==")
    prepare_all(data_root or "data", mirror)
    print("== 2/4 Transformer core: reverse digit strings ==")
    if cli(["reverse", "--seconds", "120"]) != 0:
        return 1
    results = {}
    for i, (command, name) in enumerate([("train-llm", "gpt"), ("train-vit", "vit")], start=3):
        run_dir = Path(runs) / f"{name}-{preset}"
        print(f"== {i}/4 {command} --preset {preset} -> {run_dir} ==")
        if not (run_dir / "summary.json").is_file():
            resume = ["--resume"] if (run_dir / "last.pt").is_file() else []
            if cli([command, "--preset", preset, "--run-dir", str(run_dir), *data, *resume]) != 0:
                return 1
        results[name] = json.loads((run_dir / "summary.json").read_text())
    gpt, vit = results["gpt"], results["vit"]
    print("\n== results ==")
    print(f"char GPT  val loss {gpt['val_loss']:.4f} (nats/char)  {gpt['wall_time_s'] / 60:.1f} min  "
          f"samples: {Path(runs) / f'gpt-{preset}' / 'samples.md'}")
    print(f"ViT       test accuracy {vit['test_accuracy']:.4f}  {vit['wall_time_s'] / 60:.1f} min  "
          f"figures: {Path(runs) / f'vit-{preset}'}")
    return 0


def demo_command(args: argparse.Namespace) -> int:
    return run_demo(args.preset, args.data_root, args.data_mirror, args.runs)
