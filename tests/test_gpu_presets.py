"""Every `gpu` preset (configs/vit.yaml, align.yaml, gpt.yaml, mllm.yaml, rl.yaml) builds at full size and takes 2
optimisation steps on CPU with its own dtype (bfloat16 autocast where the preset sets it), chained as the demo
chains them: the alignment starts from the gpu ViT's checkpoint, the captioner from the alignment's, SCST from the
gpu captioner's. Batch 2 and a
few synthetic images, captions and characters stand in for the data sets (building them is not what is tested
here); train.compile is off (compiling the models on CPU takes minutes: scripts/gpu_check.sh runs it on a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mllm.data.cifar import Cifar10
from mllm.data.flickr8k import Flickr8k
from mllm.data.shakespeare import Shakespeare
from mllm.training.config import load_config
from mllm.training.loop import Trainer

ON_CPU = ["train.device=cpu", "train.compile=false", "train.batch_size=2", "train.max_steps=2",
          "train.warmup_steps=1"]
WORDS = "a dog man woman child runs jumps sits on in the grass water street ball red blue".split()


def _cifar() -> Cifar10:
    g = np.random.default_rng(0)
    y = np.arange(60) % 10
    return Cifar10(g.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8), y, g.integers(0, 256, (20, 32, 32, 3),
                   dtype=np.uint8), np.arange(20) % 10)


def _flickr(size: int) -> Flickr8k:
    g = np.random.default_rng(1)
    n = 12  # 8 train, 2 dev, 2 test images, 5 captions each, from a small vocabulary (every word frequent)
    captions = [" ".join(g.choice(WORDS, g.integers(4, 12))) for _ in range(5 * n)]
    return Flickr8k(g.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                    np.array([f"{i}.jpg" for i in range(n)]), np.array([0] * 8 + [1] * 2 + [2] * 2),
                    np.array(captions), np.repeat(np.arange(n), 5), {})


def _two_steps(task, cfg, run: Path) -> list[float]:
    """Two optimisation steps through the shared loop (no evaluation, no test report); best.pt for the next stage."""
    trainer = Trainer(task, cfg, run)
    run.mkdir(parents=True, exist_ok=True)
    before = [p.detach().clone() for p in trainer.params]
    losses = [trainer._train_step()["train_loss"] for _ in range(2)]
    assert trainer.step == 2 and all(np.isfinite(losses)), losses
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.params, strict=True)), "nothing was updated"
    trainer.save("best.pt")
    return losses


def test_every_gpu_preset_builds_at_full_size_and_trains_two_steps(tmp_path):
    from mllm.language.train import LanguageModelTask
    from mllm.multimodal.align import AlignTask
    from mllm.multimodal.train import CaptioningTask
    from mllm.rl.train import SCSTTask
    from mllm.vision.train import ImageClassificationTask

    torch.set_num_threads(1)
    sizes = {}
    cfg = load_config("vit", "gpu", [*ON_CPU, "train.epochs=0", "train.eval_interval=1", "data.val_size=10"])
    assert cfg.train.dtype == "bfloat16"
    task = ImageClassificationTask(cfg, _cifar())
    sizes["vit"] = sum(p.numel() for p in task.model.parameters())
    _two_steps(task, cfg, tmp_path / "vit-gpu")

    cfg = load_config("gpt", "gpu", ON_CPU)
    text = "".join(np.random.default_rng(2).choice(list("abcdefghij \n"), 2000))
    task = LanguageModelTask(cfg, Shakespeare(text, text[:600]))
    sizes["gpt"] = sum(p.numel() for p in task.model.parameters())
    _two_steps(task, cfg, tmp_path / "gpt-gpu")

    cfg = load_config("align", "gpu", [*ON_CPU, f"init.vision={tmp_path / 'vit-gpu'}"])
    assert cfg.train.dtype == "bfloat16"
    task = AlignTask(cfg, _flickr(cfg.model.image_size))
    vit, own = torch.load(tmp_path / "vit-gpu" / "best.pt", weights_only=False)["model"], task.model.vit.state_dict()
    same = [k for k in own if k in vit and own[k].shape == vit[k].shape and "pos" not in k]
    assert len(same) > 50 and all(torch.equal(own[k], vit[k]) for k in same)  # the ViT starts from the gpu ViT
    _two_steps(task, cfg, tmp_path / "align-gpu")

    cfg = load_config("mllm", "gpu", [*ON_CPU, f"init.vision={tmp_path / 'align-gpu'}", "augment.feature_views=1"])
    assert cfg.train.dtype == "bfloat16"
    task = CaptioningTask(cfg, _flickr(cfg.model.image_size))
    assert task.frozen_steps == 1  # step 1 on cached ViT features, step 2 trains every part
    aligned = torch.load(tmp_path / "align-gpu" / "best.pt", weights_only=False)["model"]
    own = task.model.vit.state_dict()
    assert all(torch.equal(own[k], aligned[f"vit.{k}"]) for k in own)  # the ViT starts from the aligned one
    sizes["captioner"] = sum(p.numel() for p in task.model.parameters())
    _two_steps(task, cfg, tmp_path / "mllm-gpu")

    cfg = load_config("rl", "gpu", [*ON_CPU, f"init.captioner={tmp_path / 'mllm-gpu'}"])
    task = SCSTTask(cfg, _flickr(cfg.model.image_size))
    _two_steps(task, cfg, tmp_path / "rl-gpu")
    assert sizes["vit"] > 10e6 and sizes["gpt"] > 10e6 and sizes["captioner"] > 20e6, sizes  # full size


@pytest.mark.parametrize("name", ["vit", "align", "gpt", "mllm", "rl"])
def test_the_gpu_check_script_runs_every_gpu_stage(name):
    script = (Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh").read_text()
    command = {"vit": "train-vit", "align": "train-align", "gpt": "train-llm", "mllm": "train-mllm",
               "rl": "train-rl"}[name]
    assert f"main.py {command} --preset gpu" in script
    assert "torchrun --standalone --nproc_per_node 1 main.py train-llm --preset gpu" in script
