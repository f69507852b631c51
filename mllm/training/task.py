"""What a model contributes to the shared training loop: a Task, and the loss it may return as a sum."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn


@dataclass
class LossOutput:
    """A loss as a sum over `count` items (tokens, captions), so the loop can average over all of them.

    The optimised objective is sum(total) / sum(count) over the step's micro-batches and processes:
    variable-length captions weigh by their tokens, not by their micro-batch. `metrics` (a reward, an
    entropy) are averaged over micro-batches and processes and logged beside the loss.
    """

    total: Tensor
    count: Tensor | float
    metrics: dict[str, Tensor | float] = field(default_factory=dict)


class Task(ABC):
    """What a model contributes to the loop: `kind`, `eval_metrics`, `model` and the hooks below."""

    kind = "task"
    find_unused_parameters = False  # under DDP: True when some trainable parameters sit out some steps
    eval_metrics: tuple[str, ...] = ()  # the keys `evaluate` reports; train.best_metric must be one of them
    eval_at_start = False  # True: evaluate (and keep as best.pt) the starting weights too, e.g. when fine-tuning
    model: nn.Module

    @abstractmethod
    def batch(self, step: int, micro: int) -> tuple[Tensor, ...]:
        """The global batch for (step, micro-step); deterministic in them so a resumed run sees the same data."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor | LossOutput:
        """The mean loss of a batch (each micro-batch weighs the same), or a LossOutput (a sum and its count).

        The batch is already on the device and, under DDP, this rank's shard.
        """

    def param_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters in groups, each {'params': [...]} with an optional 'lr' and 'name'.

        The loop splits every group into weight-decayed matrices and undecayed vectors. Override to give
        parts their own learning rates (e.g. a new connector faster than pretrained backbones).
        """
        return [{"name": "all", "params": list(self.model.parameters())}]

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
        """Saved with every checkpoint: what inference needs (model config, tokenizer, class names)."""
        return {}

    def curve_title(self) -> str:
        """The title of curves.png (the kind unless a task names itself, e.g. a fine-tuning method)."""
        return self.kind

    def curve_marks(self) -> dict[int, str]:
        """Steps to mark on curves.png, {step: label}, e.g. where the training resolution changes."""
        return {}
