"""What every training command shares: its arguments, config resolution, resuming with the saved config."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from mllm.checkpoint import load_checkpoint
from mllm.data.download import MIRROR_ENV, default_mirror

from .config import Config, ConfigError, apply_overrides, config_diff, flatten, load_config, with_added_keys
from .loop import Task, Trainer
from .runtime import init_distributed, main_process_first, pick_device, seed_everything

DEFAULT_PRESET = "cpu"
WHERE_KEYS = ("data.root", "data.mirror", "train.device")  # where a run reads data and computes, not what it is


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--data-root and --data-mirror, for every command that reads a data set."""
    p.add_argument("--data-root", default=None, help="where prepared caches go (default: data.root, ./data)")
    p.add_argument("--data-mirror", default=None,
                   help=f"folder holding the data archives, read instead of downloading (or set {MIRROR_ENV})")


def add_train_args(p: argparse.ArgumentParser, config_name: str) -> None:
    """The arguments every train-* command shares (preset, config, run folder, resume, device, overrides)."""
    p.add_argument("--preset", default=None,
                   help=f"tiny (tests), cpu (a laptop), gpu (full recipe); default {DEFAULT_PRESET} "
                        f"(with --resume: the run's own)")
    p.add_argument("--config", default=config_name, help=f"config name in configs/ or a YAML path ({config_name})")
    p.add_argument("--run-dir", default=None, help="output folder (default runs/<config>-<preset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last.pt, with the config saved in it")
    p.add_argument("--allow-config-change", action="store_true",
                   help="with --resume: let key=value overrides change the saved config (the changes are logged)")
    p.add_argument("--device", default=None, help="auto (cuda, mps, cpu), cpu, cuda, cuda:1, mps")
    add_data_args(p)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.lr=1e-3")


def _overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])


def _locate_data(cfg: Config, args: argparse.Namespace) -> None:
    if args.data_root:
        cfg.data.root = args.data_root
    mirror = args.data_mirror or cfg.data.mirror or default_mirror()
    cfg.data.mirror = str(mirror) if mirror else None


def resolve(args: argparse.Namespace) -> tuple[Config, Path]:
    """A new run's config (file, preset, overrides, data location) and its folder."""
    preset = args.preset or DEFAULT_PRESET
    cfg = load_config(args.config, preset, _overrides(args))
    _locate_data(cfg, args)
    return cfg, Path(args.run_dir or f"runs/{Path(args.config).stem}-{preset}")


def resume_config(saved: dict, args: argparse.Namespace, source: Path, log=print) -> Config:
    """The saved config with the command line's overrides; any that change it are an error unless allowed."""
    saved, added = with_added_keys(saved, args.config)
    if added:
        log(f"{source} was written before the config keys {', '.join(added)} existed: resuming with their defaults "
            f"({', '.join(f'{k}={v!r}' for k, v in flatten(saved).items() if k in added)}), what the run did then")
    if args.preset is not None and args.preset != saved.get("preset"):
        raise ConfigError(f"--preset {args.preset} differs from the run's own preset {saved.get('preset')!r} "
                          f"({source}); drop --preset to resume it, or train a new run in another --run-dir")
    cfg = apply_overrides(saved, _overrides(args))
    changed = {k: v for k, v in config_diff(saved, cfg).items() if k not in WHERE_KEYS}
    if changed:
        listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        if not args.allow_config_change:
            raise ConfigError(f"--resume continues with the config saved in {source}; the command line changes "
                              f"{listing}. Drop those overrides, or pass --allow-config-change to change them")
        log(f"resuming with a changed config (--allow-config-change): {listing}")
    if args.data_mirror or default_mirror():  # where the data is now beats where it was
        cfg.data.mirror = None
    _locate_data(cfg, args)
    return cfg


def data_location(cfg: Config) -> tuple[Path, Path | None]:
    """(data root, mirror or None) of a resolved config."""
    return Path(cfg.data.root), Path(cfg.data.mirror) if cfg.data.mirror else None


def train(make_task: Callable[[Config], Task], args: argparse.Namespace) -> dict[str, Any]:
    """Build the task (rank 0 first: it downloads and prepares the data) and run the shared loop."""
    cfg, run_dir = resolve(args)
    state = None
    if args.resume:
        state = load_checkpoint(run_dir / "last.pt")
        cfg = resume_config(state["config"], args, run_dir / "last.pt")
    elif run_dir.joinpath("last.pt").is_file():
        raise SystemExit(f"{run_dir} already holds a run: pass --resume to continue it, or --run-dir NEW")
    ranks, _ = init_distributed(pick_device(cfg.train.device))
    seed_everything(cfg.train.seed)  # the model's initial weights depend on it
    with main_process_first(ranks):
        task = make_task(cfg)
    try:
        return Trainer(task, cfg, run_dir, resume=state or False).fit()
    finally:
        if dist.is_initialized():  # leave the group; a torchrun worker then ends with runtime.exit_process
            dist.destroy_process_group()
