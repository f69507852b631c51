"""Score a finished captioner or SCST run's test split again with other decoding settings, chosen on dev before.

    python scripts/rescore_test.py runs/mllm-cpu --out results/mllm-cpu/no-repeat-2 eval.no_repeat=2

The run's best.pt is decoded with its saved config plus the given `eval.*` overrides (nothing that would change
training), and the run's own test report (`write_report`, or `write_rl_report` for SCST, which decodes the
supervised captioner with the same settings) is written into --out with the config used and `rescore.json`
(the run, the overrides, the checkpoint's sha256, the wall time). Choose the settings with `dev_decode.py` first:
this reads the test split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import time
from pathlib import Path

import torch

from mllm.checkpoint import load_checkpoint, load_weights
from mllm.data import prepare_flickr8k
from mllm.io import atomic_write_json
from mllm.training.config import Config, apply_overrides, with_added_keys
from mllm.training.launch import data_location
from mllm.training.runtime import seed_everything


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished train-mllm or train-rl run folder (its best.pt is scored)")
    p.add_argument("--out", type=Path, required=True, help="folder for the new report (must not hold one)")
    p.add_argument("--mirror", default=None, help="where the data archives are now (default: the run's)")
    p.add_argument("overrides", nargs="*", help="eval.KEY=VALUE settings, e.g. eval.no_repeat=2")
    args = p.parse_intermixed_args()
    bad = [o for o in args.overrides if not o.startswith("eval.") or o.startswith(("eval.test=", "eval.test_images="))]
    if bad:
        raise SystemExit(f"only decoding settings (eval.*, not the test split's size) may change here: {bad}")
    if (args.out / "metrics.json").exists():
        raise SystemExit(f"{args.out} already holds a report; choose another --out")
    saved = json.loads((args.run / "config.json").read_text())
    is_rl = "rl" in saved
    saved, added = with_added_keys(saved, "rl" if is_rl else "mllm")
    cfg: Config = apply_overrides(saved, args.overrides)
    if not cfg.eval.test:
        raise SystemExit(f"{args.run} is a run with eval.test=false (compared on dev only): its test split stays "
                         "unread")
    if args.mirror:
        cfg.data.mirror = args.mirror
    start = time.time()
    seed_everything(cfg.train.seed)
    data = prepare_flickr8k(*data_location(cfg), image_size=cfg.model.image_size)
    if is_rl:
        from mllm.rl.train import SCSTTask as Task
    else:
        from mllm.multimodal.train import CaptioningTask as Task
    task = Task(cfg, data)
    best = args.run / "best.pt"
    state = load_checkpoint(best, task.kind)
    load_weights(task.model, state["model"], best)
    model = task.model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        summary = task.finish(model, args.out, print)
    atomic_write_json(args.out / "config.json", cfg.to_dict())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    atomic_write_json(args.out / "rescore.json", {
        "run": str(args.run), "overrides": args.overrides, "keys_added_at_defaults": added, "commit": commit,
        "best_pt_sha256": hashlib.sha256(best.read_bytes()).hexdigest(), "seconds": round(time.time() - start, 1),
        "summary": {k: v for k, v in summary.items() if k != "test"}})
    print(f"report written to {args.out} ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
