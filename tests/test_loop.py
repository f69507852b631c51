"""The shared loop's API for the captioner and SCST: sums with counts, extra metrics, parameter groups,
non-finite gradients, collectives on the training device, rank 0 first, DDP with gradient accumulation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp_worker import MaskedRegression
from torch import nn

from mllm.training import loop
from mllm.training.config import ConfigError, load_config
from mllm.training.loop import LossOutput, Task, Trainer, TrainingError
from mllm.training.plots import moving_average, panels_of
from mllm.training.runtime import Dist

REPO = Path(__file__).resolve().parents[1]


def _cfg(*overrides):
    return load_config("gpt", "tiny", ["train.device=cpu", "train.lr=0.05", "train.max_steps=4", "train.warmup_steps=1",
                                       "train.eval_interval=4", "train.checkpoint_interval=1", "train.log_interval=1",
                                       "train.grad_clip=0", "train.weight_decay=0", *overrides])


def _grads_of_first_step(trainer: Trainer) -> list[torch.Tensor]:
    seen = []
    trainer.opt.register_step_pre_hook(lambda *_: seen.extend(p.grad.clone() for p in trainer.model.parameters()))
    trainer._train_step()
    return seen


def test_a_sum_with_a_count_is_averaged_over_all_items_of_all_micro_batches(tmp_path):
    task = MaskedRegression()
    trainer = Trainer(task, _cfg("train.grad_accum=2"), tmp_path)
    reference = MaskedRegression().model  # the same initial weights
    x0, y0, k0 = task.batch(1, 0)
    x1, y1, k1 = task.batch(1, 1)
    assert (k0.sum(), k1.sum()) == (7, 1)  # uneven: a per-micro-batch mean would weigh the 1 row like the 7
    errors = torch.cat([((reference(x0) - y0) ** 2).squeeze(-1) * k0, ((reference(x1) - y1) ** 2).squeeze(-1) * k1])
    (errors.sum() / (k0.sum() + k1.sum())).backward()
    grads = _grads_of_first_step(trainer)
    for got, want in zip(grads, [reference.weight.grad, reference.bias.grad], strict=True):
        torch.testing.assert_close(got, want)


def test_extra_metrics_are_logged_averaged_and_plotted(tmp_path):
    Trainer(MaskedRegression(), _cfg("train.grad_accum=2"), tmp_path).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train_loss" in r]
    assert [r["kept"] for r in train] == [4.0] * 4  # (7 + 1) / 2 micro-batches, every step
    assert all(r["grad_norm"] > 0 for r in train)
    assert ["kept"] in panels_of(list(train[0])) and ["train_loss"] in panels_of(["train_loss", "kept"])


class TwoParts(Task):
    kind = "two-parts"
    eval_metrics = ("val_loss",)

    def __init__(self, leave_out: bool = False):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
        self.leave_out = leave_out

    def param_groups(self):
        backbone = {"name": "backbone", "params": list(self.model[0].parameters()), "lr": 0.001}
        head = {"name": "head", "params": list(self.model[1].parameters())}
        return [backbone] if self.leave_out else [backbone, head]

    def batch(self, step, micro):
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(step))
        return x, x.sum(1, keepdim=True)

    def loss(self, model, batch):
        return nn.functional.mse_loss(model(batch[0]), batch[1])


def test_parameter_groups_keep_their_own_learning_rates(tmp_path):
    trainer = Trainer(TwoParts(), _cfg("train.warmup_steps=0"), tmp_path)
    lrs = {g["name"]: g["lr"] for g in trainer.opt.param_groups}
    assert lrs == {"backbone.decay": 0.001, "backbone.no_decay": 0.001, "head.decay": 0.05, "head.no_decay": 0.05}
    trainer._train_step()  # the schedule scales every group by the same factor
    ratios = {g["name"]: g["lr"] / lrs[g["name"]] for g in trainer.opt.param_groups}
    assert len({round(r, 12) for r in ratios.values()}) == 1
    with pytest.raises(TrainingError, match=r"leaves out trainable parameters \['1.weight', '1.bias'\]"):
        Trainer(TwoParts(leave_out=True), _cfg(), tmp_path)


class InfGradient(MaskedRegression):
    """A finite loss whose gradient becomes infinite from step `at` on."""

    at = 3

    def loss(self, model, batch):
        out = super().loss(model, batch)
        if self._step >= self.at:
            out.total.register_hook(lambda g: g * float("inf"))
        return out


@pytest.mark.parametrize("clip", [0.0, 1.0])
def test_non_finite_gradients_stop_before_the_step_and_never_reach_a_checkpoint(tmp_path, clip):
    task = InfGradient()
    trainer = Trainer(task, _cfg("train.max_steps=6", f"train.grad_clip={clip}"), tmp_path)
    original = trainer._train_step

    def step():
        task._step = trainer.step + 1
        return original()

    trainer._train_step = step
    with pytest.raises(TrainingError, match=r"gradients became non-finite \(norm (inf|nan)\) at step 3 while the loss "
                                            r"was finite .*last.pt"):
        trainer.fit()
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    assert saved["step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["model"].values())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the failed step changed nothing
    torch.testing.assert_close(trainer.model.state_dict(), saved["model"])


def test_best_metric_the_task_never_reports_is_an_error_at_start(tmp_path):
    with pytest.raises(ConfigError, match=r"best_metric 'val_accuracy' is not reported .* choose one of val_loss"):
        Trainer(MaskedRegression(), _cfg("train.best_metric=val_accuracy"), tmp_path)


def test_the_stop_flag_is_reduced_on_the_training_device(tmp_path, monkeypatch):
    """NCCL reduces only CUDA tensors: the flag must be made on the training device, not on the CPU."""
    trainer = Trainer(MaskedRegression(), _cfg(), tmp_path)
    seen = []

    def all_reduce(tensor, op=None):
        seen.append(tensor.device)

    monkeypatch.setattr(loop.dist, "all_reduce", all_reduce)
    trainer.dist, trainer.device = Dist(rank=0, world=2), torch.device("meta")
    with pytest.raises((RuntimeError, NotImplementedError)):  # reading a meta tensor's value fails: expected
        trainer._should_stop()
    assert seen == [torch.device("meta")]


def _worker(out: Path, accum: int, processes: int) -> torch.Tensor:
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                         f"--nproc_per_node={processes}"]
    done = subprocess.run([*launcher, str(REPO / "tests" / "ddp_worker.py"), str(out), str(accum)], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return torch.load(out / "weights.pt")


@pytest.mark.parametrize("accum", [1, 2])
def test_ddp_sum_and_count_over_uneven_shards_matches_one_process(tmp_path, accum):
    single = _worker(tmp_path / "single", accum, 1)
    ddp = _worker(tmp_path / "ddp", accum, 2)
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], atol=1e-6, rtol=1e-5)
    order = [line.split()[:2] for line in (tmp_path / "ddp" / "order.txt").read_text().splitlines()]
    assert order[:2] == [["0", "enter"], ["0", "exit"]]  # rank 0 prepares the data before rank 1 starts


class CountsNothing(MaskedRegression):
    def loss(self, model, batch):
        out = super().loss(model, batch)
        return LossOutput(out.total * 0, out.count * 0)


class BadMetrics(MaskedRegression):
    def loss(self, model, batch):
        out = super().loss(model, batch)
        return LossOutput(out.total, out.count, {"grad_norm": 1.0})


class ForgetsItsMetric(MaskedRegression):
    def evaluate(self, model):
        return {"other": 1.0}


def test_loop_guards_name_the_problem(tmp_path):
    with pytest.raises(TrainingError, match=r"counted 0.0 items over the whole batch \(LossOutput.count\)"):
        Trainer(CountsNothing(), _cfg(), tmp_path / "a").fit()
    with pytest.raises(TrainingError, match=r"none of \['grad_norm', 'lr', 'step', 'time', 'train_loss'\]"):
        Trainer(BadMetrics(), _cfg(), tmp_path / "b").fit()
    with pytest.raises(TrainingError, match=r"did not report train.best_metric 'val_loss' \(it gave \['other'\]\)"):
        Trainer(ForgetsItsMetric(), _cfg(), tmp_path / "c").fit()
    with pytest.raises(ConfigError, match="train.max_steps must be at least 1, got 0"):
        Trainer(MaskedRegression(), _cfg("train.max_steps=0"), tmp_path / "d")


def test_panels_group_rewards_and_long_series_get_a_moving_average():
    assert panels_of(["train_loss", "reward_sample", "reward_greedy", "reward_share", "val_loss"]) == [
        ["train_loss", "val_loss"], ["reward_sample", "reward_greedy"], ["reward_share"]]
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert moving_average([2.0, 4.0], 5).tolist() == [2.0, 3.0]


@pytest.mark.parametrize("world", ["1", "2"])
def test_a_torchrun_worker_exits_with_its_code_without_the_interpreter_teardown(world):
    """Under torchrun (WORLD_SIZE > 1) gloo's threads may abort a finished process while Python tears down:
    exit_process flushes and leaves at once; a plain run exits normally (atexit handlers run)."""
    code = ("import atexit; atexit.register(print, 'teardown'); from mllm.training.runtime import exit_process; "
            "print('done', flush=False); exit_process(3)")
    env = {**os.environ, "WORLD_SIZE": world}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout.split() == (["done", "teardown"] if world == "1" else ["done"])
