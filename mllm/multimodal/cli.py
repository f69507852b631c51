"""`train-align`, `train-mllm` and `caption` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from mllm.data.download import default_mirror
from mllm.data.images import load_image

from .mllm import load_captioner
from .tokenizer import WordTokenizer


def train_align(args: argparse.Namespace) -> int:
    from mllm.data import prepare_flickr8k
    from mllm.training.launch import data_location, train

    from .align import AlignTask

    train(lambda cfg: AlignTask(cfg, prepare_flickr8k(*data_location(cfg), image_size=cfg.model.image_size)), args)
    return 0


def train_mllm(args: argparse.Namespace) -> int:
    from mllm.data import prepare_flickr8k
    from mllm.training.launch import data_location, train

    from .train import CaptioningTask

    train(lambda cfg: CaptioningTask(cfg, prepare_flickr8k(*data_location(cfg), image_size=cfg.model.image_size)),
          args)
    return 0


def _photo(path: str | Path, size: int) -> np.ndarray:
    """An image file at up to 4x the model's input size (for figures), upright, uint8 [H, W, 3]."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        im.thumbnail((4 * max(size, 128), 4 * max(size, 128)))
        return np.asarray(im)


def caption(args: argparse.Namespace) -> int:
    """Caption image files (any size or mode) or Flickr8k test images by name; optionally draw attention maps."""
    model, tokenizer = load_captioner(args.checkpoint, args.device)
    size = model.vit.cfg.image_size
    images, names, photos = [], [], []
    for path in args.image or []:
        images.append(load_image(path, size))
        names.append(str(path))
        photos.append(lambda path=path: _photo(path, size))
    if args.flickr:
        from mllm.data import prepare_flickr8k
        from mllm.data.flickr8k import read_photos

        mirror = args.data_mirror or default_mirror()
        root = args.data_root or "data"
        data = prepare_flickr8k(root, Path(mirror) if mirror else None, image_size=size)
        index = {str(n): i for i, n in enumerate(data.names)}
        for name in args.flickr:
            if name not in index:
                raise ValueError(f"--flickr {name}: no such Flickr8k image (names look like "
                                 f"{data.names[data.split_indices('test')[0]]})")
            images.append(data.images[index[name]])
            names.append(name)
            photos.append(lambda name=name: read_photos([name], root, Path(mirror) if mirror else None)[0])
    if not images:
        raise ValueError("nothing to caption: pass --image FILE and/or --flickr NAME.jpg")
    if args.attention and model.num_image_tokens == 0:
        raise ValueError("--attention: this captioner is blind (no image tokens), so there is nothing to draw")
    settings = {k: v if (v := getattr(args, k)) is not None else model.decoding[k] for k in model.decoding}
    if settings["no_repeat"] and not isinstance(tokenizer, WordTokenizer):
        raise ValueError(f"--no-repeat {settings['no_repeat']} counts tokens, and this captioner's tokens are "
                         f"characters: it would ban every repeated run of letters; use --no-repeat 0")
    pixels = torch.from_numpy(np.stack(images)).to(args.device)
    ids = model.generate(pixels, strategy=args.strategy, attention=bool(args.attention), **settings)
    ids, att = ids if args.attention else (ids, None)
    for k, (name, row) in enumerate(zip(names, ids.cpu(), strict=True)):
        text = tokenizer.decode(row)
        print(f"{name}: {text}")
        if att is not None:
            out = Path(args.attention)
            if len(names) > 1:
                out = out.with_name(f"{out.stem}-{k + 1}{out.suffix}")
            words = text.split()
            n = min(len(words) + 1, row.shape[0])  # the words and the end token, if it came
            from .figures import attention_figure

            attention_figure(photos[k](), images[k], (words + ["<end>"])[:n], att.maps[k, :, :n].cpu(), out,
                             f"{Path(name).name} ({args.strategy}): where each word looked")
            print(f"  attention maps: {out}")
    return 0
