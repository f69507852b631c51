"""Image-text alignment: the ViT learns which training captions describe which photo, before the captioner.

CIFAR-10 teaches the ViT ten classes of 32x32 objects and no people, while Flickr8k's captions are mostly about
people and dogs doing things. This stage fine-tunes the CIFAR-10 ViT on the Flickr8k training photos with CLIP's
contrastive loss (Radford et al. 2021): in a batch of B photos, each with one of its captions, the photo must pick
its own caption out of the B, and the caption its own photo. A photo is the mean of the ViT's patch tokens through
a linear map; a caption is the mean of its word embeddings (a bag of words) through a layer norm and a linear map;
both unit length, their dot products times a learned scale (1 / temperature) are the logits. The captioner then
starts from this ViT (`init.vision` takes an align run) as it would from the CIFAR-10 one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllm.data import Flickr8k
from mllm.training.config import Config, ConfigError
from mllm.training.loop import Task
from mllm.training.runtime import step_generator
from mllm.vision.vit import ViT, ViTConfig

from .data import CaptionData, augment_images, train_caption_texts
from .inits import init_checkpoint, pretrained_vit, vision_config
from .tokenizer import WordTokenizer

MAX_SCALE = 100.0  # the logit scale is clipped here, as CLIP does, so the loss cannot sharpen without bound


@dataclass
class AlignerConfig:
    vision: dict  # ViTConfig fields
    vocab_size: int
    bos_id: int
    eos_id: int
    dim: int = 256
    temperature: float = 0.07  # the starting temperature; the model learns log(1 / temperature)


class BagOfWords(nn.Module):
    """Caption ids [B, T] (BOS, words, EOS padding) -> unit vectors [B, dim]: the mean of the word embeddings
    (BOS and EOS left out), layer-normed, through a linear map."""

    def __init__(self, vocab_size: int, dim: int, bos_id: int, eos_id: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.norm, self.proj = nn.LayerNorm(dim), nn.Linear(dim, dim)
        self.bos_id, self.eos_id = bos_id, eos_id

    def forward(self, ids: Tensor) -> Tensor:
        words = ((ids != self.bos_id) & (ids != self.eos_id)).unsqueeze(-1).float()  # [B, T, 1]
        mean = (self.embed(ids) * words).sum(1) / words.sum(1).clamp(min=1)
        return F.normalize(self.proj(self.norm(mean)), dim=-1)


class Aligner(nn.Module):
    """The ViT with an image projection, the caption encoder and the learned logit scale."""

    def __init__(self, cfg: AlignerConfig):
        super().__init__()
        self.cfg = cfg
        self.vit = ViT(ViTConfig(**cfg.vision))
        self.image_proj = nn.Linear(self.vit.cfg.d_model, cfg.dim)
        self.text = BagOfWords(cfg.vocab_size, cfg.dim, cfg.bos_id, cfg.eos_id)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)))

    def embed_images(self, images: Tensor) -> Tensor:
        """uint8 [B, S, S, 3] -> unit vectors [B, dim]: the mean of the final-norm patch tokens, projected."""
        patches = self.vit.tokens(self.vit.normalize(images))[:, 1:]
        return F.normalize(self.image_proj(patches.mean(1)), dim=-1)

    def scale(self) -> Tensor:
        """The logit scale 1 / temperature, a 0-d tensor, at most MAX_SCALE."""
        return self.log_scale.clamp(max=math.log(MAX_SCALE)).exp()

    def forward(self, images: Tensor, captions: Tensor) -> Tensor:
        """Photos uint8 [B, S, S, 3] and one caption each [B, T] -> logits [B, B]: row i scores photo i against
        every caption of the batch, column j caption j against every photo; the diagonal holds the true pairs.
        The product is taken in float32 even under bfloat16 autocast: at a scale near 100, bfloat16's 8 bits
        of mantissa would round the logits to about half a unit."""
        u, v = self.embed_images(images), self.text(captions)
        with torch.autocast(u.device.type, enabled=False):
            return self.scale().float() * u.float() @ v.float().T

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)


def contrastive_loss(logits: Tensor) -> Tensor:
    """CLIP's symmetric loss of logits [B, B] whose diagonal holds the true pairs: the mean of photo -> caption and
    caption -> photo cross-entropy."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def retrieval_recall(images: Tensor, captions: Tensor, owner: Tensor, ks: tuple[int, ...] = (1, 5, 10)
                     ) -> dict[str, float]:
    """Photo vectors [N, D], caption vectors [M, D] and each caption's photo [M] (indices into the N) ->
    {"i2t_r1": share of photos whose own caption (any of them) is among the k nearest captions, ...,
    "t2i_r1": share of captions whose photo is among the k nearest photos, ...}."""
    sim = images @ captions.T  # [N, M]
    out = {}
    for k in ks:
        nearest = sim.topk(min(k, sim.shape[1]), dim=1).indices  # [N, k] captions
        own = torch.arange(len(images), device=owner.device)[:, None]
        out[f"i2t_r{k}"] = float((owner[nearest] == own).any(1).float().mean())
        nearest = sim.T.topk(min(k, sim.shape[0]), dim=1).indices  # [M, k] photos
        out[f"t2i_r{k}"] = float((nearest == owner[:, None]).any(1).float().mean())
    return out


