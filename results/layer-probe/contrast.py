"""Does the ViT describe Flickr8k photos better after learning to match them to their captions (contrastively)?

    PYTHONPATH=results/layer-probe python results/layer-probe/contrast.py runs/mllm-cpu MIRROR STEPS OUT [VIT_LR]

The captioner's frozen ViT (the cpu ViT adapted to 64x64) is fine-tuned on the training images alone with an
image-text contrastive loss (CLIP's symmetric InfoNCE, Radford et al. 2021): an image is the mean of its final-norm
patch tokens through a linear map, a caption the mean of its word embeddings (a bag of words, the captioner's word
tokenizer) through a layer norm and a linear map, both 256-d and unit length, a learnable temperature from 0.07.
Each batch holds 128 distinct training images (a fresh permutation each epoch), each with one of its five captions
at random; images shifted (4 px) and mirrored. AdamW: the ViT at VIT_LR (default 1e-4), the new parts at 1e-3,
50 warmup steps, cosine to a tenth. Every 250 steps: dev image-to-caption retrieval (R@1, R@5 over the 5,000
captions of the 1,000 dev images) as a held-out check. At the end the same retrieval probe as probe.py (dev
CIDEr-D of the nearest training image's consensus caption, per layer), and OUT/best.pt: the fine-tuned ViT as a
`vit` checkpoint (64x64) that `train-mllm init.vision=OUT` takes. Dev references are never trained on.
An experiment, not a recipe.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from probe import probe
from torch import nn

from mllm.checkpoint import load_checkpoint
from mllm.data import prepare_flickr8k
from mllm.io import atomic_write
from mllm.multimodal.data import CaptionData, augment_images
from mllm.multimodal.mllm import load_captioner
from mllm.training.runtime import epoch_indices

BATCH, DIM = 128, 256


class BagOfWords(nn.Module):
    """Caption ids [B, T] (BOS, words, EOS padding) -> unit vectors [B, DIM]: the mean of the word embeddings."""

    def __init__(self, vocab: int, bos: int, eos: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, DIM)
        self.norm, self.proj = nn.LayerNorm(DIM), nn.Linear(DIM, DIM)
        self.bos, self.eos = bos, eos

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ((ids != self.bos) & (ids != self.eos)).float()[..., None]
        mean = (self.embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return F.normalize(self.proj(self.norm(mean)), dim=-1)


def image_vectors(vit, head: nn.Linear, images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, S, S, 3] -> unit vectors [B, DIM]: the mean patch token through `head`."""
    return F.normalize(head(vit.tokens(vit.normalize(images))[:, 1:].mean(1)), dim=-1)


@torch.no_grad()
def dev_retrieval(vit, head, text, captioning: CaptionData) -> tuple[float, float]:
    """Image -> caption R@1 and R@5 over the dev images' captions (a hit: any of the image's own five)."""
    vit.eval()
    dev = torch.from_numpy(captioning.val_images).long()
    img = torch.cat([image_vectors(vit, head, captioning.images[dev[i : i + 250]]) for i in range(0, len(dev), 250)])
    caps, owner = captioning.reference_ids(dev)
    txt = text(captioning.captions[caps])
    top5 = (img @ txt.T).topk(5, dim=1).indices  # [N, 5] caption positions
    hits = owner[top5] == torch.arange(len(dev))[:, None]
    vit.train()
    return float(hits[:, 0].float().mean()), float(hits.any(1).float().mean())


def main() -> None:
    run, mirror, steps, out = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    vit_lr = float(sys.argv[5]) if len(sys.argv) > 5 else 1e-4
    torch.manual_seed(0)
    model, tokenizer = load_captioner(run)
    vit = model.vit
    data = prepare_flickr8k("data", mirror, image_size=vit.cfg.image_size)
    captioning = CaptionData(data, tokenizer, 24, 1000, 0)
    head, text = nn.Linear(vit.cfg.d_model, DIM), BagOfWords(tokenizer.vocab_size, tokenizer.bos_id, tokenizer.eos_id)
    log_temp = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    new = list(head.parameters()) + list(text.parameters()) + [log_temp]
    opt = torch.optim.AdamW([{"params": list(vit.parameters()), "lr": vit_lr},
                             {"params": new, "lr": 1e-3}], weight_decay=0.05)
    base = [g["lr"] for g in opt.param_groups]
    train = torch.from_numpy(captioning.split["train"]).long()
    g = torch.Generator().manual_seed(0)
    print(f"<!-- {steps} steps of {BATCH} images, ViT lr {vit_lr:g} -->", flush=True)
    start, losses, accs = time.time(), [], []
    vit.train()
    for step in range(1, steps + 1):
        scale = step / 50 if step <= 50 else 0.1 + 0.45 * (1 + math.cos(math.pi * (step - 50) / (steps - 50)))
        for group, lr in zip(opt.param_groups, base, strict=True):
            group["lr"] = lr * scale
        idx = train[epoch_indices(len(train), BATCH, step - 1, 0)].long()
        caps, owner = captioning.reference_ids(idx, 1, torch.randint(0, 2**31, (len(idx),), generator=g))
        assert torch.equal(owner, torch.arange(len(idx)))
        images = augment_images(captioning.images[idx], g, crop_padding=4, flip=True)
        logits = log_temp.clamp(max=math.log(100)).exp() * image_vectors(vit, head, images) @ text(
            captioning.captions[caps]).T
        labels = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(vit.parameters()) + new, 1.0)
        opt.step()
        losses.append(loss.item())
        accs.append(float((logits.argmax(1) == labels).float().mean()))
        if step % 50 == 0:
            print(f"<!-- step {step}: loss {sum(losses[-50:]) / 50:.4f}, in-batch accuracy {sum(accs[-50:]) / 50:.3f},"
                  f" temperature {1 / log_temp.exp().item():.4f}, {time.time() - start:.0f} s -->", flush=True)
        if step % 250 == 0 or step == steps:
            r1, r5 = dev_retrieval(vit, head, text, captioning)
            print(f"<!-- step {step}: dev image->caption R@1 {r1:.3f} R@5 {r5:.3f} -->", flush=True)
    vit.eval()
    print(f"Fine-tuned {steps} steps ({steps * BATCH / len(train):.1f} epochs of the training images) in "
          f"{time.time() - start:.0f} s at ViT lr {vit_lr:g}; loss {sum(losses[:50]) / 50:.4f} (first 50 steps) -> "
          f"{sum(losses[-50:]) / 50:.4f} (last 50); dev image->caption R@1 {r1:.3f}, R@5 {r5:.3f}.\n")
    cifar = load_checkpoint("runs/vit-cpu", "vit")  # the captioner's ViT came from it: its classes, normalisation
    state = {"kind": "vit", "config": cifar["config"], "extra": cifar["extra"], "model": vit.state_dict()}
    state["extra"]["model_config"] = vit.config_dict()
    state["extra"]["contrastive"] = {"from": run, "steps": steps, "vit_lr": vit_lr, "batch": BATCH}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "best.pt", lambda f: torch.save(state, f))
    probe(vit, data, captioning)


if __name__ == "__main__":
    main()
