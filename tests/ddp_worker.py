"""Run by tests/test_training.py, plainly or under torchrun: a toy task whose loss is a sum over uneven counts.

`python ddp_worker.py OUT [grad_accum]` trains a linear model for a few steps with the shared Trainer and
writes OUT/weights.pt (rank 0) and OUT/order.txt (when each rank built its task: rank 0 must finish first).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mllm.training.config import load_config  # noqa: E402
from mllm.training.loop import LossOutput, Task, Trainer  # noqa: E402
from mllm.training.runtime import init_distributed, main_process_first, pick_device  # noqa: E402


class MaskedRegression(Task):
    """Rows of a batch count only where the mask is on; masks differ a lot between micro-batches and shards."""

    kind = "masked-regression"
    eval_metrics = ("val_loss",)

    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1)
        self.w = torch.tensor([[1.0, -2.0, 3.0, 0.5]])

    def batch(self, step, micro):
        g = torch.Generator().manual_seed(step * 10 + micro)
        x = torch.randn(8, 4, generator=g)
        keep = torch.zeros(8)
        keep[: 1 + (step + micro) % 2 * 6] = 1.0  # 1 or 7 of the 8 rows: the first shard holds most of them
        return x, x @ self.w.T + 1.0, keep

    def loss(self, model, batch):
        x, y, keep = batch
        errors = ((model(x) - y) ** 2).squeeze(-1) * keep
        return LossOutput(errors.sum(), keep.sum(), {"kept": keep.sum()})

    def evaluate(self, model):
        return {"val_loss": 0.0}


def main() -> None:
    out, accum = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config("gpt", "tiny", ["train.device=cpu", "train.lr=0.05", "train.max_steps=5", "train.warmup_steps=1",
                                      "train.eval_interval=5", "train.checkpoint_interval=5", "train.log_interval=1",
                                      f"train.grad_accum={accum}", "train.grad_clip=0", "train.weight_decay=0"])
    ranks, _ = init_distributed(pick_device("cpu"))
    with main_process_first(ranks):
        with open(out / "order.txt", "a") as f:
            f.write(f"{ranks.rank} enter {time.time()}\n")
        if ranks.main:
            time.sleep(0.5)  # a slow download: the others must wait for it
        task = MaskedRegression()
        with open(out / "order.txt", "a") as f:
            f.write(f"{ranks.rank} exit {time.time()}\n")
    trainer = Trainer(task, cfg, out / "run")
    trainer.fit()
    if ranks.main:
        torch.save(trainer.model.state_dict(), out / "weights.pt")
    if os.environ.get("WORLD_SIZE"):
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
