"""The optimiser's pieces: parameter groups with and without weight decay, the learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any


def param_groups(groups: list[dict[str, Any]], weight_decay: float, lr: float) -> list[dict]:
    """Each group split in two: weight decay on matrices (Linear, Embedding weights), none on biases and norms.

    A group's own 'lr' is kept; the others get `lr`. Frozen parameters (requires_grad False) are left out.
    """
    out = []
    for i, group in enumerate(groups):
        params = [p for p in group["params"] if p.requires_grad]
        name, group_lr = group.get("name", f"group{i}"), group.get("lr", lr)
        for suffix, chosen, decay in ((".decay", [p for p in params if p.dim() >= 2], weight_decay),
                                      (".no_decay", [p for p in params if p.dim() < 2], 0.0)):
            if chosen:
                out.append({"params": chosen, "weight_decay": decay, "lr": group_lr, "name": name + suffix})
    return out


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
