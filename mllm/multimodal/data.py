"""The captioning data in one object, shared by the supervised task and SCST (`mllm.rl.train`) by composition:
splits, the caption tokenizer and every caption as ids, the images, the dev references and their CIDEr-D
scorer, the frozen ViT's feature cache, batches (of captions or of images, with each image's references) and
the decoding and dev metrics that depend on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from mllm.data import Flickr8k
from mllm.data.augment import random_crop, random_flip
from mllm.evaluation.cider import CiderD
from mllm.evaluation.diagnostics import caption_diagnostics
from mllm.evaluation.tokenize import ptb_tokenize
from mllm.language.decoding import real_token_mask
from mllm.training.runtime import bucketed_indices, epoch_indices

from .mllm import Captioner, caption_token_loss


def encode_captions(captions: list[str], tokenizer, max_len: int) -> Tensor:
    """Captions -> ids [M, max_len + 1]: BOS, the caption, EOS, then EOS padding. A caption of max_len tokens
    or more is cut to max_len and gets no EOS: the model is never taught to stop mid-caption."""
    out = torch.full((len(captions), max_len + 1), tokenizer.eos_id, dtype=torch.long)
    out[:, 0] = tokenizer.bos_id
    for i, caption in enumerate(captions):
        ids = tokenizer.encode(caption)[:max_len]
        out[i, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def caption_targets(tokens: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """Encoded captions [B, T + 1] (BOS w_1 .. EOS pad) -> (inputs [B, T] = BOS w_1 .., targets [B, T] =
    w_1 .. EOS, -100 after each caption's end token: no loss on the padding)."""
    targets = tokens[:, 1:].clone()
    targets[~real_token_mask(targets, eos_id)] = -100
    return tokens[:, :-1], targets


def augment_images(images: Tensor, generator: torch.Generator, crop_padding: int = 0, flip: bool = False) -> Tensor:
    """uint8 [B, S, S, 3] -> the same, each image shifted (zero padding, random crop) and mirrored at random."""
    x = images.permute(0, 3, 1, 2)
    if crop_padding > 0:
        x = random_crop(x, crop_padding, generator)
    if flip:
        x = random_flip(x, generator)
    return x.permute(0, 2, 3, 1)


def train_caption_texts(data: Flickr8k) -> list[str]:
    """The training split's captions (text): what a tokenizer is built from."""
    return [str(c) for c in data.captions[data.split[data.caption_image] == 0]]


class CaptionData:
    """Flickr8k for a captioner with `tokenizer`: ids of every caption, dev references, batches, a feature cache.

    split: image indices per split; train_caps / val_caps: caption indices of the train images and the val images;
    captions: ids [M, max_caption_len + 1] (`encode_captions`); images: uint8 [N, S, S, 3]; val_images: the
    first `val_images` dev images, scored by `dev_cider` against their PTB-tokenised references; test_images: the
    first `test_images` test images, those the test report scores (the whole split unless a preset asks fewer).
    """

    def __init__(self, data: Flickr8k, tokenizer, max_caption_len: int, val_images: int, test_images: int):
        self.data, self.tokenizer = data, tokenizer
        self.split = {s: data.split_indices(s) for s in ("train", "dev", "test")}
        caption_split = data.split[data.caption_image]
        self.train_caps = np.flatnonzero(caption_split == 0)
        self.captions = encode_captions([str(c) for c in data.captions], tokenizer, max_caption_len)
        self.images = torch.from_numpy(data.images)
        order = np.argsort(data.caption_image, kind="stable")  # caption indices grouped by image
        self._first = np.searchsorted(data.caption_image[order], np.arange(len(data.images) + 1))
        self._by_image = order
        # dev is scored as the test split is: the same tokenizer (`ptb_tokenize`, Java's PTB tokenizer where java
        # is found) and CIDEr-D with document frequencies from the references of the images scored
        self.val_images = self.split["dev"][:val_images]
        self.val_caps = np.flatnonzero(np.isin(data.caption_image, self.val_images))  # dev_loss's captions
        self.test_images = self.split["test"][:test_images]
        refs = ptb_tokenize({int(i): data.captions_of(int(i)) for i in self.val_images})
        self.val_refs = [[c.split() for c in refs[int(i)]] for i in self.val_images]
        self.cider = CiderD(self.val_refs)
        self.features: Tensor | None = None
        self._train_lengths: Tensor | None = None  # tokens of each training caption (BOS included), for buckets
        self.feature_row: Tensor | None = None

    # ---- the feature cache -------------------------------------------------------------------
    @torch.no_grad()
    def cache_features(self, model: Captioner, views: int = 1, seed: int = 0,
                       augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
                       batch_size: int = 500) -> Tensor:
        """The frozen ViT's patch features [V, N_train, P, D] of V views of every train image, computed once and
        kept as self.features: view 0 the image itself, the others `augment`ed with a fixed seed. Row r holds
        train image split["train"][r]; self.feature_row maps an image index to its row (-1: not a train image)."""
        if views > 1 and augment is None:
            raise ValueError(f"{views} feature views need an augment function: view 0 is the only plain one")
        model.vit.eval()
        start = time.perf_counter()
        train = torch.from_numpy(self.split["train"]).long()
        self.feature_row = torch.full((len(self.images),), -1, dtype=torch.long)
        self.feature_row[train] = torch.arange(len(train))
        # float16: half the memory of float32 (a 64x64 image in 4-pixel patches has 256 patch tokens)
        out = torch.empty(views, len(train), model.vit.grid**2, model.vit.cfg.d_model, dtype=torch.float16)
        for v in range(views):
            g = torch.Generator().manual_seed(seed * 1_000_003 + v)
            for i in range(0, len(train), batch_size):
                images = self.images[train[i : i + batch_size]]
                out[v, i : i + batch_size] = model.patch_features(images if v == 0 else augment(images, g))
        print(f"feature cache: {views} views x {len(train)} train images x {out.shape[2]} patches x {out.shape[3]} "
              f"(float16): {out.numel() * out.element_size() / 2**20:.0f} MiB in {time.perf_counter() - start:.0f} s",
              flush=True)
        self.features = out
        return out

    def features_of(self, image_idx: Tensor, view: Tensor | int = 0) -> Tensor:
        """Cached patch features [B, P, D] of train images image_idx [B] (view [B] or one view for all)."""
        if self.features is None:
            raise ValueError("no feature cache: call cache_features(model) first")
        rows = self.feature_row[image_idx]
        if (rows < 0).any():
            raise ValueError(f"images {image_idx[rows < 0][:5].tolist()} are not train images: only those are cached")
        return self.features[view, rows].float()

    # ---- batches -----------------------------------------------------------------------------
    def caption_batch(self, k: int, batch_size: int, seed: int, pool: int = 1) -> tuple[Tensor, Tensor, Tensor]:
        """The k-th batch of training captions (a fresh permutation each epoch; with pool > 1, captions of similar
        length, `bucketed_indices`): inputs [B, T], targets [B, T] (`caption_targets`, cut to the longest caption)
        and each caption's image index [B]."""
        rows = bucketed_indices(self.train_lengths, batch_size, k, seed, pool)
        idx = torch.from_numpy(self.train_caps)[rows]
        tokens = self.captions[idx]
        length = int((tokens != self.tokenizer.eos_id)[:, 1:].sum(1).max()) + 2  # BOS .. EOS of the longest
        inputs, targets = caption_targets(tokens[:, :length], self.tokenizer.eos_id)
        return inputs, targets, torch.from_numpy(self.data.caption_image[idx.numpy()]).long()

    @property
    def train_lengths(self) -> Tensor:
        """[N] the tokens of each training caption (the begin token and its words), what length pools sort by."""
        if self._train_lengths is None:
            self._train_lengths = (self.captions[torch.from_numpy(self.train_caps)] != self.tokenizer.eos_id).sum(1)
        return self._train_lengths

    def image_batch(self, k: int, batch_size: int, seed: int) -> Tensor:
        """Image indices [B] of the k-th batch of training images (a fresh permutation each epoch)."""
        train = torch.from_numpy(self.split["train"])
        return train[epoch_indices(len(train), batch_size, k, seed)].long()

    def reference_ids(self, image_idx: Tensor, per_image: int = 0, seeds: Tensor | None = None
                      ) -> tuple[Tensor, Tensor]:
        """Every reference caption of the given images [B]: caption indices [R] (image by image, in dataset order)
        and the position [R] in image_idx of each one's image. per_image > 0: that many of each image's references
        (all if it has fewer), drawn without replacement by a generator seeded with the image's seed (seeds [B]):
        the same draw whichever process holds the image."""
        parts = [self._by_image[self._first[i] : self._first[i + 1]] for i in image_idx.tolist()]
        if per_image > 0:
            if seeds is None or len(seeds) != len(parts):
                raise ValueError("per_image > 0 needs one seed per image")
            parts = [np.sort(p[torch.randperm(len(p), generator=torch.Generator().manual_seed(int(s)))[:per_image]
                               .numpy()]) for p, s in zip(parts, seeds.tolist(), strict=True)]
        owner = torch.cat([torch.full((len(p),), j, dtype=torch.long) for j, p in enumerate(parts)])
        return torch.from_numpy(np.concatenate(parts)).long(), owner

    def reference_batch(self, image_idx: Tensor, per_image: int = 0, seeds: Tensor | None = None
                        ) -> tuple[Tensor, Tensor, Tensor]:
        """The references of images [B] (all, or `per_image` of each: `reference_ids`) as teacher-forcing pairs:
        inputs [R, T], targets [R, T] (cut to the longest) and the position [R] in image_idx of each caption's
        image."""
        ids, owner = self.reference_ids(image_idx, per_image, seeds)
        tokens = self.captions[ids]
        length = int((tokens != self.tokenizer.eos_id)[:, 1:].sum(1).max()) + 2
        inputs, targets = caption_targets(tokens[:, :length], self.tokenizer.eos_id)
        return inputs, targets, owner

    # ---- decoding and dev metrics ------------------------------------------------------------
    @torch.no_grad()
    def captions_for(self, model: Captioner, image_indices: np.ndarray, strategy: str = "greedy", max_len: int = 24,
                     beam_size: int = 3, length_penalty: float = 0.0, batch_size: int = 250,
                     grounding: float = 0.0, no_repeat: int = 0) -> list[str]:
        """Decoded captions (text) for dataset images, in batches of batch_size (grounding, no_repeat:
        `Captioner.generate`)."""
        device, out = next(model.parameters()).device, []
        for i in range(0, len(image_indices), batch_size):
            images = self.images[torch.from_numpy(np.asarray(image_indices[i : i + batch_size])).long()].to(device)
            ids = model.generate(images, max_len=max_len, strategy=strategy, beam_size=beam_size,
                                 length_penalty=length_penalty, grounding=grounding, no_repeat=no_repeat)
            out += [self.tokenizer.decode(row) for row in ids.cpu()]
        return out

    @torch.no_grad()
    def dev_loss(self, model: Captioner, batch_size: int = 500) -> float:
        """Cross-entropy per caption token over every caption of the val images (eval.val_images: 1,000, the whole
        dev split, but for the tiny preset)."""
        device, total, count = next(model.parameters()).device, 0.0, 0
        for i in range(0, len(self.val_caps), batch_size):
            idx = torch.from_numpy(self.val_caps[i : i + batch_size])
            inputs, targets = caption_targets(self.captions[idx].to(device), self.tokenizer.eos_id)
            images = self.images[torch.from_numpy(self.data.caption_image[idx.numpy()]).long()].to(device)
            logits, _ = model(inputs, images=images)
            s, c = caption_token_loss(logits, targets)
            total, count = total + float(s), count + int(c)
        return total / count

    def dev_scores(self, captions: list[str]) -> dict[str, float]:
        """Greedy dev captions (one per val image) -> CIDEr-D, distinct captions and the most common one's share."""
        tokenized = ptb_tokenize({i: [c] for i, c in enumerate(captions)})
        cider, _ = self.cider.score([tokenized[i][0].split() for i in range(len(captions))], self.val_refs)
        return {"cider": cider, "distinct": float(len(set(captions))),
                "top_share": caption_diagnostics(captions)["top_share"]}
