"""Train the captioner on Flickr8k with the shared loop: cached ViT features first, then every part.

Train on the 6,000 train images (5 captions each), select on the 1,000 dev images (dev CIDEr-D of greedy
captions), report on the 1,000 test images once, at the end (`report.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mllm.checkpoint import CheckpointError, load_weights
from mllm.data import Flickr8k
from mllm.evaluation.tokenize import simple_tokenize
from mllm.language.tokenizer import CharTokenizer
from mllm.training.config import Config, ConfigError
from mllm.training.loop import LossOutput, Task
from mllm.training.runtime import step_generator

from .data import CaptionData, augment_images, encode_captions, train_caption_texts
from .inits import TEXT_KEYS, check_fits, init_checkpoint, pretrained_vit, vision_config
from .mllm import Captioner, CaptionerConfig, caption_token_loss, content_word_loss
from .tokenizer import CaptionCharTokenizer, WordTokenizer
from .words import content_vocabulary, word_targets

__all__ = ["CaptionerTask", "CaptioningTask", "encode_captions"]  # encode_captions lives in .data


class CaptionerTask(Task):
    """What the supervised captioner and SCST share: a Captioner over a `CaptionData` (composition), its
    parameter groups, decoding, dev evaluation and checkpoint extras. A subclass builds the model and data and
    calls this constructor; it adds its own batches and loss."""

    kind = "captioner"
    eval_metrics = ("val_loss", "val_cider", "val_distinct")  # distinct: different dev captions

    def __init__(self, cfg: Config, model: Captioner, captioning: CaptionData, lengths: dict[str, int]):
        self.cfg, self.model, self.captioning = cfg, model, captioning
        self._check_context(lengths)
        self._check_grounding()
        if cfg.eval.no_repeat and cfg.model.tokenizer == "char":
            raise ConfigError(f"eval.no_repeat={cfg.eval.no_repeat} counts tokens, and a char captioner's tokens are "
                              f"characters: it would ban every repeated run of {cfg.eval.no_repeat} letters; set "
                              f"eval.no_repeat=0 (the cpu-char presets do)")
        self.model.vit.head.requires_grad_(False)  # the classifier head plays no part in captioning

    # the data object's parts, under the names the tasks and their reports use
    data = property(lambda self: self.captioning.data)
    tokenizer = property(lambda self: self.captioning.tokenizer)
    split = property(lambda self: self.captioning.split)
    images = property(lambda self: self.captioning.images)
    captions = property(lambda self: self.captioning.captions)
    train_caps = property(lambda self: self.captioning.train_caps)
    features = property(lambda self: self.captioning.features)

    def features_of(self, image_idx: Tensor, view: Tensor | int = 0) -> Tensor:
        """Cached patch features [B, P, D] of train images image_idx [B] (`CaptionData.features_of`)."""
        return self.captioning.features_of(image_idx, view)

    def _check_context(self, lengths: dict[str, int]) -> None:
        """Image tokens + a begin token + the longest caption must fit the language model's context."""
        key, longest = max(lengths.items(), key=lambda kv: kv[1])
        if self.model.num_image_tokens + 1 + longest > self.model.gpt.cfg.context:
            raise ConfigError(f"{self.model.num_image_tokens} image tokens + a begin token + {longest} caption tokens "
                              f"({key}) exceed model.text.context {self.model.gpt.cfg.context}; raise the context or "
                              f"lower {' / '.join(lengths)}")

    def _check_grounding(self) -> None:
        """eval.grounding > 0 needs a grounding head with its word ids (the blind baseline decodes without)."""
        strength, m = self.cfg.eval.grounding, self.model
        ready = m.word_head is not None and len(m.cfg.aux_word_ids) == m.cfg.aux_words
        if strength < 0 or (strength > 0 and not m.cfg.blind and not ready):
            raise ConfigError(f"eval.grounding={strength}: grounded decoding needs a strength >= 0 and the grounding "
                              f"head with its word ids (model.grounding_words > 0, word tokenizer); set "
                              f"eval.grounding=0 to decode without it (the blind baseline always does: no image)")

    def param_groups(self) -> list[dict[str, Any]]:
        """The ViT at train.vision_lr_scale, the connector (and grounding head), the GPT at train.text_lr_scale
        (1 where the config has none); frozen parameters are left out by the loop."""
        t, m = self.cfg.train, self.model
        heads = list(m.word_head.parameters()) if m.word_head is not None else []
        return [{"name": "vision", "params": list(m.vit.parameters()), "lr": t.lr * t.vision_lr_scale},
                {"name": "connector", "params": list(m.connector.parameters()) + heads},
                {"name": "text", "params": list(m.gpt.parameters()), "lr": t.lr * t.get("text_lr_scale", 1.0)}]

    @torch.no_grad()
    def captions_for(self, model: Captioner, image_indices: np.ndarray, strategy: str = "greedy") -> list[str]:
        """Decoded captions (text) for dataset images, with the run's eval settings."""
        d = self.decoding(model)
        return self.captioning.captions_for(model, image_indices, strategy, d["max_len"], d["beam_size"],
                                            d["length_penalty"], self.cfg.eval.batch_size, d["grounding"],
                                            d["no_repeat"])

    def decoding(self, model: Captioner) -> dict[str, Any]:
        """The run's eval decoding settings for `model` (`Captioner.generate` keywords); a model without the
        grounding head (the blind baseline) decodes ungrounded."""
        e = self.cfg.eval
        return {"max_len": e.max_len, "beam_size": e.beam_size, "length_penalty": e.length_penalty,
                "grounding": e.grounding if model.cfg.aux_words else 0.0, "no_repeat": e.no_repeat}

    def dev_loss(self, model: Captioner, batch_size: int = 500) -> float:
        """Cross-entropy per caption token over the captions of the val images (`CaptionData.dev_loss`)."""
        return self.captioning.dev_loss(model, batch_size)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        scores = self.captioning.dev_scores(self.captions_for(model, self.captioning.val_images))
        return {"val_loss": self.dev_loss(model), "val_cider": scores["cider"], "val_distinct": scores["distinct"]}

    def on_eval(self, model: nn.Module, step: int, run_dir: Path, log) -> None:
        images = self.split["dev"][:3]
        for i, caption in zip(images, self.captions_for(model, images), strict=True):
            log(f"  dev {self.data.names[i]}: {caption!r}   (ref: {self.data.captions_of(i)[0]!r})")

    def extra_state(self) -> dict[str, Any]:
        return {"model_config": self.model.config_dict(), "tokenizer": self.tokenizer.state_dict()}


