"""Which of the frozen ViT's layers describes a Flickr8k photo best? A retrieval probe on dev, no training.

    python results/layer-probe/probe.py runs/mllm-cpu [MIRROR] > results/layer-probe/probe.md

For each layer of the captioner's ViT (the cpu ViT adapted to 64x64, as the captioner caches it), every train and dev
image becomes one vector: its patch tokens after that layer, layer-normalised (no affine) and mean-pooled ("mean"),
or pooled over a 2x2 grid of the image and concatenated ("grid"). Each dev image takes the consensus caption (the one
with the highest CIDEr-D against the other four) of its nearest training image by cosine similarity, and the 1,000
captions are scored as dev is during training (`CaptionData.dev_scores`: PTB tokenizer, CIDEr-D). Layer 4 with the
ViT's own final norm is what the captioner reads now (its nearest-neighbour baseline, there on test: 0.085).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mllm.data import prepare_flickr8k
from mllm.multimodal.data import CaptionData
from mllm.multimodal.mllm import load_captioner
from mllm.multimodal.report import consensus_caption


@torch.no_grad()
def layer_tokens(vit, images: torch.Tensor) -> list[torch.Tensor]:
    """uint8 [B, S, S, 3] -> the patch tokens [B, N, D] after each layer (class token dropped), then final-normed."""
    x = vit.patch_embed(vit.normalize(images))  # the captioner's ViT is already adapted to the image size
    x = vit.pos(torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), x], dim=1))
    out = []
    for layer in vit.encoder.layers:
        x = layer(x)
        out.append(x[:, 1:])
    out.append(vit.encoder.norm(x)[:, 1:])
    return out


def pooled(tokens: torch.Tensor, how: str) -> torch.Tensor:
    t = F.layer_norm(tokens.float(), tokens.shape[-1:])
    if how == "mean":
        return t.mean(1)
    b, n, d = t.shape
    g = int(n**0.5)
    grid = t.view(b, g, g, d).permute(0, 3, 1, 2)
    return F.adaptive_avg_pool2d(grid, 2).flatten(1)


def main() -> None:
    run = sys.argv[1] if len(sys.argv) > 1 else "runs/mllm-cpu"
    start = time.time()
    model, tokenizer = load_captioner(run)
    vit = model.vit.eval()
    data = prepare_flickr8k("data", Path(sys.argv[2]) if len(sys.argv) > 2 else None, image_size=vit.cfg.image_size)
    captioning = CaptionData(data, tokenizer, 24, 1000, 0)
    probe(vit, data, captioning, references=True)
    print(f"\n{time.time() - start:.0f} s on {torch.get_num_threads()} threads, run {run}")


def probe(vit, data, captioning: CaptionData, references: bool = False) -> None:
    """Print the table's rows for this ViT (and, with `references`, the pixel and random-ViT rows)."""
    train, dev = captioning.split["train"], captioning.val_images
    feats: dict[str, list[torch.Tensor]] = {}
    for name, idx in (("train", train), ("dev", dev)):
        parts = []
        for i in range(0, len(idx), 250):
            layers = layer_tokens(vit, captioning.images[torch.from_numpy(np.asarray(idx[i : i + 250])).long()])
            parts.append([torch.cat([pooled(t, "mean"), pooled(t, "grid")], 1) for t in layers])
        feats[name] = [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]
    consensus = {}
    print("| ViT features (64x64, frozen) | pooling | dev CIDEr-D of the nearest training image's caption | distinct |")
    print("|---|---|---|---|")
    d = vit.cfg.d_model
    names = [f"after layer {k + 1}" for k in range(len(vit.encoder.layers))] + ["after layer 4 + final norm (used now)"]
    for k, name in enumerate(names):
        for how, cols in (("mean", slice(0, d)), ("2x2 grid", slice(d, None))):
            a = F.normalize(feats["train"][k][:, cols], dim=-1)
            q = F.normalize(feats["dev"][k][:, cols], dim=-1)
            nearest = (q @ a.T).argmax(1).numpy()
            captions = []
            for j in nearest:
                j = int(train[j])
                if j not in consensus:
                    consensus[j] = consensus_caption(data.captions_of(j))
                captions.append(consensus[j])
            s = captioning.dev_scores(captions)
            print(f"| {name} | {how} | {s['cider']:.3f} | {int(s['distinct'])} |", flush=True)
    if not references:
        return
    # two references: the photo itself as a 4x4 thumbnail (48 numbers), and the same ViT with random weights
    torch.manual_seed(0)
    random_vit = type(vit)(vit.cfg).eval()
    def thumbnail(x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2).float(), 4).flatten(1)

    def random_features(x: torch.Tensor) -> torch.Tensor:
        return pooled(layer_tokens(random_vit, x)[-1], "mean")

    for name, embed in (("pixels, 4x4 thumbnail", thumbnail), ("random ViT, layer 4 + final norm", random_features)):
        vecs = {}
        with torch.no_grad():
            for split, idx in (("train", train), ("dev", dev)):
                vecs[split] = torch.cat([embed(captioning.images[torch.from_numpy(np.asarray(idx[i : i + 250])).long()])
                                         for i in range(0, len(idx), 250)])
        centred = vecs["train"].mean(0)
        a, q = F.normalize(vecs["train"] - centred, dim=-1), F.normalize(vecs["dev"] - centred, dim=-1)
        captions = [consensus.get(int(train[j])) or consensus.setdefault(int(train[j]), consensus_caption(
            data.captions_of(int(train[j])))) for j in (q @ a.T).argmax(1).numpy()]
        s = captioning.dev_scores(captions)
        print(f"| {name} | - | {s['cider']:.3f} | {int(s['distinct'])} |", flush=True)


if __name__ == "__main__":
    main()
