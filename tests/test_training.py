import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from mllm.training.config import ConfigError, load_config, parse_override
from mllm.training.loop import Task, Trainer, TrainingError, param_groups, warmup_cosine

REPO = Path(__file__).resolve().parents[1]

# ---- config -----------------------------------------------------------------------------------


def test_preset_and_dotted_overrides():
    cfg = load_config("gpt", "tiny", ["train.lr=3e-4", "model.dropout=0.1", "train.betas=[0.8, 0.9]"])
    assert cfg.train.lr == 3e-4 and cfg.model.dropout == 0.1 and cfg.train.betas == [0.8, 0.9]
    assert cfg.model.d_model == 32 and cfg.preset == "tiny"
    assert parse_override("train.max_steps=5") == ("train.max_steps", 5)


def test_config_errors_name_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lrr'; did you mean train.lr"):
        load_config("gpt", "tiny", ["train.lrr=1e-3"])
    with pytest.raises(ConfigError, match=r"train.max_steps must be int .*got float 2.5"):
        load_config("gpt", "tiny", ["train.max_steps=2.5"])
    with pytest.raises(ConfigError, match=r"model.fused must be bool"):
        load_config("gpt", "tiny", ["model.fused=yes please"])
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*\['cpu', 'gpu', 'tiny'\]"):
        load_config("gpt", "huge")
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config("gpt", "tiny", ["train.lr"])


# ---- the loop on a toy task -------------------------------------------------------------------

class Regression(Task):
    kind = "regression"
    eval_metrics = ("val_loss",)

    def __init__(self, nan_at: int | None = None):
        torch.manual_seed(0)
        self.model = nn.Linear(4, 1)
        self.w = torch.tensor([[1.0, -2.0, 3.0, 0.5]])
        self.nan_at = nan_at

    def batch(self, step, micro):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step * 10 + micro))
        return x, x @ self.w.T

    def loss(self, model, batch):
        loss = nn.functional.mse_loss(model(batch[0]), batch[1])
        return loss * float("nan") if self.nan_at is not None and model.training and self._step >= self.nan_at else loss

    def evaluate(self, model):
        x, y = self.batch(10_000, 0)
        return {"val_loss": nn.functional.mse_loss(model(x), y).item()}


def _cfg(**train):
    cfg = load_config("gpt", "tiny", ["train.device=cpu", "train.lr=0.1", "train.max_steps=150",
                                      "train.eval_interval=50", "train.checkpoint_interval=1"])
    cfg.train.update(train)
    return cfg


def test_loop_learns_and_writes_summary_log_curves_checkpoints(tmp_path):
    summary = Trainer(Regression(), _cfg(grad_accum=2), tmp_path).fit()
    assert summary["best_val_loss"] < 0.05
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert {"wall_time_s", "machine", "config"} <= saved.keys() and saved["machine"]["torch_threads"] >= 1
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [50, 100, 150]
    for name in ("curves.png", "best.pt", "last.pt", "config.json"):
        assert (tmp_path / name).is_file()


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    task = Regression(nan_at=7)
    trainer = Trainer(task, _cfg(), tmp_path)
    original = trainer._train_step

    def step():
        task._step = trainer.step + 1
        return original()

    trainer._train_step = step
    with pytest.raises(TrainingError, match=r"loss became nan at step 7.*last.pt.*lower train.lr"):
        trainer.fit()
    assert torch.load(tmp_path / "last.pt", weights_only=False)["step"] == 6


