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

from mllm.checkpoint import CheckpointError, load_checkpoint, load_weights
from mllm.data import Flickr8k
from mllm.data.augment import random_crop, random_flip
from mllm.evaluation.cider import CiderD
from mllm.evaluation.tokenize import ptb_tokenize, simple_tokenize
from mllm.language.decoding import real_token_mask
from mllm.language.tokenizer import CharTokenizer
from mllm.training.config import Config, ConfigError
from mllm.training.loop import LossOutput, Task
from mllm.training.runtime import epoch_indices, step_generator
from mllm.vision.vit import ViT, ViTConfig

from .mllm import Captioner, CaptionerConfig, caption_token_loss, content_word_loss
from .tokenizer import CaptionCharTokenizer, WordTokenizer
from .words import content_vocabulary, word_targets

VISION_KEYS = ("d_model", "num_layers", "num_heads", "mlp_ratio")  # image and patch size may differ: adapted
TEXT_KEYS = ("d_model", "num_layers", "num_heads", "mlp_ratio", "context")


def _check_fits(kind: str, path: str, saved: dict, wanted: dict, keys: tuple[str, ...]) -> None:
    differ = {k: (saved.get(k), wanted.get(k)) for k in keys if saved.get(k) != wanted.get(k)}
    if differ:
        listing = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in differ.items())
        raise CheckpointError(f"init.{kind} {path} does not fit the config ({listing}); set model.{kind}.* to the "
                              f"checkpoint's values, or init.{kind}=null for a random {kind} model")


def _init_state(part: str, path: str | None, kind: str, command: str) -> dict | None:
    """The checkpoint a part starts from (None: random init); a missing run names the command that trains it."""
    if not path:
        return None
    if not Path(path).exists():
        raise CheckpointError(f"init.{part}={path}: no such run or file; train it first (python main.py {command} "
                              f"--preset cpu writes runs/{kind}-cpu), or set init.{part}=null to start from random "
                              f"weights")
    return load_checkpoint(path, kind)


