"""Does the ViT describe Flickr8k photos better after a few minutes of learning Flickr8k's content words?

    PYTHONPATH=results/layer-probe python results/layer-probe/tags.py runs/mllm-cpu MIRROR MINUTES > tags.md

The captioner's frozen ViT (the cpu ViT at 64x64) is fine-tuned on the training images alone to predict which of
the 1,000 most frequent content words their references name (the grounding head's targets; a linear head on the
mean patch token, binary cross-entropy; shifted and mirrored images; AdamW, lr 3e-4, batches of 64), for MINUTES
of wall time, then probed exactly as probe.py probes it (dev retrieval CIDEr-D per layer). Dev references are never
read for training. An experiment, not a recipe: it asks whether the vision encoder is where the captioner's
missing information is.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from probe import probe

from mllm.data import prepare_flickr8k
from mllm.multimodal.data import CaptionData, augment_images
from mllm.multimodal.mllm import load_captioner
from mllm.multimodal.train import CaptioningTask


def main() -> None:
    run, mirror, minutes = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    torch.manual_seed(0)
    model, tokenizer = load_captioner(run)
    vit = model.vit
    data = prepare_flickr8k("data", mirror, image_size=vit.cfg.image_size)
    captioning = CaptionData(data, tokenizer, 24, 1000, 0)
    words, targets = CaptioningTask._grounding_targets(data, 1000)
    head = torch.nn.Linear(vit.cfg.d_model, len(words))
    params = list(vit.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.05)
    train = torch.from_numpy(captioning.split["train"]).long()  # targets exist for training images only
    g = torch.Generator().manual_seed(0)
    start, step, losses = time.time(), 0, []
    vit.train()
    while time.time() - start < 60 * minutes:
        idx = train[torch.randint(0, len(train), (64,), generator=g)]
        images = augment_images(captioning.images[idx], g, crop_padding=4, flip=True)
        logits = head(vit.tokens(vit.normalize(images))[:, 1:].mean(1))
        loss = F.binary_cross_entropy_with_logits(logits, targets[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        losses.append(float(loss))
        if step % 100 == 0:
            print(f"<!-- step {step}: word loss {sum(losses[-100:]) / 100:.4f}, {time.time() - start:.0f} s -->",
                  flush=True)
    vit.eval()
    print(f"Fine-tuned {step} steps ({step * 64 / len(train):.1f} epochs of the training images) in "
          f"{time.time() - start:.0f} s; word loss {sum(losses[:50]) / 50:.4f} (first 50 steps) -> "
          f"{sum(losses[-50:]) / 50:.4f} (last 50).\n")
    probe(vit, data, captioning)


if __name__ == "__main__":
    main()
