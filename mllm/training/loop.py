"""The one training loop every model uses: optimiser, schedule, logging, checkpoints, resume, DDP."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from mllm.io import atomic_write, atomic_write_json

from .config import Config
from .plots import plot_curves
from .runtime import init_distributed, machine_info, pick_device, rng_state, seed_everything, set_rng_state


class TrainingError(RuntimeError):
    """The run cannot go on (a NaN loss, a checkpoint of another kind); the message says what to do."""


class Task(ABC):
    """What a model contributes to the loop. Subclasses set `kind` and `model` and fill in the hooks."""

    kind = "task"
    model: nn.Module

    @abstractmethod
    def batch(self, step: int, micro: int) -> tuple[Tensor, ...]:
        """The global batch for (step, micro-step); deterministic in them so a resumed run sees the same data."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """Mean loss of a batch (already on the device and, under DDP, this rank's shard)."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Held-out metrics, e.g. {'val_loss': ...}; run on rank 0 in eval mode without gradients."""
        return {}

    def on_eval(self, model: nn.Module, step: int, run_dir: Path, log) -> None:
        """Extra output at each evaluation (samples, plots)."""
        return None

    def finish(self, model: nn.Module, run_dir: Path, log) -> dict[str, Any]:
        """Final figures for summary.json, computed with the best (or, per train.finish_with, last) weights."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Saved with every checkpoint (a tokenizer, class names)."""
        return {}

    def curve_marks(self) -> dict[int, str]:
        """Steps to mark on curves.png, {step: label}, e.g. where the training resolution changes."""
        return {}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (Linear, Embedding weights); none on biases, norms and 1-D parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    def __init__(self, task: Task, cfg: Config, run_dir: str | Path, resume: bool = False):
        self.task, self.cfg, self.t = task, cfg, cfg.train
        self.run_dir = Path(run_dir)
        self.dist, self.device = init_distributed(pick_device(self.t.device))
        seed_everything(self.t.seed)
        self.model = task.model.to(self.device)
        self.net = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.eager_net, self.compile_pending = self.net, bool(self.t.compile)
        if self.t.compile:  # tried on the first step; falls back to eager where it cannot compile
            self.net = torch.compile(self.net)
        self.opt = torch.optim.AdamW(param_groups(self.model, self.t.weight_decay), lr=self.t.lr,
                                     betas=tuple(self.t.betas), fused=self.device.type in ("cuda", "cpu"))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: warmup_cosine(
            s, self.t.warmup_steps, self.t.max_steps, self.t.min_lr_ratio))
        self.step, self.best, self.elapsed = 0, None, 0.0
        self.stop_signal: int | None = None
        if resume:
            self._load(self.run_dir / "last.pt")

    # ---- logging and checkpoints -------------------------------------------------------------
    def log(self, text: str) -> None:
        if self.dist.main:
            tqdm.write(text)

    def _record(self, entry: dict) -> None:
        if self.dist.main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, **entry}) + "\n")

    def _state(self) -> dict:
        return {"kind": self.task.kind, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "step": self.step, "best": self.best, "elapsed": self.elapsed,
                "rng": rng_state(), "config": self.cfg.to_dict(), "extra": self.task.extra_state()}

    def save(self, name: str) -> None:
        if self.dist.main:
            state = self._state()
            atomic_write(self.run_dir / name, lambda f: torch.save(state, f))

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise TrainingError(f"--resume: no checkpoint at {path}; start without --resume")
        state = torch.load(path, map_location="cpu", weights_only=False)  # RNG states must stay on the CPU
        if state.get("kind") != self.task.kind:
            raise TrainingError(f"{path} is a {state.get('kind')!r} checkpoint, not {self.task.kind!r}")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.best, self.elapsed = state["step"], state["best"], state["elapsed"]
        set_rng_state(state["rng"])
        metrics = self.run_dir / "metrics.jsonl"
        if self.dist.main and metrics.is_file():  # drop records written after this checkpoint
            keep = [ln for ln in metrics.read_text().splitlines() if ln and json.loads(ln)["step"] <= self.step]
            atomic_write(metrics, lambda f: f.write("".join(ln + "\n" for ln in keep).encode()))
        self.log(f"resumed from {path} at step {self.step}")

    # ---- one optimisation step ---------------------------------------------------------------
    def _shard(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if not self.dist.enabled:
            return tuple(x.to(self.device, non_blocking=True) for x in batch)
        if batch[0].shape[0] % self.dist.world:
            raise TrainingError(f"batch size {batch[0].shape[0]} is not divisible by {self.dist.world} processes")
        return tuple(x.chunk(self.dist.world)[self.dist.rank].to(self.device) for x in batch)

    def _accumulate(self) -> Tensor:
        """Forward and backward over the step's micro-batches; returns the summed (already averaged) loss."""
        accum, total = self.t.grad_accum, torch.zeros((), device=self.device)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.t.dtype == "bfloat16")
        for micro in range(accum):
            batch = self._shard(self.task.batch(self.step + 1, micro))
            sync = micro == accum - 1 or not self.dist.enabled
            with (contextlib.nullcontext() if sync else self.eager_net.no_sync()), autocast:
                loss = self.task.loss(self.net, batch) / accum
                loss.backward()
            total += loss.detach()
        return total

    def _train_step(self) -> float:
        self.model.train()
        try:
            total = self._accumulate()
        except Exception as e:  # a missing C++ compiler or an unsupported op shows on the first compiled call
            if not self.compile_pending:
                raise
            self.log(f"torch.compile failed ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}); "
                     "training without it (set train.compile=false to skip the attempt)")
            self.opt.zero_grad(set_to_none=True)
            self.net = self.eager_net
            total = self._accumulate()  # a genuine model error raises again here
        self.compile_pending = False
        if self.dist.enabled:
            dist.all_reduce(total)
            total /= self.dist.world
        total = float(total)
        if not math.isfinite(total):
            raise TrainingError(f"loss became {total} at step {self.step + 1}; stopped. The last good checkpoint is "
                                f"{self.run_dir / 'last.pt'}: lower train.lr, raise train.warmup_steps or set "
                                f"train.grad_clip, then resume with --resume")
        if self.t.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return total

    def _evaluate(self) -> None:
        if self.dist.main:
            self.model.eval()
            with torch.no_grad():
                metrics = self.task.evaluate(self.model)
            self._record(metrics)
            self.log(f"step {self.step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            key, mode = self.t.best_metric, self.t.best_mode
            if key in metrics and (self.best is None or (metrics[key] < self.best) == (mode == "min")):
                self.best = metrics[key]
                self.save("best.pt")
            self.task.on_eval(self.model, self.step, self.run_dir, self.log)
            self._plot()
        if self.dist.enabled:
            dist.barrier()

    def _plot(self) -> None:
        run = self.run_dir
        plot_curves(run / "metrics.jsonl", run / "curves.png", self.task.kind, self.task.curve_marks())

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    # ---- the run -----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to `train.max_steps` (or until SIGINT/SIGTERM, which checkpoint and return)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.main:
            atomic_write_json(self.run_dir / "config.json", self.cfg.to_dict())
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        started, step_start = time.time() - self.elapsed, self.step
        bar = tqdm(total=self.t.max_steps, initial=self.step, disable=not self.dist.main, desc=self.task.kind,
                   dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 30)
        try:
            while self.step < self.t.max_steps:
                loss = self._train_step()
                self.elapsed = time.time() - started
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.sched.get_last_lr()[0]:.2e}",
                                it_s=f"{(self.step - step_start) / max(1e-9, self.elapsed):.2f}", refresh=False)
                if self.step % self.t.log_interval == 0:
                    self._record({"train_loss": loss, "lr": self.sched.get_last_lr()[0], "time": self.elapsed})
                if self.step % self.t.eval_interval == 0 or self.step == self.t.max_steps:
                    self._evaluate()
                if self.step % self.t.checkpoint_interval == 0 or self.step == self.t.max_steps:
                    self.save("last.pt")
                if self._should_stop():
                    self.save("last.pt")
                    self.log(f"stopped by signal {self.stop_signal} at step {self.step}; "
                             f"continue with --resume (checkpoint {self.run_dir / 'last.pt'})")
                    return {"stopped_at": self.step}
        finally:
            bar.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        return self._finish()

    def _should_stop(self) -> bool:
        flag = torch.tensor(float(self.stop_signal is not None))
        if self.dist.enabled:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag)

    def _finish(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        if self.dist.main:
            best = self.run_dir / "best.pt"
            if self.t.finish_with == "best" and best.is_file():  # "last" where the metric is on the test set
                self.model.load_state_dict(torch.load(best, map_location=self.device, weights_only=False)["model"])
            self.model.eval()
            summary = {"kind": self.task.kind, "preset": self.cfg.get("preset"), "steps": self.step,
                       "wall_time_s": round(self.elapsed, 1), "best_" + self.t.best_metric: self.best}
            summary.update(self.task.finish(self.model, self.run_dir, self.log))
            summary.update({"machine": machine_info(self.device), "config": self.cfg.to_dict()})
            atomic_write_json(self.run_dir / "summary.json", summary)
            self._plot()
            self.log(f"summary written to {self.run_dir / 'summary.json'}")
        if self.dist.enabled:
            dist.barrier()
        return summary
