"""Timing sides against each other in one run, in alternation, so that machine noise cancels in their ratio.

Each round times every side once (`calls` calls in a row), in the order A, B, ... on even rounds and reversed
on odd ones (A B | B A | A B ...), so a slow drift of the machine (another job, the clock) reaches both sides
alike. A ratio is median(time B) / median(time A) per item: above 1, side A is that many times faster; its
spread is the lowest and highest ratio of the rounds taken one at a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

TORCH_THREADS = torch.get_num_threads()  # torch's own choice, restored when a run does not ask for a number
HEADER = ("| benchmark | side A | side B | ratio A/B (min-max over rounds) | rounds | machine |\n"
          "|---|---|---|---|---|---|")


@dataclass
class Side:
    """One thing to time: `fn` does `items` units of work (`unit`: steps, tokens, images) per call."""

    name: str
    fn: Callable[[], Any]
    items: float = 1.0
    unit: str = "calls"
    times: list[float] = field(default_factory=list)  # seconds per call, one entry per round

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def rate(self) -> float:
        """Items per second at the median time."""
        return self.items / self.median

    def cell(self) -> str:
        ms = self.median * 1e3
        return f"{self.name}: {self.rate:,.1f} {self.unit}/s ({ms:,.2f} ms a call)"


@dataclass
class Ratio:
    """How many times faster side `a` is than side `b`, per item, measured in the same rounds."""

    benchmark: str
    a: Side
    b: Side

    @property
    def ratio(self) -> float:
        return self.a.rate / self.b.rate

    @property
    def per_round(self) -> list[float]:
        return [(tb / self.b.items) / (ta / self.a.items) for ta, tb in zip(self.a.times, self.b.times, strict=True)]

    def row(self, machine_text: str) -> str:
        lo, hi = min(self.per_round), max(self.per_round)
        return (f"| {self.benchmark} | {self.a.cell()} | {self.b.cell()} | **{self.ratio:.2f}x** ({lo:.2f}-{hi:.2f}) "
                f"| {len(self.a.times)} | {machine_text} |")

    def to_dict(self) -> dict[str, Any]:
        sides = {k: {"name": s.name, "unit": s.unit, "items_per_call": s.items, "median_s": s.median,
                     "per_second": s.rate, "times_s": s.times} for k, s in (("a", self.a), ("b", self.b))}
        return {"benchmark": self.benchmark, **sides, "ratio": self.ratio, "ratio_min": min(self.per_round),
                "ratio_max": max(self.per_round), "rounds": len(self.a.times)}


def alternate(sides: Sequence[Side], rounds: int, warmup: int = 1, calls: int = 1) -> None:
    """Warm every side up (`warmup` calls each), then time `rounds` rounds, alternating the order (see above)."""
    for _ in range(warmup):
        for side in sides:
            side.fn()
    for r in range(rounds):
        for side in (sides if r % 2 == 0 else list(reversed(sides))):
            start = time.perf_counter()
            for _ in range(calls):
                side.fn()
            side.times.append((time.perf_counter() - start) / calls)


def machine() -> dict[str, Any]:
    """CPU model, cores, threads, torch version, date and load average (a loaded machine shows here)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "load_average_1_5_15": [round(x, 2) for x in load] if load else None}


def machine_text(info: dict[str, Any]) -> str:
    n = info["threads"]
    return f"{n} thread{'s' * (n != 1)}, {info['cpu']}, torch {info['torch']}"


def parser(doc: str | None, rounds: int, quick_rounds: int = 2) -> argparse.ArgumentParser:
    """The options every benchmark takes: --quick, --rounds, --warmup, --threads, --out."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run: tiny sizes, few rounds")
    p.add_argument("--rounds", type=int, default=None, help=f"timed rounds (default {rounds}; --quick {quick_rounds})")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls of each side first (default 2; quick 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice; --quick: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the results and the machine to this JSON file")
    p.set_defaults(default_rounds=rounds, quick_rounds=quick_rounds)
    return p


def setup(args: argparse.Namespace) -> None:
    """Resolve the defaults that depend on --quick; set threads (--quick: 1, robust on a busy machine) and seed."""
    if args.rounds is None:
        args.rounds = args.quick_rounds if args.quick else args.default_rounds
    if args.rounds < 1 or (args.warmup is not None and args.warmup < 0):
        raise SystemExit(f"--rounds must be at least 1 and --warmup at least 0; got {args.rounds}, {args.warmup}")
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.threads is None and args.quick:
        args.threads = 1
    torch.set_num_threads(args.threads or TORCH_THREADS)
    torch.manual_seed(args.seed)


def adamw(groups: list[dict[str, Any]] | list[nn.Parameter], lr: float, betas: Sequence[float],
          weight_decay: float) -> torch.optim.AdamW:
    """AdamW as the training loop builds it (`mllm/training/loop.py`): decay on matrices only, fused kernel."""
    from mllm.training.optim import param_groups

    if groups and not isinstance(groups[0], dict):
        groups = [{"params": list(groups)}]
    return torch.optim.AdamW(param_groups(groups, weight_decay, lr), lr=lr, betas=tuple(betas), fused=True)


def train_step(opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor], clip: float = 1.0) -> float:
    """One optimiser step as the loop takes it: zero grads, backward, clip the global norm, step."""
    opt.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    params = [p for g in opt.param_groups for p in g["params"]]
    if clip > 0:
        nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return loss.detach().item()


def report(name: str, ratios: list[Ratio], args: argparse.Namespace, checks: dict[str, Any] | None = None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print the markdown rows (with the header) and the checks; write the JSON to --out if given."""
    info = machine()
    print(HEADER)
    for r in ratios:
        print(r.row(machine_text(info)))
    for key, value in (checks or {}).items():
        print(f"check {key}: {value}")
    settings = {k: v for k, v in vars(args).items() if k not in ("default_rounds", "quick_rounds", "out")}
    result = {"name": name, "machine": info, "settings": settings, "checks": checks or {}, **(extra or {}),
              "rows": [r.to_dict() for r in ratios], "markdown": [r.row(machine_text(info)) for r in ratios]}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result