def test_compile_failure_falls_back_to_eager_with_a_message(tmp_path, monkeypatch, capsys):
    def broken_compile(module):
        def call(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    reference = Trainer(Regression(), _cfg(max_steps=20), tmp_path / "eager").fit()
    summary = Trainer(Regression(), _cfg(max_steps=20, compile=True), tmp_path / "fallback").fit()
    assert "torch.compile failed (RuntimeError: InvalidCxxCompiler" in capsys.readouterr().out
    assert summary["best_val_loss"] == reference["best_val_loss"]  # the failed attempt left no trace


def test_compiled_training_matches_eager(tmp_path, capsys):
    eager = Trainer(Regression(), _cfg(max_steps=20), tmp_path / "eager").fit()
    compiled = Trainer(Regression(), _cfg(max_steps=20, compile=True), tmp_path / "compiled").fit()
    if "torch.compile failed" in capsys.readouterr().out:
        pytest.skip("torch.compile cannot run here (no C++ compiler?); the fallback has its own test")
    assert compiled["best_val_loss"] == pytest.approx(eager["best_val_loss"], rel=1e-4)


def test_weight_decay_only_on_matrices_and_schedule_shape():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    groups = param_groups([{"params": list(model.parameters())}], 0.1, lr=1e-3)
    assert [p.dim() for p in groups[0]["params"]] == [2] and groups[0]["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in groups[1]["params"]) and groups[1]["weight_decay"] == 0.0
    assert [g["lr"] for g in groups] == [1e-3, 1e-3]
    lrs = [warmup_cosine(s, 10, 100, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


# ---- resume after SIGTERM / SIGKILL, and DDP -----------------------------------------------------

STEPS = 1000  # long enough (about 2.5 s) that the signal lands before the end
COMMON = [f"train.max_steps={STEPS}", "train.log_interval=1", "train.eval_interval=1000",
          "train.checkpoint_interval=50", "train.device=cpu"]


def _train(run_dir, *extra, resume=False, wait=True, launcher=(sys.executable,), mirror=None):
    """A tiny GPT run; resumed with `--resume` alone: the saved config, not the command line, must rule."""
    settings = ["--resume"] if resume else ["--preset", "tiny", *COMMON, *extra]
    cmd = [*launcher, str(REPO / "main.py"), "train-llm", "--run-dir", str(run_dir), "--data-mirror", str(mirror),
           *settings]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    return proc


def _losses(run_dir) -> dict[int, float]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["train_loss"] for r in map(json.loads, lines) if "train_loss" in r}


def _wait_for_step(run_dir, step, proc, timeout=120):
    start = time.time()
    while time.time() - start < timeout and proc.poll() is None:
        metrics = Path(run_dir) / "metrics.jsonl"
        if metrics.is_file() and max(_losses(run_dir), default=0) >= step:
            return
        time.sleep(0.01)
    raise AssertionError(f"run never reached step {step}: {proc.stdout.read() if proc.poll() is not None else ''}")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, mirror):
    run = tmp_path_factory.mktemp("reference")
    _train(run, mirror=mirror)
    return _losses(run)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_run_resumes_to_the_same_loss(tmp_path, mirror, reference_run, sig):
    proc = _train(tmp_path, wait=False, mirror=mirror)
    _wait_for_step(tmp_path, 60 if sig == signal.SIGKILL else 20, proc)  # SIGKILL: after the step-50 checkpoint
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    stopped = torch.load(tmp_path / "last.pt", weights_only=False)["step"]
    if sig == signal.SIGTERM:
        assert proc.returncode == 0 and "continue with --resume" in out
        assert stopped < STEPS
    else:
        assert stopped % 50 == 0 and stopped >= 50
    _train(tmp_path, resume=True, mirror=mirror)
    resumed = _losses(tmp_path)
    assert sorted(resumed) == list(range(1, STEPS + 1))
    assert resumed[STEPS] == pytest.approx(reference_run[STEPS], abs=1e-6)
    assert all(abs(resumed[s] - reference_run[s]) < 1e-6 for s in range(stopped + 1, STEPS + 1))


def test_existing_run_without_resume_is_refused(tmp_path, mirror):
    (tmp_path / "last.pt").write_bytes(b"x")
    proc = _train(tmp_path, wait=False, mirror=mirror)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "pass --resume" in out


@pytest.mark.parametrize("accum", [1, 2])
def test_ddp_with_two_processes_matches_one_process(tmp_path, mirror, accum):
    steps = ["train.max_steps=8", "train.batch_size=8", f"train.grad_accum={accum}"]  # 2: the no_sync path
    _train(tmp_path / "single", *steps, mirror=mirror)
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
    _train(tmp_path / "ddp", *steps, launcher=launcher, mirror=mirror)
    single, ddp = _losses(tmp_path / "single"), _losses(tmp_path / "ddp")
    assert sorted(ddp) == list(range(1, 9))
    for s in single:
        assert ddp[s] == pytest.approx(single[s], abs=1e-5)


def test_length_buckets_use_every_item_once_per_epoch_with_less_padding():
    from mllm.training.runtime import bucketed_indices, epoch_indices

    lengths = torch.randint(3, 25, (1000,), generator=torch.Generator().manual_seed(0))
    per_epoch = 1000 // 32  # 31 batches; the last 8 items of each epoch's permutation sit it out, as before
    for k in range(3 * per_epoch):
        assert torch.equal(bucketed_indices(lengths, 32, k, seed=5, pool=1), epoch_indices(1000, 32, k, 5))
    for epoch in range(2):
        ks = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        buckets = [bucketed_indices(lengths, 32, k, seed=5, pool=8) for k in ks]
        plain = [epoch_indices(1000, 32, k, 5) for k in ks]
        assert torch.equal(torch.cat(buckets).sort().values, torch.cat(plain).sort().values)  # the same items
        padded = sum(int(lengths[b].max()) * len(b) for b in buckets)
        assert padded < 0.8 * sum(int(lengths[b].max()) * len(b) for b in plain)
    assert torch.equal(bucketed_indices(lengths, 32, 7, 5, 8), bucketed_indices(lengths, 32, 7, 5, 8))
    assert not torch.equal(bucketed_indices(lengths, 32, 7, 5, 8), bucketed_indices(lengths, 32, 7, 6, 8))