class CaptioningTask(CaptionerTask):
    """The supervised captioner: cross-entropy on the training captions, cached ViT features first."""

    def __init__(self, cfg: Config, data: Flickr8k):
        m = cfg.model
        vision_state = init_checkpoint("vision", cfg.init.vision, ("align", "vit"))  # align: the ViT of that run
        text_state = init_checkpoint("text", cfg.init.text, ("gpt",))
        train_text = train_caption_texts(data)
        if m.tokenizer == "word":
            if text_state is not None:
                raise CheckpointError("init.text (the char GPT) needs model.tokenizer=char; with word captions the "
                                      "language model starts from random weights (init.text=null)")
            tokenizer = WordTokenizer.from_captions(train_text, m.min_word_count)
        else:
            base = CharTokenizer.from_state_dict(text_state["extra"]["tokenizer"]) if text_state else None
            tokenizer = CaptionCharTokenizer.from_captions(train_text, base)
        vision = vision_config(vision_state, dict(m.vision), m.image_size)
        text = {**dict(m.text), "vocab_size": tokenizer.vocab_size}
        if text_state is not None:
            check_fits("text", text_state["path"], text_state["extra"]["model_config"], text, TEXT_KEYS)
            text = {**text_state["extra"]["model_config"], "vocab_size": tokenizer.vocab_size,
                    "dropout": m.text.dropout}
        grounding = 0 if m.blind else m.grounding_words
        if cfg.train.length_pool < 1:
            raise ConfigError(f"train.length_pool={cfg.train.length_pool}: give a whole number >= 1 (1: plain random "
                              f"batches; 50: captions of 50 batches sorted by length, then cut)")
        self.content_words, self.word_targets = self._grounding_targets(data, grounding)
        grounding = len(self.content_words)  # at most model.grounding_words: fewer if the captions have fewer
        word_ids = (tuple(tokenizer.stoi.get(w, tokenizer.unk_id) for w in self.content_words)
                    if grounding and isinstance(tokenizer, WordTokenizer) else ())
        model = Captioner(CaptionerConfig(vision, text, m.connector, m.reduce, tokenizer.bos_id, tokenizer.eos_id,
                                          m.blind, tokenizer.banned_ids, m.reduce_factor, grounding, word_ids))
        captioning = CaptionData(data, tokenizer, m.max_caption_len, cfg.eval.val_images,
                                 cfg.eval.test_images)
        super().__init__(cfg, model, captioning, {"model.max_caption_len": m.max_caption_len,
                                                  "eval.max_len": cfg.eval.max_len})
        if vision_state is not None:
            self._init_vision(vision_state)
        if text_state is not None:
            self._init_text(text_state)
        if m.blind:  # a baseline: the language model alone
            self.model.vit.requires_grad_(False)
            self.model.connector.requires_grad_(False)
        t = cfg.train
        self.frozen_steps = 0 if m.blind else int(t.frozen_vision_until * t.max_steps)
        if self.frozen_steps:
            captioning.cache_features(self.model, cfg.augment.feature_views, t.seed, self.augment)
        self.find_unused_parameters = self.frozen_steps > 0  # the ViT sits out the frozen steps

    @staticmethod
    def _grounding_targets(data: Flickr8k, words: int) -> tuple[list[str], Tensor | None]:
        """The grounding head's `words` content words and each image's targets [N, words] (rows of the train
        images only: dev and test references stay unseen); ([], None) without the head."""
        if not words:
            return [], None
        train = data.split_indices("train")
        train_refs = [[simple_tokenize(c).split() for c in data.captions_of(int(i))] for i in train]
        content_words = content_vocabulary([t for refs in train_refs for t in refs], words)
        targets = torch.zeros(len(data.images), len(content_words))
        targets[torch.from_numpy(train).long()] = word_targets(train_refs, content_words)
        return content_words, targets

    def _init_vision(self, state: dict) -> None:
        m = self.cfg.model
        self.model.vit.load_state_dict(pretrained_vit(state, m.image_size, m.vision.patch_size).state_dict())

    def _init_text(self, state: dict) -> None:
        """The GPT's weights; embedding rows for new characters start at the mean of the known ones."""
        weights = dict(state["model"])
        old = weights["tok_embed.weight"]
        new = old.mean(0, keepdim=True).expand(self.tokenizer.vocab_size - old.shape[0], -1)
        weights["tok_embed.weight"] = weights["head.weight"] = torch.cat([old, new])
        load_weights(self.model.gpt, weights, state["path"])

    def augment(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """uint8 [B, S, S, 3] -> the same, each image shifted and mirrored at random (the augment section)."""
        return augment_images(images, generator, self.cfg.augment.crop_padding, self.cfg.augment.flip)

    def batch(self, step: int, micro: int) -> tuple[Tensor, ...]:
        """(images uint8 [B, S, S, 3] or cached features [B, N, D], captions [B, T], targets [B, T]) and, with
        the grounding head, the content-word targets [B, W] of each caption's image."""
        t = self.cfg.train
        k = (step - 1) * t.grad_accum + micro
        inputs, targets, image_idx = self.captioning.caption_batch(k, t.batch_size, t.seed, t.length_pool)
        g = step_generator(t.seed, step, micro)
        if step <= self.frozen_steps and self.features is not None:  # a cached view of each image
            view = torch.randint(0, self.features.shape[0], (len(image_idx),), generator=g)
            pixels = self.features_of(image_idx, view)
        else:
            pixels = self.augment(self.images[image_idx], g)
        if self.word_targets is not None:
            return pixels, inputs, targets, self.word_targets[image_idx]
        return pixels, inputs, targets

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> LossOutput:
        """Cross-entropy per caption token, plus grounding_weight x the content-word loss (`content_word_loss`)
        when the grounding head is on, each caption's image weighing as much as the caption has tokens: both are
        sums over tokens, so the loop's mean is the same for any split of the batch (micro-batches, processes)."""
        pixels, captions, targets = batch[:3]
        images, features = (pixels, None) if pixels.dtype == torch.uint8 else (None, pixels)
        if len(batch) == 3:
            logits, _ = model(captions, images=images, features=features)
            return LossOutput(*caption_token_loss(logits, targets))
        logits, _, words = model(captions, images=images, features=features, words=True)
        total, count = caption_token_loss(logits, targets)
        grounding = content_word_loss(words, batch[3], weights=(targets != -100).sum(1).float())
        return LossOutput(total + self.cfg.train.grounding_weight * grounding, count,
                          {"grounding": grounding.detach() / count})

    def finish(self, model: nn.Module, run_dir: Path, log) -> dict[str, Any]:
        if not self.cfg.eval.test:  # an ablation compared on dev: the test split stays unseen
            log("test split not scored (eval.test=false)")
            return {"test": None}
        from .report import write_report

        return write_report(self, model, run_dir, log)

    def curve_marks(self) -> dict[int, str]:
        if not self.frozen_steps or self.frozen_steps >= self.cfg.train.max_steps:  # no switch to mark
            return {}
        return {self.frozen_steps: "ViT frozen (cached features) before, all parts after"}
