"""`python main.py data`: fetch or mirror, then prepare all three data sets, with a summary."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .cifar import prepare_cifar10
from .download import default_mirror
from .flickr8k import prepare_flickr8k
from .shakespeare import prepare_shakespeare


def prepare_all(root: str | Path = "data", mirror: str | Path | None = None, image_size: int = 64) -> dict:
    mirror = Path(mirror) if mirror else default_mirror()
    print(f"data root {root}; " + (f"mirror {mirror}" if mirror else "no mirror: downloading official archives"))
    cifar = prepare_cifar10(root, mirror)
    per_class = np.bincount(cifar.y_train, minlength=10).tolist()
    print(f"cifar10: {len(cifar.x_train)} train / {len(cifar.x_test)} test images, {per_class[0]}.. per class")
    text = prepare_shakespeare(root, mirror)
    print(f"tinyshakespeare: {len(text.train):,} train / {len(text.val):,} val characters, "
          f"vocabulary {len(text.chars)}")
    flickr = prepare_flickr8k(root, mirror, image_size)
    print(f"flickr8k: {flickr.stats['train_images']}/{flickr.stats['dev_images']}/{flickr.stats['test_images']} "
          f"train/dev/test images at {image_size}x{image_size}, {len(flickr.captions)} captions")
    return {"cifar10": cifar, "shakespeare": text, "flickr8k": flickr}


def data_command(args: argparse.Namespace) -> int:
    prepare_all(args.data_root or "data", args.data_mirror, args.image_size)
    return 0
