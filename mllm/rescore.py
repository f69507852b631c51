"""A finished captioner or SCST run's test report written again with other decoding settings (`eval.*`).

Training is not repeated: the run's best.pt is decoded with its saved config plus the overrides, and the run's own
test report (`write_report`, or `write_rl_report` for SCST, which decodes the supervised captioner the same way) is
written. `scripts/rescore_test.py` writes it into a new folder; `make demo` re-scores a finished stage in place when
only decoding settings differ from the preset's (a run trained before a decoding key existed, say), keeping the
previous report in <run>/report-before-rescore-N/. Choose decoding settings on dev (`scripts/dev_decode.py`) first.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mllm.checkpoint import load_checkpoint, load_weights
from mllm.io import atomic_write_json, git_output
from mllm.training.config import Config, ConfigError, apply_overrides, with_added_keys
from mllm.training.launch import data_location
from mllm.training.lineage import file_sha256
from mllm.training.runtime import pick_device, seed_everything

SPLIT_KEYS = ("eval.test", "eval.test_images", "eval.val_images")  # which images are scored: not decoding
REPORT_FILES = ("metrics.json", "metrics.md", "captions_test.json", "gallery.png", "config.json", "summary.json")


def is_decoding_key(key: str) -> bool:
    """A config key that changes how test captions are decoded and nothing that was trained."""
    return key.startswith("eval.") and key not in SPLIT_KEYS


def trained_eval_keys(cfg: dict) -> set[str]:
    """The eval.* keys that the run's training itself decoded with (then training settings, not only the test
    report's): SCST's grounded policy uses eval.grounding; its beam samples (rl.sampler=beam), every beam setting."""
    rl = cfg.get("rl") or {}
    keys = {"eval.grounding"} if rl.get("grounded") else set()
    if rl.get("sampler") == "beam":
        keys |= {"eval.grounding", "eval.beam_size", "eval.length_penalty", "eval.no_repeat", "eval.max_len"}
    return keys


def decoding_overrides(changes: dict[str, tuple[Any, Any]], run: Path) -> list[str]:
    """eval.KEY=VALUE overrides that take the finished run in `run` to the new values of `changes` ({key: (run's,
    new)}), when every change is a decoding setting; else [] (something that was trained differs, or nothing does)."""
    if not changes or not all(is_decoding_key(k) for k in changes):
        return []
    if trained_eval_keys(json.loads((run / "config.json").read_text())) & changes.keys():
        return []
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, (_, v) in changes.items()]


def decoding_device(name: str) -> torch.device:
    """The device the run's config names (auto: the best one here), or the CPU where this machine lacks it: a
    gpu-preset run re-scored where it trained decodes on its GPU, and anywhere else on the CPU."""
    try:
        return pick_device(name)
    except ValueError:
        return torch.device("cpu")


def rescore(run: Path, out: Path, overrides: list[str], mirror: str | None = None, data_root: str | None = None,
            log: Callable[[str], None] = print, inits: list[str] = ()) -> dict[str, Any]:
    """Write `run`'s test report, decoded with `overrides` (eval.KEY=VALUE), into `out` with the config used.

    `inits` (init.KEY=PATH) say where the checkpoints the run started from are now, if they moved. Returns the
    record kept in rescore.json (the run, the overrides, keys added at their defaults, the commit, the checkpoint scored
    and its sha256, seconds) with the report's summary under "summary" (its test metrics included).
    """
    bad = [o for o in overrides if not is_decoding_key(o.split("=", 1)[0])]
    bad += [o for o in inits if not o.startswith("init.")]
    if bad:
        raise ConfigError(f"only decoding settings (eval.*, not which images are scored) may change here: {bad}")
    saved = json.loads((run / "config.json").read_text())
    trained = sorted(trained_eval_keys(saved) & {o.split("=", 1)[0] for o in overrides})
    if trained:
        raise ConfigError(f"{run} trained with {', '.join(trained)} (rl.grounded or rl.sampler=beam): changing it "
                          "changes what was trained; train a run with the new setting instead")
    is_rl = "rl" in saved
    saved, added = with_added_keys(saved, "rl" if is_rl else "mllm")
    cfg: Config = apply_overrides(saved, [*overrides, *inits])
    if not cfg.eval.test:
        raise ConfigError(f"{run} is a run with eval.test=false (compared on dev only): its test split stays unread")
    if mirror:
        cfg.data.mirror = mirror
    if data_root:
        cfg.data.root = data_root
    start = time.time()
    seed_everything(cfg.train.seed)
    # the task is built for its test report only: without the training feature cache (minutes, and unused)
    build = copy.deepcopy(cfg)
    if is_rl:
        from mllm.rl.train import SCSTTask as Task

        build.rl.freeze_vision, build.rl.feature_views = False, 1
    else:
        from mllm.multimodal.train import CaptioningTask as Task

        build.train.frozen_vision_until = 0.0
    from mllm.data import prepare_flickr8k

    task = Task(build, prepare_flickr8k(*data_location(cfg), image_size=cfg.model.image_size))
    task.cfg = cfg
    best = run / ("last.pt" if cfg.train.finish_with == "last" else "best.pt")  # the weights its report scored
    state = load_checkpoint(best, task.kind)
    load_weights(task.model, state["model"], best)
    task.model.to(decoding_device(cfg.train.device))
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        summary = task.finish(task.model.eval(), out, log)
    atomic_write_json(out / "config.json", cfg.to_dict())
    commit = git_output(Path(__file__).resolve().parents[1], "rev-parse", "--short", "HEAD")
    return {"run": str(run), "overrides": list(overrides), "keys_added_at_defaults": added, "commit": commit,
            "checkpoint": best.name, "checkpoint_sha256": file_sha256(best),
            "seconds": round(time.time() - start, 1), "summary": summary}


def rescore_in_place(run: Path, overrides: list[str], mirror: str | None = None, data_root: str | None = None,
                     log: Callable[[str], None] = print, inits: list[str] = ()) -> Path:
    """Re-score a finished run inside its own folder; the previous report moves to report-before-rescore-N/.

    The new report is written to <run>/.rescore first and moved in only when complete: its files, then
    summary.json (the training record, steps, times and inits, with the new test metrics, config and a "rescored"
    entry), config.json last, so that a run stopped half-way still differs from the preset and is re-scored
    again. best.pt stays the checkpoint that the old decoding chose on dev. Returns the previous report's folder.
    """
    log(f"{run} is finished; only its decoding differs from this command's ({', '.join(overrides)}): writing its "
        "test report again from its checkpoint, nothing retrained (the checkpoint stays the one its old decoding "
        "chose on dev)")
    tmp = run / ".rescore"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        record = rescore(run, tmp, overrides, mirror, data_root, log, inits)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n = 1
    while (keep := run / f"report-before-rescore-{n}").exists():
        n += 1
    keep.mkdir()
    for name in (*REPORT_FILES, *(p.name for p in run.glob("attention_*.png"))):
        if (run / name).is_file():
            shutil.copy2(run / name, keep / name)
    for path in tmp.iterdir():
        if path.name != "config.json":
            os.replace(path, run / path.name)
    old = json.loads((run / "summary.json").read_text())
    summary = record.pop("summary")
    atomic_write_json(run / "summary.json", {**old, **summary, "config": json.loads((tmp / "config.json").read_text()),
                                            "rescored": {**record, "previous_report": keep.name}})
    os.replace(tmp / "config.json", run / "config.json")
    tmp.rmdir()
    log(f"{run}: test report re-scored (the previous one is kept in {keep})")
    return keep
