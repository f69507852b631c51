"""What every training command shares: its arguments, config resolution, the run folder, checkpoints."""

from __future__ import annotations

import argparse
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mllm.data.download import MIRROR_ENV, default_mirror

from .config import Config, load_config
from .loop import Task, Trainer
from .runtime import seed_everything


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, help="where prepared caches go (default: data.root, ./data)")
    p.add_argument("--data-mirror", default=None,
                   help=f"folder holding the data archives, read instead of downloading (or set {MIRROR_ENV})")


def add_train_args(p: argparse.ArgumentParser, config_name: str) -> None:
    p.add_argument("--preset", default="cpu", help="tiny (tests), cpu (a laptop), gpu (full recipe); default cpu")
    p.add_argument("--config", default=config_name, help=f"config name in configs/ or a YAML path ({config_name})")
    p.add_argument("--run-dir", default=None, help="output folder (default runs/<config>-<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last.pt")
    p.add_argument("--device", default=None, help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, mps")
    add_data_args(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.lr=1e-3")


def resolve(args: argparse.Namespace) -> tuple[Config, Path]:
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    cfg = load_config(args.config, args.preset, overrides)
    if args.data_root:
        cfg.data.root = args.data_root
    mirror = args.data_mirror or cfg.data.mirror or default_mirror()
    cfg.data.mirror = str(mirror) if mirror else None
    run_dir = Path(args.run_dir or f"runs/{Path(args.config).stem}-{args.preset}")
    return cfg, run_dir


def data_location(cfg: Config) -> tuple[Path, Path | None]:
    return Path(cfg.data.root), Path(cfg.data.mirror) if cfg.data.mirror else None


def train(make_task: Callable[[Config], Task], args: argparse.Namespace) -> dict[str, Any]:
    cfg, run_dir = resolve(args)
    if run_dir.joinpath("last.pt").is_file() and not args.resume:
        raise SystemExit(f"{run_dir} already holds a run: pass --resume to continue it, or --run-dir NEW")
    seed_everything(cfg.train.seed)  # the model's initial weights depend on it
    return Trainer(make_task(cfg), cfg, run_dir, resume=args.resume).fit()


def load_checkpoint(path: str | Path, kind: str, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's state, after checking that it exists, is readable, and holds a `kind` model."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one first or pass the run folder / .pt file")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e})") from e
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} holds a {found!r} model, not a {kind!r} one; pass a checkpoint of the right kind")
    return state