def encode_captions(captions: list[str], tokenizer, max_len: int) -> Tensor:
    """Captions -> ids [M, max_len + 1]: BOS, the caption, EOS, then EOS padding. A caption of max_len tokens
    or more is cut to max_len and gets no EOS: the model is never taught to stop mid-caption."""
    out = torch.full((len(captions), max_len + 1), tokenizer.eos_id, dtype=torch.long)
    out[:, 0] = tokenizer.bos_id
    for i, caption in enumerate(captions):
        ids = tokenizer.encode(caption)[:max_len]
        out[i, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


class CaptioningTask(Task):
    kind = "captioner"
    eval_metrics = ("val_loss", "val_cider", "val_distinct")  # distinct: different dev captions

    def __init__(self, cfg: Config, data: Flickr8k):
        self.cfg, self.data, m = cfg, data, cfg.model
        self._splits(data)
        vision_state = _init_state("vision", cfg.init.vision, "vit", "train-vit")
        text_state = _init_state("text", cfg.init.text, "gpt", "train-llm")
        train_text = [str(c) for c in data.captions[self.train_caps]]
        if m.tokenizer == "word":
            if text_state is not None:
                raise CheckpointError("init.text (the char GPT) needs model.tokenizer=char; with word captions the "
                                      "language model starts from random weights (init.text=null)")
            self.tokenizer = WordTokenizer.from_captions(train_text, m.min_word_count)
        else:
            base = CharTokenizer.from_state_dict(text_state["extra"]["tokenizer"]) if text_state else None
            self.tokenizer = CaptionCharTokenizer.from_captions(train_text, base)
        vision = {**dict(m.vision), "image_size": m.image_size}
        if vision_state is not None:
            _check_fits("vision", vision_state["path"], vision_state["extra"]["model_config"], vision, VISION_KEYS)
            vision = {**vision_state["extra"]["model_config"], "image_size": m.image_size,
                      "patch_size": m.vision.patch_size}
        text = {**dict(m.text), "vocab_size": self.tokenizer.vocab_size}
        if text_state is not None:
            _check_fits("text", text_state["path"], text_state["extra"]["model_config"], text, TEXT_KEYS)
            text = {**text_state["extra"]["model_config"], "vocab_size": self.tokenizer.vocab_size,
                    "dropout": m.text.dropout}
        self.model = Captioner(CaptionerConfig(vision, text, m.connector, m.reduce, self.tokenizer.bos_id,
                                               self.tokenizer.eos_id, m.blind, self.tokenizer.banned_ids,
                                               m.reduce_factor, 0 if m.blind else m.grounding_words))
        if vision_state is not None:
            self._init_vision(vision_state)
        if text_state is not None:
            self._init_text(text_state)
        self._check_context({"model.max_caption_len": m.max_caption_len, "eval.max_len": cfg.eval.max_len})
        self.model.vit.head.requires_grad_(False)  # the classifier head plays no part in captioning
        if m.blind:  # a baseline: the language model alone
            self.model.vit.requires_grad_(False)
            self.model.connector.requires_grad_(False)
        self._encode(data)
        t = cfg.train
        self.frozen_steps = 0 if m.blind else int(t.frozen_vision_until * t.max_steps)
        self.features = self._cached_features(cfg.augment.feature_views) if self.frozen_steps else None
        self.find_unused_parameters = self.frozen_steps > 0  # the ViT sits out the frozen steps

    def _check_context(self, lengths: dict[str, int]) -> None:
        """Image tokens + a begin token + the longest caption must fit the language model's context."""
        key, longest = max(lengths.items(), key=lambda kv: kv[1])
        if self.model.num_image_tokens + 1 + longest > self.model.gpt.cfg.context:
            raise ConfigError(f"{self.model.num_image_tokens} image tokens + a begin token + {longest} caption tokens "
                              f"({key}) exceed model.text.context {self.model.gpt.cfg.context}; raise the context or "
                              f"lower {' / '.join(lengths)}")

    def _splits(self, data: Flickr8k) -> None:
        """Image indices per split; caption indices of the train and dev images."""
        self.split = {s: data.split_indices(s) for s in ("train", "dev", "test")}
        caption_split = data.split[data.caption_image]
        self.train_caps = np.flatnonzero(caption_split == 0)
        self.dev_caps = np.flatnonzero(caption_split == 1)

    def _encode(self, data: Flickr8k) -> None:
        """Every caption as ids (self.tokenizer), the images as a tensor, the dev CIDEr-D scorer."""
        self.captions = encode_captions([str(c) for c in data.captions], self.tokenizer, self.cfg.model.max_caption_len)
        self.images = torch.from_numpy(data.images)
        # dev is scored as the test split is: the same tokenizer (`ptb_tokenize`, Java's PTB tokenizer where java
        # is found) and CIDEr-D with document frequencies from the references of the images scored
        self.val_images = self.split["dev"][: self.cfg.eval.val_images]
        refs = ptb_tokenize({int(i): data.captions_of(int(i)) for i in self.val_images})
        self.val_refs = [[c.split() for c in refs[int(i)]] for i in self.val_images]
        self.cider = CiderD(self.val_refs)
        words = self.cfg.model.grounding_words
        if words and not self.cfg.model.blind:  # train references only: dev and test stay unseen
            train_refs = [[simple_tokenize(c).split() for c in data.captions_of(int(i))] for i in self.split["train"]]
            self.content_words = content_vocabulary([t for refs in train_refs for t in refs], words)
            self.word_targets = torch.zeros(len(data.images), len(self.content_words))
            self.word_targets[torch.from_numpy(self.split["train"]).long()] = word_targets(train_refs,
                                                                                          self.content_words)
        else:
            self.content_words, self.word_targets = [], None

    def _init_vision(self, state: dict) -> None:
        vit = ViT(ViTConfig(**state["extra"]["model_config"]))
        load_weights(vit, state["model"], state["path"])
        m = self.cfg.model
        self.model.vit.load_state_dict(vit.adapted(m.image_size, m.vision.patch_size).state_dict())

    def _init_text(self, state: dict) -> None:
        """The GPT's weights; embedding rows for new characters start at the mean of the known ones."""
        weights = dict(state["model"])
        old = weights["tok_embed.weight"]
        new = old.mean(0, keepdim=True).expand(self.tokenizer.vocab_size - old.shape[0], -1)
        weights["tok_embed.weight"] = weights["head.weight"] = torch.cat([old, new])
        load_weights(self.model.gpt, weights, state["path"])

    def augment(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """uint8 [B, S, S, 3] -> the same, each image shifted (zero padding, random crop) and mirrored at random."""
        a = self.cfg.augment
        x = images.permute(0, 3, 1, 2)
        if a.crop_padding > 0:
            x = random_crop(x, a.crop_padding, generator)
        if a.flip:
            x = random_flip(x, generator)
        return x.permute(0, 2, 3, 1)

    @torch.no_grad()
    def _cached_features(self, views: int = 1, batch_size: int = 500) -> Tensor:
        """The frozen ViT's patch features [V, N_train, P, D] of V views of every train image, computed once:
        view 0 the image itself, the others augmented (see `augment`) with a fixed seed. Row r holds train image
        self.split["train"][r]; self.feature_row maps an image index to its row (-1: not a train image)."""
        self.model.vit.eval()
        train = torch.from_numpy(self.split["train"]).long()
        self.feature_row = torch.full((len(self.images),), -1, dtype=torch.long)
        self.feature_row[train] = torch.arange(len(train))
        # float16: half the memory of float32 (a 64x64 image in 4-pixel patches has 256 patch tokens)
        out = torch.empty(views, len(train), self.model.vit.grid**2, self.model.vit.cfg.d_model, dtype=torch.float16)
        for v in range(views):
            g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + v)
            for i in range(0, len(train), batch_size):
                rows = train[i : i + batch_size]
                images = self.images[rows] if v == 0 else self.augment(self.images[rows], g)
                out[v, i : i + batch_size] = self.model.patch_features(images)
        print(f"feature cache: {views} views x {len(train)} train images x {out.shape[2]} patches x {out.shape[3]} "
              f"(float16): {out.numel() * out.element_size() / 2**20:.0f} MiB", flush=True)
        return out

    def features_of(self, image_idx: Tensor, view: Tensor | int = 0) -> Tensor:
        """Cached patch features [B, P, D] of train images image_idx [B] (view [B] or one view for all)."""
        rows = self.feature_row[image_idx]
        if (rows < 0).any():
            raise ValueError(f"images {image_idx[rows < 0][:5].tolist()} are not train images: only those are cached")
        return self.features[view, rows].float()

    def param_groups(self) -> list[dict[str, Any]]:
        t, m = self.cfg.train, self.model
        heads = list(m.word_head.parameters()) if m.word_head is not None else []
        return [{"name": "vision", "params": list(m.vit.parameters()), "lr": t.lr * t.vision_lr_scale},
                {"name": "connector", "params": list(m.connector.parameters()) + heads},
                {"name": "text", "params": list(m.gpt.parameters()), "lr": t.lr * t.text_lr_scale}]

    def batch(self, step: int, micro: int) -> tuple[Tensor, ...]:
        """(images uint8 [B, S, S, 3] or cached features [B, N, D], captions [B, T], targets [B, T]) and, with
        the grounding head, the content-word targets [B, W] of each caption's image."""
        t = self.cfg.train
        k = (step - 1) * t.grad_accum + micro
        idx = torch.from_numpy(self.train_caps)[epoch_indices(len(self.train_caps), t.batch_size, k, t.seed)]
        tokens = self.captions[idx]
        length = int((tokens != self.tokenizer.eos_id)[:, 1:].sum(1).max()) + 2  # BOS .. EOS of the longest
        tokens = tokens[:, :length]
        targets = tokens[:, 1:].clone()
        targets[~real_token_mask(targets, self.tokenizer.eos_id)] = -100
        image_idx = torch.from_numpy(self.data.caption_image[idx.numpy()]).long()
        g = step_generator(t.seed, step, micro)
        if step <= self.frozen_steps and self.features is not None:  # a cached view of each image
            view = torch.randint(0, self.features.shape[0], (len(image_idx),), generator=g)
            pixels = self.features_of(image_idx, view)
        else:
            pixels = self.augment(self.images[image_idx], g)
        if self.word_targets is not None:
            return pixels, tokens[:, :-1], targets, self.word_targets[image_idx]
        return pixels, tokens[:, :-1], targets

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

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def captions_for(self, model: Captioner, image_indices: np.ndarray, strategy: str = "greedy") -> list[str]:
        """Decoded captions (text) for dataset images, in batches of eval.batch_size."""
        e, device = self.cfg.eval, next(model.parameters()).device
        out = []
        for i in range(0, len(image_indices), e.batch_size):
            images = self.images[torch.from_numpy(image_indices[i : i + e.batch_size]).long()].to(device)
            ids = model.generate(images, max_len=e.max_len, strategy=strategy, beam_size=e.beam_size,
                                 length_penalty=e.length_penalty)
            out += [self.tokenizer.decode(row) for row in ids.cpu()]
        return out

    @torch.no_grad()
    def dev_loss(self, model: Captioner, batch_size: int = 500) -> float:
        """Cross-entropy per caption token over every dev caption."""
        device, total, count = next(model.parameters()).device, 0.0, 0
        for i in range(0, len(self.dev_caps), batch_size):
            idx = torch.from_numpy(self.dev_caps[i : i + batch_size])
            tokens = self.captions[idx].to(device)
            targets = tokens[:, 1:].clone()
            targets[~real_token_mask(targets, self.tokenizer.eos_id)] = -100
            images = self.images[torch.from_numpy(self.data.caption_image[idx.numpy()]).long()].to(device)
            logits, _ = model(tokens[:, :-1], images=images)
            s, c = caption_token_loss(logits, targets)
            total, count = total + float(s), count + int(c)
        return total / count

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        captions = self.captions_for(model, self.val_images)
        tokenized = ptb_tokenize({i: [c] for i, c in enumerate(captions)})
        cider, _ = self.cider.score([tokenized[i][0].split() for i in range(len(captions))], self.val_refs)
        return {"val_loss": self.dev_loss(model), "val_cider": cider, "val_distinct": float(len(set(captions)))}

    def on_eval(self, model: nn.Module, step: int, run_dir: Path, log) -> None:
        images = self.split["dev"][:3]
        for i, caption in zip(images, self.captions_for(model, images), strict=True):
            log(f"  dev {self.data.names[i]}: {caption!r}   (ref: {self.data.captions_of(i)[0]!r})")

    def finish(self, model: nn.Module, run_dir: Path, log) -> dict[str, Any]:
        if not self.cfg.eval.test:  # an ablation compared on dev: the test split stays unseen
            log("test split not scored (eval.test=false)")
            return {"test": None}
        from .report import write_report

        return write_report(self, model, run_dir, log)

    def curve_marks(self) -> dict[int, str]:
        return {self.frozen_steps: "ViT frozen (cached features) before, all parts after"} if self.frozen_steps else {}

    def extra_state(self) -> dict[str, Any]:
        return {"model_config": self.model.config_dict(), "tokenizer": self.tokenizer.state_dict()}
