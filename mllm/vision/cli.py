"""`train-vit` and `predict` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from mllm.data import prepare_cifar10
from mllm.data.download import default_mirror
from mllm.data.images import load_image

from .vit import load_vit


def train_vit(args: argparse.Namespace) -> int:
    from mllm.training.launch import data_location, train

    from .train import ImageClassificationTask

    train(lambda cfg: ImageClassificationTask(cfg, prepare_cifar10(*data_location(cfg))), args)
    return 0


def predict(args: argparse.Namespace) -> int:
    model, classes = load_vit(args.checkpoint, args.device)
    size = model.cfg.image_size
    images, names, truth = [], [], []
    for path in args.image or []:
        images.append(load_image(path, size))
        names.append(str(path))
        truth.append(None)
    if args.index:
        mirror = args.data_mirror or default_mirror()
        data = prepare_cifar10(args.data_root or "data", Path(mirror) if mirror else None)
        for i in args.index:
            if not 0 <= i < len(data.x_test):
                raise ValueError(f"--index {i} is out of range: the CIFAR-10 test set has {len(data.x_test)} images")
            images.append(data.x_test[i])
            names.append(f"test[{i}]")
            truth.append(classes[data.y_test[i]])
    if not images:
        raise ValueError("nothing to classify: pass --image FILE and/or --index N")
    x = model.normalize(torch.from_numpy(np.stack(images)).to(args.device))
    with torch.no_grad():
        probs = model(x).softmax(-1).cpu()
    top = probs.topk(min(args.top_k, len(classes)), dim=-1)
    for name, t, p, c in zip(names, truth, top.values, top.indices, strict=True):
        guesses = ", ".join(f"{classes[j]} {q:.3f}" for q, j in zip(p.tolist(), c.tolist(), strict=True))
        print(f"{name}: {guesses}" + (f"   (true: {t})" if t else ""))
    return 0