class AlignTask(Task):
    """Contrastive image-text training of the ViT on the Flickr8k training photos; dev retrieval selects."""

    kind = "align"
    eval_metrics = ("val_loss", "val_i2t_r5", "val_t2i_r5")
    eval_at_start = True  # the starting ViT's dev retrieval (with untrained projections: near chance) is the mark

    def __init__(self, cfg: Config, data: Flickr8k):
        self.cfg, m = cfg, cfg.model
        if not m.temperature > 0 or m.dim < 1 or cfg.eval.val_images < 2:
            raise ConfigError(f"model.temperature={m.temperature}, model.dim={m.dim}, eval.val_images="
                              f"{cfg.eval.val_images}: the temperature must be above 0 (CLIP starts at 0.07), the "
                              f"dimension at least 1 (256 here) and dev retrieval needs at least 2 photos")
        state = init_checkpoint("vision", cfg.init.vision, ("vit",))
        vision = vision_config(state, dict(m.vision), m.image_size)
        tok = WordTokenizer.from_captions(train_caption_texts(data), m.min_word_count)
        self.captioning = CaptionData(data, tok, m.max_caption_len, cfg.eval.val_images, 0)
        self.model = Aligner(AlignerConfig(vision, tok.vocab_size, tok.bos_id, tok.eos_id, m.dim, m.temperature))
        self.vision_extra = {}
        self.model.vit.head.requires_grad_(False)  # the CIFAR-10 classifier plays no part (DDP: all must be used)
        if state is not None:  # its positions interpolated to the new grid
            self.model.vit.load_state_dict(pretrained_vit(state, m.image_size, m.vision.patch_size).state_dict())
            self.vision_extra = {k: v for k, v in state["extra"].items() if k != "model_config"}  # class names

    def param_groups(self) -> list[dict[str, Any]]:
        """The ViT at train.lr * train.vision_lr_scale (it keeps what CIFAR-10 taught it), the new parts at lr."""
        m, t = self.model, self.cfg.train
        new = [p for name, p in m.named_parameters() if not name.startswith("vit.")]
        return [{"name": "vision", "params": list(m.vit.parameters()), "lr": t.lr * t.vision_lr_scale},
                {"name": "new", "params": new}]

    def batch(self, step: int, micro: int) -> tuple[Tensor, ...]:
        """(photos uint8 [B, S, S, 3], shifted and mirrored; one of each photo's captions [B, T]): B different
        training photos (a fresh permutation each epoch), each caption drawn at random."""
        t = self.cfg.train
        k = (step - 1) * t.grad_accum + micro
        images = self.captioning.image_batch(k, t.batch_size, t.seed)
        g = step_generator(t.seed, step, micro)
        caption_ids, _ = self.captioning.reference_ids(images, 1, torch.randint(0, 2**31 - 1, (len(images),),
                                                                               generator=g))
        a = self.cfg.augment
        return augment_images(self.captioning.images[images], g, a.crop_padding, a.flip), \
            self.captioning.captions[caption_ids]

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        """(photos uint8 [B, S, S, 3], captions [B, T]) -> the contrastive loss, a scalar. Under torchrun, and with
        train.grad_accum > 1, each process and micro-batch contrasts its own share of the batch: its negatives are
        its own photos only."""
        images, captions = batch
        return contrastive_loss(model(images, captions))

    @torch.no_grad()
    def dev_vectors(self, model: Aligner) -> tuple[Tensor, Tensor, Tensor]:
        """The dev photos' vectors [N, D], their captions' vectors [5N, D] and each caption's photo [5N]."""
        c = self.captioning
        device = next(model.parameters()).device
        dev = torch.from_numpy(c.val_images).long()
        images = torch.cat([model.embed_images(c.images[dev[i : i + 250]].to(device)) for i in range(0, len(dev), 250)])
        ids, owner = c.reference_ids(dev)
        return images, model.text(c.captions[ids].to(device)), owner.to(device)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Dev: the loss over batches of train.batch_size photos, each with its first caption, and retrieval
        among all 1,000 photos and their 5,000 captions."""
        images, captions, owner = self.dev_vectors(model)
        first = torch.cat([torch.ones(1, dtype=torch.bool, device=owner.device), owner[1:] != owner[:-1]])
        pairs, b = captions[first], self.cfg.train.batch_size
        losses = [contrastive_loss(model.scale() * images[i : i + b] @ pairs[i : i + b].T)
                  for i in range(0, len(images), b) if len(images[i : i + b]) > 1]
        recall = retrieval_recall(images, captions, owner, (5,))
        return {"val_loss": float(torch.stack(losses).mean()), "val_i2t_r5": recall["i2t_r5"],
                "val_t2i_r5": recall["t2i_r5"]}

    def finish(self, model: nn.Module, run_dir: Path, log) -> dict[str, Any]:
        """Dev retrieval at R@1/5/10 both ways, and retrieval.png: dev photos spread evenly over the split (not
        chosen), each with its 3 nearest dev captions. The test split is not read: the captioner is what it
        serves."""
        from .figures import retrieval_figure

        images, captions, owner = self.dev_vectors(model)
        recall = retrieval_recall(images, captions, owner)
        log(f"dev retrieval among {len(images)} photos and their {len(captions)} captions: " +
            "  ".join(f"{k} {v:.3f}" for k, v in recall.items()))
        c = self.captioning
        ids, _ = c.reference_ids(torch.from_numpy(c.val_images).long())
        shown = np.linspace(0, len(images) - 1, min(6, len(images))).round().astype(int)
        nearest = (images[shown] @ captions.T).topk(min(3, len(captions)), dim=1).indices.cpu()
        examples = [[(str(c.data.captions[int(ids[j])]), int(owner[j]) == int(i)) for j in row]
                    for i, row in zip(shown, nearest, strict=True)]
        retrieval_figure(c.images[torch.from_numpy(c.val_images[shown]).long()].numpy(), examples,
                         run_dir / "retrieval.png")
        return {"dev_retrieval": recall, "temperature": 1 / model.scale().item(),
                "examples": [{"photo": str(c.data.names[int(c.val_images[i])]),
                              "nearest": [{"caption": t, "own": own} for t, own in ex]}
                             for i, ex in zip(shown, examples, strict=True)]}

    def extra_state(self) -> dict[str, Any]:
        return {**self.vision_extra, "model_config": self.model.config_dict(),
                "tokenizer": self.captioning.tokenizer.state_dict()}
