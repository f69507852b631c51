"""The one training loop every model uses: optimiser, schedule, logging, checkpoints, resume, DDP."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from mllm.checkpoint import CheckpointError, load_checkpoint, load_weights
from mllm.io import atomic_write, atomic_write_json

from .config import Config, ConfigError
from .lineage import record_inits
from .optim import param_groups, warmup_cosine
from .plots import plot_curves
from .runtime import init_distributed, machine_info, pick_device, rng_state, seed_everything, set_rng_state
from .task import LossOutput, Task

__all__ = ["LossOutput", "Task", "Trainer", "TrainingError", "param_groups", "warmup_cosine"]


class TrainingError(RuntimeError):
    """The run cannot go on (a NaN loss, a checkpoint of another kind); the message says what to do."""


RESERVED = frozenset({"step", "train_loss", "grad_norm", "lr", "time"})  # keys the loop logs itself


class Trainer:
    """Trains a Task's model to train.max_steps: AdamW with warmup + cosine, gradient accumulation, DDP under
    torchrun, evaluation, best/last checkpoints (atomic), resume, curves and a summary."""

    def __init__(self, task: Task, cfg: Config, run_dir: str | Path, resume: bool | dict = False):
        self.task, self.cfg, self.t = task, cfg, cfg.train
        self.run_dir = Path(run_dir)
        if self.t.max_steps < 1:
            raise ConfigError(f"train.max_steps must be at least 1, got {self.t.max_steps}: nothing would train")
        if self.t.best_metric not in task.eval_metrics:
            raise ConfigError(f"train.best_metric {self.t.best_metric!r} is not reported by the {task.kind!r} task; "
                              f"choose one of {', '.join(task.eval_metrics) or '(none)'}")
        self.dist, self.device = init_distributed(pick_device(self.t.device))
        seed_everything(self.t.seed)
        self.model = task.model.to(self.device)
        self.net = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids,
                                                           find_unused_parameters=task.find_unused_parameters)
        self.eager_net, self.compile_pending = self.net, bool(self.t.compile)
        if self.t.compile:  # tried on the first step; falls back to eager where it cannot compile
            self.net = torch.compile(self.net)
        groups = param_groups(task.param_groups(), self.t.weight_decay, self.t.lr)
        self.params = [p for g in groups for p in g["params"]]
        grouped = {id(p) for p in self.params}
        left_out = [n for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in grouped]
        if left_out:
            raise TrainingError(f"{task.kind} param_groups leaves out trainable parameters {left_out[:5]}; "
                                f"put them in a group or set requires_grad=False")
        self.opt = torch.optim.AdamW(groups, lr=self.t.lr, betas=tuple(self.t.betas),
                                     fused=self.device.type in ("cuda", "cpu"))
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: warmup_cosine(
            s, self.t.warmup_steps, self.t.max_steps, self.t.min_lr_ratio))
        self.step, self.best, self.elapsed = 0, None, 0.0
        self.stop_signal: int | None = None
        # the checkpoints this run started from (sha256 of each init.* file); a resumed run keeps its own record
        self.inits: dict | None = None if resume or not self.dist.main else record_inits(cfg)
        if resume:
            self._load(resume if isinstance(resume, dict) else load_checkpoint(self.run_dir / "last.pt"))

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
                "rng": rng_state(), "config": self.cfg.to_dict(), "extra": self.task.extra_state(),
                "inits": self.inits}

    def save(self, name: str) -> None:
        if self.dist.main:
            state = self._state()
            atomic_write(self.run_dir / name, lambda f: torch.save(state, f))

    def _load(self, state: dict) -> None:
        path = state.get("path", self.run_dir / "last.pt")
        if state.get("kind") != self.task.kind:
            raise CheckpointError(f"{path} is a {state.get('kind')!r} checkpoint, not {self.task.kind!r}; "
                                  f"resume it with its own command, or pick another --run-dir")
        load_weights(self.model, state["model"], path)
        try:
            self.opt.load_state_dict(state["optimizer"])
        except ValueError as e:  # another grouping of the parameters
            raise CheckpointError(f"{path}: the optimizer state does not fit this run ({e}); the parameter groups "
                                  f"changed since it was written: resume with the original settings") from e
        self.sched.load_state_dict(state["scheduler"])
        self.step, self.best, self.elapsed = state["step"], state["best"], state["elapsed"]
        self.inits = state.get("inits")  # None: written before the record existed
        saved = state.get("config", {}).get("train", {})
        if (saved.get("best_metric"), saved.get("best_mode")) != (self.t.best_metric, self.t.best_mode):
            self.best = None  # the best so far was measured by another yardstick
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

    def _accumulate(self) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Forward and backward over the step's micro-batches: summed loss, summed count, summed extra metrics.

        Gradients are of the summed loss; `_train_step` divides them by the global count.
        """
        zero = torch.zeros((), device=self.device)
        total, count, extras = zero.clone(), zero.clone(), {}
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.t.dtype == "bfloat16")
        for micro in range(self.t.grad_accum):
            batch = self._shard(self.task.batch(self.step + 1, micro))
            sync = micro == self.t.grad_accum - 1 or not self.dist.enabled
            with (contextlib.nullcontext() if sync else self.eager_net.no_sync()), autocast:
                out = self.task.loss(self.net, batch)
                if not isinstance(out, LossOutput):  # a mean: one unit of weight per micro-batch
                    out = LossOutput(out, 1.0)
                out.total.backward()
            total += out.total.detach().float()
            count += out.count.detach().float() if isinstance(out.count, Tensor) else out.count
            reserved = RESERVED.intersection(out.metrics)
            if reserved or (micro and set(out.metrics) != set(extras)):
                raise TrainingError(f"{self.task.kind} loss metrics must be the same keys on every micro-batch and "
                                    f"none of {sorted(RESERVED)}; got {sorted(out.metrics)}")
            for k, v in out.metrics.items():
                extras[k] = extras.get(k, zero) + (v.detach().float() if isinstance(v, Tensor) else v)
        return total, count, dict(sorted(extras.items()))  # the same order on every process

    def _train_step(self) -> dict[str, float]:
        self.model.train()
        try:
            total, count, extras = self._accumulate()
        except Exception as e:  # a missing C++ compiler or an unsupported op shows on the first compiled call
            if not self.compile_pending:
                raise
            self.log(f"torch.compile failed ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}); "
                     "training without it (set train.compile=false to skip the attempt)")
            self.opt.zero_grad(set_to_none=True)
            self.net = self.eager_net
            total, count, extras = self._accumulate()  # a genuine model error raises again here
        self.compile_pending = False
        stats = torch.stack([total, count, *extras.values()])
        if self.dist.enabled:  # on the training device: NCCL reduces CUDA tensors only
            dist.all_reduce(stats)
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:  # DDP averaged the ranks' gradients of their sums: x world / global count is the global mean
            torch._foreach_mul_(grads, self.dist.world / stats[1])
        norm = (nn.utils.clip_grad_norm_(self.params, self.t.grad_clip) if self.t.grad_clip > 0 else
                torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(()))
        values = torch.cat([(stats[0] / stats[1])[None], norm.to(stats)[None], stats[1:2],
                            stats[2:] / (self.t.grad_accum * self.dist.world)]).tolist()
        loss, grad_norm, count = values[0], values[1], values.pop(2)
        if count <= 0:
            raise TrainingError(f"step {self.step + 1}: the {self.task.kind} loss counted {count} items over the whole "
                                f"batch (LossOutput.count); every batch needs at least one item to learn from")
        where = (f"the last good checkpoint is {self.run_dir / 'last.pt'}: lower train.lr, raise "
                 f"train.warmup_steps or set train.grad_clip, then resume with --resume")
        if not math.isfinite(loss):
            raise TrainingError(f"loss became {loss} at step {self.step + 1}; stopped before updating the weights. "
                                + where[0].upper() + where[1:])
        if not math.isfinite(grad_norm):
            raise TrainingError(f"gradients became non-finite (norm {grad_norm}) at step {self.step + 1} while the "
                                f"loss was finite ({loss:.4f}); stopped before updating the weights. "
                                + where[0].upper() + where[1:])
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return {"train_loss": loss, "grad_norm": grad_norm, **dict(zip(extras, values[2:], strict=True))}

    def _evaluate(self) -> None:
        if self.dist.main:
            self.model.eval()
            with torch.no_grad():
                metrics = self.task.evaluate(self.model)
            self._record(metrics)
            self.log(f"step {self.step}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            key, mode = self.t.best_metric, self.t.best_mode
            if key not in metrics:
                raise TrainingError(f"{self.task.kind} evaluate() did not report train.best_metric {key!r} "
                                    f"(it gave {sorted(metrics)})")
            if self.best is None or (metrics[key] < self.best) == (mode == "min"):
                self.best = metrics[key]
                self.save("best.pt")
            self.task.on_eval(self.model, self.step, self.run_dir, self.log)
            self._plot()
        if self.dist.enabled:
            dist.barrier()

    def _plot(self) -> None:
        run = self.run_dir
        plot_curves(run / "metrics.jsonl", run / "curves.png", self.task.curve_title(), self.task.curve_marks())

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
        bar = tqdm(total=self.t.max_steps, initial=self.step, disable=not self.dist.main, desc=self.task.curve_title(),
                   dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 30)
        try:
            if self.step == 0 and self.task.eval_at_start:  # the starting point of the curves, and a candidate best
                self._evaluate()
            while self.step < self.t.max_steps:
                metrics = self._train_step()
                self.elapsed = time.time() - started
                lr = self.t.lr * self.sched.get_last_lr()[0] / self.sched.base_lrs[0]  # train.lr, scheduled
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['train_loss']:.4f}", lr=f"{lr:.2e}",
                                it_s=f"{(self.step - step_start) / max(1e-9, self.elapsed):.2f}", refresh=False)
                if self.step % self.t.log_interval == 0:
                    self._record({**metrics, "lr": lr, "time": self.elapsed})
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
        """A signal on any process stops them all (the flag is reduced on the training device, as NCCL needs)."""
        if not self.dist.enabled:
            return self.stop_signal is not None
        flag = torch.tensor(float(self.stop_signal is not None), device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag)

    def _finish(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        if self.dist.main:
            best = self.run_dir / "best.pt"
            if self.t.finish_with == "best" and best.is_file():
                load_weights(self.model, load_checkpoint(best, self.task.kind, self.device)["model"], best)
            self.model.eval()
            summary = {"kind": self.task.kind, "preset": self.cfg.get("preset"), "steps": self.step,
                       "wall_time_s": round(self.elapsed, 1), "best_" + self.t.best_metric: self.best,
                       "finished_with": self.t.finish_with}
            summary.update(self.task.finish(self.model, self.run_dir, self.log))
            if self.device.type == "cuda":
                summary["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
            summary.update({"machine": machine_info(self.device), "inits": self.inits, "config": self.cfg.to_dict()})
            self._plot()  # before the summary: a run with summary.json is complete, figures included
            atomic_write_json(self.run_dir / "summary.json", summary)
            self.log(f"summary written to {self.run_dir / 'summary.json'}")
        if self.dist.enabled:
            dist.barrier()
        return summary
