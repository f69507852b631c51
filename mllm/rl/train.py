"""SCST fine-tuning of a trained captioner, as a Task on the shared loop (`python main.py train-rl`).

Each step takes `train.batch_size` training images. For each: n captions sampled at `rl.temperature` and one
greedy caption, both with the key/value cache and without gradients; every caption rewarded with CIDEr-D
against the image's 5 references (training-set document frequencies); then one teacher-forced pass gives the
samples' log-probabilities with gradients, and `scst_loss` turns advantages into a loss. The model runs in
eval mode throughout (no dropout), so the log-probabilities are those of the distribution that was sampled.
Dev CIDEr-D of greedy captions selects the checkpoint; the test split is scored once, at the end (`report.py`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mllm.checkpoint import CheckpointError, load_checkpoint, load_weights
from mllm.data import Flickr8k
from mllm.language.decoding import logprobs_of, teacher_inputs
from mllm.multimodal.mllm import Captioner, CaptionerConfig
from mllm.multimodal.tokenizer import tokenizer_from_state
from mllm.multimodal.train import CaptioningTask
from mllm.training.config import Config, ConfigError, config_diff
from mllm.training.loop import LossOutput
from mllm.training.runtime import epoch_indices

from .reward import CiderReward
from .scst import baseline_rewards, scst_loss


def load_supervised(cfg: Config) -> dict:
    """The supervised captioner's checkpoint; its model settings must equal the config's `model` section."""
    path = cfg.init.captioner
    if not path or not Path(path).exists():
        raise CheckpointError(f"init.captioner={path}: no such run or file; train the supervised captioner first "
                              f"(python main.py train-mllm --preset cpu writes runs/mllm-cpu) or point init.captioner "
                              f"at its run folder")
    state = load_checkpoint(path, "captioner")
    differ = config_diff(state["config"]["model"], cfg.model.to_dict())
    if differ:
        listing = ", ".join(f"model.{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in differ.items())
        raise ConfigError(f"init.captioner {state['path']} does not fit the config ({listing}); set these keys in "
                          f"configs/rl.yaml (or as key=value) to the supervised run's values")
    return state


def check_rl_settings(cfg: Config) -> None:
    r = cfg.rl
    if r.temperature <= 0:
        raise ConfigError(f"rl.temperature must be above 0 (got {r.temperature}): SCST learns from sampled captions")
    if r.baseline == "mean" and r.samples < 2:
        raise ConfigError("rl.baseline=mean needs rl.samples >= 2 (the mean of an image's other samples)")
    if r.entropy_bonus < 0:
        raise ConfigError(f"rl.entropy_bonus must be 0 or more, got {r.entropy_bonus}")
    if cfg.model.blind:
        raise ConfigError("model.blind=true: a blind captioner does not see the image; SCST fine-tunes captioners "
                          "that do (init.captioner = a run trained with model.blind=false)")


class SCSTTask(CaptioningTask):
    """Shares the supervised task's data handling, decoding and dev evaluation; replaces its batches and loss."""

    kind = "captioner"  # an SCST checkpoint is a captioner: `caption` and the report read it the same way
    eval_at_start = True  # step 0 = the supervised model: the curves' start, and best.pt until SCST beats it

    def __init__(self, cfg: Config, data: Flickr8k):
        self.cfg, self.data, r = cfg, data, cfg.rl
        check_rl_settings(cfg)
        state = load_supervised(cfg)
        self.supervised = {k: state[k] for k in ("model", "extra", "path")}  # the "before" of the report
        self.model = Captioner(CaptionerConfig(**state["extra"]["model_config"]))
        load_weights(self.model, state["model"], state["path"])
        self.tokenizer = tokenizer_from_state(state["extra"]["tokenizer"])
        self._check_context({"model.max_caption_len": cfg.model.max_caption_len, "rl.max_len": r.max_len,
                             "eval.max_len": cfg.eval.max_len})
        self._splits(data)
        self._encode(data)
        self.model.vit.head.requires_grad_(False)
        if self.model.word_head is not None:  # the grounding head's loss is the supervised run's, not SCST's
            self.model.word_head.requires_grad_(False)
        self.features = None
        if cfg.rl.freeze_vision:  # no ViT forward or backward during SCST: its features, computed once
            self.model.vit.requires_grad_(False)
            self.features = self._cached_features(views=1)
        self.reward = CiderReward([data.captions_of(i) for i in range(len(data.images))], self.split["train"])
        self.frozen_steps = 0

    def param_groups(self) -> list[dict[str, Any]]:
        t, m = self.cfg.train, self.model
        return [{"name": "vision", "params": list(m.vit.parameters()), "lr": t.lr * t.vision_lr_scale},
                {"name": "connector", "params": list(m.connector.parameters())},
                {"name": "text", "params": list(m.gpt.parameters())}]

    def batch(self, step: int, micro: int) -> tuple[Tensor, ...]:
        """(cached features [B, N, D] or images uint8 [B, S, S, 3], image indices [B], sampling seeds [B])."""
        t = self.cfg.train
        k = (step - 1) * t.grad_accum + micro
        images = torch.from_numpy(self.split["train"])[epoch_indices(len(self.split["train"]), t.batch_size, k, t.seed)]
        images = images.long()
        pixels = self.features_of(images) if self.features is not None else self.images[images]
        seeds = (t.seed * 1_000_003 + k) * 1009 + torch.arange(len(images))  # a shard samples with its first row's seed
        return pixels, images, seeds

    def loss(self, net: nn.Module, batch: tuple[Tensor, ...]) -> LossOutput:
        pixels, images, seeds = batch
        r = self.cfg.rl
        model: Captioner = net.module if hasattr(net, "module") else net  # DDP wraps the captioner
        model.eval()  # no dropout: samples and their log-probabilities from one distribution
        start = time.perf_counter()
        seen = {"features": pixels} if pixels.dtype != torch.uint8 else {"images": pixels}
        with torch.no_grad():
            greedy = model.generate(**seen, max_len=r.max_len)
            g = torch.Generator().manual_seed(int(seeds[0]))
            samples, _ = model.sample_captions(**seen, n=r.samples, max_len=r.max_len, temperature=r.temperature,
                                               generator=g)
        reward_start = time.perf_counter()
        image_ids = images.cpu().numpy()
        texts = [self.tokenizer.decode(row) for part in (samples, greedy) for row in part.cpu()]
        rewards = torch.from_numpy(self.reward(texts, np.concatenate([image_ids.repeat(r.samples), image_ids])))
        rewards = rewards.float().to(pixels.device)
        sample_r, greedy_r = rewards[: len(samples)], rewards[len(samples):]
        reward_seconds = time.perf_counter() - reward_start
        advantage = sample_r - baseline_rewards(sample_r, greedy_r, r.samples, r.baseline)
        repeated = {k: v.repeat_interleave(r.samples, dim=0) for k, v in seen.items()}
        logits, _ = net(teacher_inputs(samples, model.bos_id), **repeated)
        logp, mask, entropy = logprobs_of(logits, samples, model.eos_id, r.temperature, model.banned)
        total, count = scst_loss(logp, mask, advantage, entropy, r.entropy_bonus)
        loss_seconds = time.perf_counter() - start  # sampling, rewards, forward (not the backward: an upper bound)
        tokens = mask.sum()
        return LossOutput(total, count, {
            "reward_sample": sample_r.mean(), "reward_greedy": greedy_r.mean(), "advantage": advantage.mean(),
            "sample_len": tokens / len(samples), "entropy": entropy.sum().detach() / tokens,
            "reward_share": reward_seconds / max(loss_seconds, 1e-9)})

    def finish(self, model: nn.Module, run_dir: Path, log) -> dict[str, Any]:
        from .report import write_rl_report

        return write_rl_report(self, model, run_dir, log)

    def curve_marks(self) -> dict[int, str]:
        return {}
