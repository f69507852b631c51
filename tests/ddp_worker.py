"""Run by tests/test_loop.py, plainly or under torchrun: a toy task whose loss is a sum over uneven counts.

`python ddp_worker.py OUT [grad_accum]` trains a linear model for a few steps through `launch.train` (the
path every train-* command takes) and writes OUT/weights.pt (rank 0) and OUT/order.txt (when each rank
built its task: rank 0, which prepares the data, must finish before the others start).
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

from mllm.cli import build_parser  # noqa: E402
from mllm.training.launch import train  # noqa: E402
from mllm.training.loop import LossOutput, Task  # noqa: E402
from mllm.training.runtime import exit_process  # noqa: E402

OUT = Path(".")


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


def make_task(cfg) -> MaskedRegression:
    """What `launch.train` builds under `main_process_first`: rank 0 (slow, as a download is) must finish first."""
    rank = os.environ.get("RANK", "0")
    with open(OUT / "order.txt", "a") as f:
        f.write(f"{rank} enter {time.time()}\n")
    if rank == "0":
        time.sleep(0.5)
    task = MaskedRegression()
    with open(OUT / "order.txt", "a") as f:
        f.write(f"{rank} exit {time.time()}\n")
    return task


def main() -> None:
    global OUT
    OUT, accum = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1
    OUT.mkdir(parents=True, exist_ok=True)
    args = build_parser().parse_args([
        "train-llm", "--preset", "tiny", "--run-dir", str(OUT / "run"), "--device", "cpu", "train.lr=0.05",
        "train.max_steps=5", "train.warmup_steps=1", "train.eval_interval=5", "train.checkpoint_interval=5",
        "train.log_interval=1", f"train.grad_accum={accum}", "train.grad_clip=0", "train.weight_decay=0"])
    train(make_task, args)
    if os.environ.get("RANK", "0") == "0":
        torch.save(torch.load(OUT / "run" / "last.pt", weights_only=False)["model"], OUT / "weights.pt")
    assert not torch.distributed.is_initialized(), "launch.train leaves no process group behind"


if __name__ == "__main__":
    main()
    exit_process(0)  # as main.py ends: a torchrun worker skips the interpreter teardown
