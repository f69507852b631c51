"""Captioner training images/s with cached frozen ViT features vs without them.

    python bench/captioner_features.py [--quick] [--rounds 10] [--out /tmp/captioner_features.json]

The captioner of the mllm cpu preset (mllm/multimodal/mllm.py: ViT 128 wide, 4 layers, on 32x32 images; MLP
connector after pixel-shuffle, 16 image tokens; word GPT 192 wide, 4 layers; batch 64, captions of 24 tokens;
--quick: the tiny preset), random weights and data (the speed does not depend on them). Three sides, each a
full training step as the loop takes it (AdamW per part as `CaptioningTask.param_groups`, clipping):

- cached features: the first phase of the recipe. The frozen ViT's patch features of 4 views of each image
  were computed once (as `CaptioningTask._cached_features`); a step gathers a view of each and trains the
  connector and the GPT;
- features recomputed: the same training without the cache: augment the images, run the frozen ViT
  (no gradients), train the connector and the GPT;
- all parts: the second phase: augmented images through the ViT, every part trained (ViT at lr / 10).

Before timing it checks that the captioner gives the same logits from the images as from their features.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Ratio, Side, adamw, alternate, parser, report, setup, train_step  # noqa: E402
from mllm.multimodal.data import augment_images  # noqa: E402
from mllm.multimodal.mllm import Captioner, CaptionerConfig, caption_token_loss  # noqa: E402
from mllm.training.config import Config, load_config  # noqa: E402

WORD_VOCAB = 2542  # the word vocabulary of the cpu run (Flickr8k training captions, words seen 5 times or more)
ATOL = 1e-5


def build(cfg: Config, vocab: int) -> Captioner:
    """The captioner of a config's model section, random weights, the ViT's classifier head frozen."""
    m = cfg.model
    model = Captioner(CaptionerConfig({**dict(m.vision), "image_size": m.image_size},
                                      {**dict(m.text), "vocab_size": vocab}, m.connector, m.reduce))
    model.vit.head.requires_grad_(False)  # as CaptioningTask: the head plays no part in captioning
    return model.train()


@torch.no_grad()
def feature_cache(model: Captioner, images: Tensor, views: int, padding: int, flip: bool) -> Tensor:
    """[V, N, P, D] patch features of V views (view 0 the image itself), computed once by the frozen ViT."""
    g = torch.Generator().manual_seed(0)
    return torch.stack([model.patch_features(images if v == 0 else augment_images(images, g, padding, flip))
                        for v in range(views)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__, rounds=10)
    p.add_argument("--vocab", type=int, default=WORD_VOCAB, help=f"caption vocabulary (default {WORD_VOCAB})")
    p.add_argument("--pool", type=int, default=None, help="distinct images batches are drawn from (default 512)")
    args = p.parse_args(argv)
    setup(args)
    cfg = load_config("mllm", "tiny" if args.quick else "cpu")
    args.pool = args.pool or (32 if args.quick else 512)
    model = build(cfg, args.vocab)
    t, a, s, b = cfg.train, cfg.augment, cfg.model.image_size, cfg.train.batch_size
    images = torch.randint(0, 256, (args.pool, s, s, 3), dtype=torch.uint8)
    captions = torch.randint(2, args.vocab, (args.pool, cfg.model.max_caption_len + 1))
    captions[:, 0] = model.bos_id
    features = feature_cache(model, images, a.feature_views, a.crop_padding, a.flip)

    model.eval()
    with torch.no_grad():
        from_images = model(captions[:8, :-1], images=images[:8])[0]
        from_features = model(captions[:8, :-1], features=features[0, :8])[0]
    model.train()
    diff = float((from_images - from_features).abs().max())
    if diff > ATOL:
        raise SystemExit(f"logits from images and from their cached features differ by {diff} > {ATOL}")

    g = torch.Generator().manual_seed(args.seed)

    def batch() -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.randint(0, args.pool, (b,), generator=g)
        return idx, captions[idx, :-1], captions[idx, 1:]

    def loss(tokens: Tensor, targets: Tensor, **inputs: Tensor) -> Tensor:
        total, n = caption_token_loss(model(tokens, **inputs)[0], targets)
        return total / n

    def cached() -> Tensor:
        idx, tokens, targets = batch()
        view = torch.randint(0, features.shape[0], (b,), generator=g)
        return loss(tokens, targets, features=features[view, idx])

    def recomputed() -> Tensor:
        idx, tokens, targets = batch()
        with torch.no_grad():
            feats = model.patch_features(augment_images(images[idx], g, a.crop_padding, a.flip))
        return loss(tokens, targets, features=feats)

    def all_parts() -> Tensor:
        idx, tokens, targets = batch()
        return loss(tokens, targets, images=augment_images(images[idx], g, a.crop_padding, a.flip))

    groups = [{"params": list(model.vit.parameters()), "lr": t.lr * t.vision_lr_scale},
              {"params": list(model.connector.parameters())},
              {"params": list(model.gpt.parameters()), "lr": t.lr * t.text_lr_scale}]
    sides = []
    for name, fn in (("cached features", cached), ("features recomputed", recomputed), ("all parts", all_parts)):
        opt = adamw(groups, t.lr, t.betas, t.weight_decay)
        sides.append(Side(name, lambda opt=opt, fn=fn: train_step(opt, fn, t.grad_clip), items=b, unit="images"))
    alternate(sides, args.rounds, args.warmup)
    what = f"captioner training step, batch {b}, {s}x{s} images"
    ratios = [Ratio(f"{what}: cached frozen ViT features vs the frozen ViT run each step", sides[0], sides[1]),
              Ratio(f"{what}: cached frozen ViT features vs every part trained", sides[0], sides[2])]
    checks = {"max_abs_logit_diff_images_vs_features": diff}
    return report("captioner_features", ratios, args, checks, {"vocab": args.vocab, "pool": args.pool})


if __name__ == "__main__":
    main()
