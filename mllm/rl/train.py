"""SCST fine-tuning of a trained captioner, as a Task on the shared loop (`python main.py train-rl`).

Each step takes `train.batch_size` training images. For each: n captions sampled at `rl.temperature` (from the top
`rl.top_k` tokens when above 0; each image with its own seed, `sampling.py`), or with `rl.sampler=beam` its n best
beams (`beam_nbest`, width rl.samples, decoded as dev and test decode: grounding bias, no_repeat; Cornia et al.
2020 train on beams so), and one greedy caption (with sampling, as more rows of the same decoding batch), all with
the key/value cache and without gradients; every caption rewarded with CIDEr-D against the image's 5 references
(training-set document frequencies), plus `rl.diversity_bonus` x its n-gram novelty among the image's samples; then
one teacher-forced pass gives the samples' log-probabilities with gradients (and, with `rl.xe_weight` > 0, the logits
of the images' reference captions for the supervised cross-entropy), and `scst_loss` turns advantages into a loss. The
model runs in eval mode throughout (no dropout), so the log-probabilities are those of the distribution that was
sampled; with `rl.dropout` the teacher-forced pass runs with dropout on (the samples drawn without it: a regularised
gradient, as supervised training has). With `rl.feature_views` > 1 each image comes as one of that many cached views
(the image and shifted, mirrored copies drawn afresh), picked by its seed. Dev CIDEr-D of greedy captions selects
the checkpoint; the test split is scored once, at the end (`report.py`). With `rl.grounded`, the samples, the greedy
caption and the teacher-forced log-probabilities and entropy are all of the grounded distribution dev and test decode
with: the logits plus eval.grounding x `Captioner.grounding_bias`, computed once per batch without gradient (the bias
follows the trained connector's image tokens, but no gradient flows through it).

Logged each step: reward_sample (the samples' mean CIDEr-D), reward_greedy (the greedy caption's: the
self-critical baseline, and what test-time decoding earns), advantage (their standard deviation: the spread
that drives learning; the mean is 0 by construction for the mean baseline), sample_len, entropy (per token),
reward_share; with the options, novelty, xe (cross-entropy of the reference captions) and policy_loss.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllm.checkpoint import CheckpointError, load_checkpoint, load_weights
from mllm.data import Flickr8k
from mllm.language.beams import beam_nbest
from mllm.language.decoding import decode, real_token_mask, teacher_inputs
from mllm.multimodal.data import CaptionData, augment_images
from mllm.multimodal.mllm import Captioner, CaptionerConfig
from mllm.multimodal.tokenizer import tokenizer_from_state
from mllm.multimodal.train import CaptionerTask
from mllm.training.config import Config, ConfigError, config_diff, with_added_keys
from mllm.training.loop import LossOutput

from .reward import CiderReward, ngram_novelty
from .sampling import sample_per_image
from .scst import baseline_rewards, policy_logprobs, reference_xe, scst_loss


def load_supervised(cfg: Config) -> dict:
    """The supervised captioner's checkpoint; its model settings must equal the config's `model` section."""
    path = cfg.init.captioner
    if not path or not Path(path).exists():
        raise CheckpointError(f"init.captioner={path}: no such run or file; train the supervised captioner first "
                              f"(python main.py train-mllm --preset cpu writes runs/mllm-cpu) or point init.captioner "
                              f"at its run folder")
    state = load_checkpoint(path, "captioner")
    saved, _ = with_added_keys(state["config"], "mllm")  # a run from before a model key existed: its default
    differ = config_diff(saved["model"], cfg.model.to_dict())
    if differ:
        listing = ", ".join(f"model.{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in differ.items())
        raise ConfigError(f"init.captioner {state['path']} does not fit the config ({listing}); set these keys in "
                          f"configs/rl.yaml (or as key=value) to the supervised run's values")
    return state


SAMPLERS = ("sample", "beam")
FRESH_VIEWS = 7919  # added to train.seed for SCST's augmented feature views (rl.feature_views > 1)


def check_rl_settings(cfg: Config) -> None:
    r = cfg.rl
    if r.temperature <= 0:
        raise ConfigError(f"rl.temperature must be above 0 (got {r.temperature}): SCST learns from sampled captions")
    if r.baseline == "mean" and r.samples < 2:
        raise ConfigError("rl.baseline=mean needs rl.samples >= 2 (the mean of an image's other samples)")
    if r.feature_views < 1 or (r.feature_views > 1 and not r.freeze_vision):
        raise ConfigError(f"rl.feature_views={r.feature_views}: cached views need rl.freeze_vision=true and at least "
                          "1 view (1: the image only)")
    for name in ("entropy_bonus", "xe_weight", "xe_refs", "diversity_bonus", "top_k"):
        if r[name] < 0:
            raise ConfigError(f"rl.{name} must be 0 or more, got {r[name]}")
    if r.sampler not in SAMPLERS:
        raise ConfigError(f"rl.sampler must be one of {', '.join(SAMPLERS)}, got {r.sampler!r}")
    if r.sampler == "beam" and (r.temperature != 1.0 or r.top_k):
        raise ConfigError("rl.sampler=beam trains on beam search's captions under the model's own distribution: "
                          f"leave rl.temperature=1 and rl.top_k=0 (got {r.temperature} and {r.top_k})")
    if r.diversity_bonus and r.samples < 2:
        raise ConfigError("rl.diversity_bonus needs rl.samples >= 2 (novelty among an image's samples)")
    if cfg.model.blind:
        raise ConfigError("model.blind=true: a blind captioner does not see the image; SCST fine-tunes captioners "
                          "that do (init.captioner = a run trained with model.blind=false)")


class SCSTTask(CaptionerTask):
    """SCST on the supervised captioner: the same data object, decoding and dev evaluation (`CaptionerTask`),
    its own batches (images) and loss."""

    eval_at_start = True  # step 0 = the supervised model: the curves' start, and best.pt until SCST beats it
    # dev cross-entropy as val_xe: plotted beside the training captions' cross-entropy (xe), not the policy loss
    eval_metrics = ("val_xe", "val_cider", "val_distinct", "val_top_share")

    def __init__(self, cfg: Config, data: Flickr8k):
        check_rl_settings(cfg)
        state = load_supervised(cfg)
        self.supervised = {k: state[k] for k in ("model", "extra", "path")}  # the "before" of the report
        model = Captioner(CaptionerConfig(**state["extra"]["model_config"]))
        load_weights(model, state["model"], state["path"])
        tokenizer = tokenizer_from_state(state["extra"]["tokenizer"])
        captioning = CaptionData(data, tokenizer, cfg.model.max_caption_len, cfg.eval.val_images,
                                 cfg.eval.test_images)
        super().__init__(cfg, model, captioning, {"model.max_caption_len": cfg.model.max_caption_len,
                                                  "rl.max_len": cfg.rl.max_len, "eval.max_len": cfg.eval.max_len})
        if model.word_head is not None:  # the grounding head's loss is the supervised run's, not SCST's
            model.word_head.requires_grad_(False)
        if cfg.rl.freeze_vision:  # no ViT forward or backward during SCST: its features, computed once
            model.vit.requires_grad_(False)
            aug = state["config"].get("augment", {})  # shifted and mirrored as the supervised run augmented,
            pad, flip = aug.get("crop_padding", 0), aug.get("flip", False)  # with draws of their own (FRESH_VIEWS):
            if cfg.rl.feature_views > 1 and not (pad or flip):
                raise ConfigError(f"rl.feature_views={cfg.rl.feature_views}, but the supervised run {state['path']} "
                                  "did not augment (augment.crop_padding=0, augment.flip=false): every view would "
                                  "be the image itself; set rl.feature_views=1")
            captioning.cache_features(model, cfg.rl.feature_views, cfg.train.seed + FRESH_VIEWS,  # not its views
                                      lambda x, g: augment_images(x, g, pad, flip))
        self.reward = CiderReward([data.captions_of(i) for i in range(len(data.images))], self.split["train"])
        self.frozen_steps = 0
        # rl.grounded: the policy (samples, greedy baseline, log-probabilities) is the grounded distribution that
        # dev and test decode with: the logits plus eval.grounding x the grounding head's log-probabilities
        if cfg.rl.grounded and not (cfg.eval.grounding > 0 and model.cfg.aux_words):
            raise ConfigError(f"rl.grounded=true needs grounded decoding (eval.grounding > 0, got "
                              f"{cfg.eval.grounding}) and a captioner with the grounding head; set rl.grounded=false")
        self.policy_grounding = cfg.eval.grounding if cfg.rl.grounded else 0.0

    def curve_title(self) -> str:
        return "SCST"

    def batch(self, step: int, micro: int) -> tuple[Tensor, ...]:
        """(cached features [B, N, D] or images uint8 [B, S, S, 3], image indices [B], sampling seeds [B]: one
        per image, from train.seed, the step and the image's row, so a process's shard samples what one process
        would for those rows). With rl.feature_views > 1, each image's cached view is a hash of its seed."""
        t = self.cfg.train
        k = (step - 1) * t.grad_accum + micro
        images = self.captioning.image_batch(k, t.batch_size, t.seed)
        seeds = (t.seed * 1_000_003 + k) * 1009 + torch.arange(len(images))
        if self.features is not None:  # each image's cached view from its seed (a hash: any split draws the same)
            pixels = self.features_of(images, ((seeds % 2**31) * 2_654_435_761 >> 16) % self.features.shape[0])
        else:
            pixels = self.images[images]
        return pixels, images, seeds

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        scores = self.captioning.dev_scores(self.captions_for(model, self.captioning.val_images))
        return {"val_xe": self.dev_loss(model), "val_cider": scores["cider"], "val_distinct": scores["distinct"],
                "val_top_share": scores["top_share"]}

    def loss(self, net: nn.Module, batch: tuple[Tensor, ...]) -> LossOutput:
        pixels, images, seeds = batch
        r = self.cfg.rl
        model: Captioner = net.module if hasattr(net, "module") else net  # DDP wraps the captioner
        model.eval()  # no dropout: samples and their log-probabilities from one distribution
        start = time.perf_counter()
        key = "features" if pixels.dtype != torch.uint8 else "images"
        with torch.no_grad():
            prefix = model.image_tokens(**{key: pixels})
            bias = model.grounding_bias(prefix, self.policy_grounding) if self.policy_grounding else None
            if r.sampler == "beam":  # the image's rl.samples best beams, decoded as dev/test decode them
                greedy = decode(model.gpt, prefix, model.bos_id, model.eos_id, r.max_len, banned=model.banned,
                                bias=bias)[0]  # as model.generate decodes, from the image tokens already made
                d = self.decoding(model)
                decode_bias = model.grounding_bias(prefix, d["grounding"]) if d["grounding"] else None
                samples = beam_nbest(model.gpt, prefix, model.bos_id, model.eos_id, r.max_len, r.samples,
                                     model.banned, decode_bias, d["no_repeat"])[0]
            else:  # the samples and, in the same batch, the greedy captions (the last B rows)
                both = sample_per_image(model.gpt, prefix, seeds, r.samples, model.bos_id, model.eos_id, r.max_len,
                                        r.temperature, r.top_k, model.banned, bias, greedy=True)
                samples, greedy = both[: len(images) * r.samples], both[len(images) * r.samples :]
                samples = samples[:, : int(real_token_mask(samples, model.eos_id).sum(1).max())]  # own width
        reward_start = time.perf_counter()
        image_ids = images.cpu().numpy()
        texts = [self.tokenizer.decode(row) for part in (samples, greedy) for row in part.cpu()]
        rewards = torch.from_numpy(self.reward(texts, np.concatenate([image_ids.repeat(r.samples), image_ids])))
        rewards = rewards.float().to(pixels.device)
        sample_r, greedy_r = rewards[: len(samples)], rewards[len(samples):]
        policy_r, extra = sample_r, {}
        if r.diversity_bonus:
            novelty = torch.from_numpy(ngram_novelty(texts[: len(samples)], r.samples)).float().to(pixels.device)
            policy_r, extra["novelty"] = sample_r + r.diversity_bonus * novelty, novelty.mean()
        reward_seconds = time.perf_counter() - reward_start
        advantage = policy_r - baseline_rewards(policy_r, greedy_r, r.samples, r.baseline)
        if r.dropout:  # a regularised gradient: the captions came from the model without dropout, as dev decodes
            model.train()
        logits, refs = self._forward(net, pixels, key, images, samples, seeds)
        if bias is not None:  # the policy is the grounded distribution that was sampled
            logits = logits + bias.repeat_interleave(r.samples, dim=0)[:, None]
        logp, mask, entropy = policy_logprobs(logits, samples, model.eos_id, r.temperature, r.top_k, model.banned)
        total, count = scst_loss(logp, mask, advantage, entropy, r.entropy_bonus)
        if refs is not None:
            xe_total, extra["xe"] = reference_xe(*refs, r.samples)
            extra["policy_loss"] = total.detach() / count
            total = total + r.xe_weight * xe_total
        loss_seconds = time.perf_counter() - start  # sampling, rewards, forward (not the backward: an upper bound)
        tokens = mask.sum()
        return LossOutput(total, count, {
            "reward_sample": sample_r.mean(), "reward_greedy": greedy_r.mean(),
            "advantage": advantage.std(correction=0),  # the spread: the mean is 0 for the mean baseline
            "sample_len": tokens / len(samples), "entropy": entropy.sum().detach() / tokens,
            "reward_share": reward_seconds / max(loss_seconds, 1e-9), **extra})

    def _forward(self, net: nn.Module, pixels: Tensor, key: str, images: Tensor, samples: Tensor, seeds: Tensor
                 ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor] | None]:
        """One teacher-forced pass (one DDP forward) over the samples [N, L] and, with rl.xe_weight, the images'
        reference captions (all, or rl.xe_refs of each, drawn from the image's seed [B]): the samples' logits
        [N, L, V] and (reference logits [R, T, V], targets [R, T], the position in the batch of each one's image
        [R]) or None."""
        model = net.module if hasattr(net, "module") else net
        inputs = teacher_inputs(samples, model.bos_id)
        image_of = torch.arange(len(pixels), device=pixels.device).repeat_interleave(self.cfg.rl.samples)
        if not self.cfg.rl.xe_weight:  # the image tokens computed once per image, shared by its samples
            return net(inputs, **{key: pixels}, image_of=image_of)[0], None
        ref_in, ref_targets, owner = self.captioning.reference_batch(images.cpu(), self.cfg.rl.xe_refs, seeds)
        ref_in, ref_targets, owner = ref_in.to(pixels.device), ref_targets.to(pixels.device), owner.to(pixels.device)
        width = max(inputs.shape[1], ref_in.shape[1])  # padded on the right: causal, earlier positions unchanged
        rows = torch.cat([F.pad(x, (0, width - x.shape[1]), value=model.eos_id) for x in (inputs, ref_in)])
        logits, _ = net(rows, **{key: pixels}, image_of=torch.cat([image_of, owner]))
        n = len(samples)
        return logits[:n, : inputs.shape[1]], (logits[n:, : ref_in.shape[1]], ref_targets, owner)

    def finish(self, model: nn.Module, run_dir: Path, log) -> dict[str, Any]:
        if not self.cfg.eval.test:  # an ablation compared on dev: the test split stays unseen
            log("test split not scored (eval.test=false)")
            return {"test": None}
        from .report import write_rl_report

        return write_rl_report(self, model, run_dir, log)
