"""`train-mllm` and `caption` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from mllm.data.download import default_mirror
from mllm.data.images import load_image

from .mllm import load_captioner


def train_mllm(args: argparse.Namespace) -> int:
    from mllm.data import prepare_flickr8k
    from mllm.training.launch import data_location, train

    from .train import CaptioningTask

    train(lambda cfg: CaptioningTask(cfg, prepare_flickr8k(*data_location(cfg), image_size=cfg.model.image_size)),
          args)
    return 0


def caption(args: argparse.Namespace) -> int:
    """Caption image files (any size or mode) or Flickr8k test images by name."""
    model, tokenizer = load_captioner(args.checkpoint, args.device)
    size = model.vit.cfg.image_size
    images, names = [], []
    for path in args.image or []:
        images.append(load_image(path, size))
        names.append(str(path))
    if args.flickr:
        from mllm.data import prepare_flickr8k

        mirror = args.data_mirror or default_mirror()
        data = prepare_flickr8k(args.data_root or "data", Path(mirror) if mirror else None, image_size=size)
        index = {str(n): i for i, n in enumerate(data.names)}
        for name in args.flickr:
            if name not in index:
                raise ValueError(f"--flickr {name}: no such Flickr8k image (names look like "
                                 f"{data.names[data.split_indices('test')[0]]})")
            images.append(data.images[index[name]])
            names.append(name)
    if not images:
        raise ValueError("nothing to caption: pass --image FILE and/or --flickr NAME.jpg")
    settings = {k: v if (v := getattr(args, k)) is not None else model.decoding[k] for k in model.decoding}
    ids = model.generate(torch.from_numpy(np.stack(images)).to(args.device), strategy=args.strategy, **settings)
    for name, row in zip(names, ids.cpu(), strict=True):
        print(f"{name}: {tokenizer.decode(row)}")
    return 0
