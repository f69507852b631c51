"""Tiny checkpoints for the web demo's tests (tests/test_serve.py), trained in seconds on real data read straight
from the mirror's archives: two captioners fitted to four Flickr8k training images and a char GPT on the start
of Tiny Shakespeare, saved in the layout the project's loaders read."""

from __future__ import annotations

import io
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mllm.data.flickr8k import parse_captions
from mllm.language.gpt import GPT, GPTConfig
from mllm.language.tokenizer import CharTokenizer
from mllm.multimodal.mllm import Captioner, CaptionerConfig
from mllm.multimodal.tokenizer import WordTokenizer


def mirror_file(mirror: Path, folder: str, name: str) -> Path:
    """A mirror holds either `<set>/<file>` or the file itself."""
    return mirror / folder / name if (mirror / folder / name).is_file() else mirror / name


def read_flickr(mirror: Path, n_train: int = 4, n_test: int = 2) -> dict[str, Any]:
    """The first training images with their captions and the first test images, as the archive's JPEG bytes."""
    with zipfile.ZipFile(mirror_file(mirror, "flickr8k", "Flickr8k_text.zip")) as z:
        names = {Path(n).name: n for n in z.namelist()}
        captions = parse_captions(z.read(names["Flickr8k.token.txt"]).decode("utf-8"), csv_form=False)
        train = z.read(names["Flickr_8k.trainImages.txt"]).decode().split()[:n_train]
        test = z.read(names["Flickr_8k.testImages.txt"]).decode().split()[:n_test]
    with zipfile.ZipFile(mirror_file(mirror, "flickr8k", "Flickr8k_Dataset.zip")) as z:
        members = {Path(n).name: n for n in z.namelist()}
        data = {name: z.read(members[name]) for name in train + test}
    return {"train": train, "test": test, "captions": captions, "bytes": data}


def pixels(jpeg: bytes, size: int) -> np.ndarray:
    """JPEG bytes -> uint8 [size, size, 3], resized as the project's image reader does (bicubic)."""
    return np.array(Image.open(io.BytesIO(jpeg)).convert("RGB").resize((size, size), Image.BICUBIC))


def train_captioner(flickr: dict[str, Any], steps: int, seed: int = 0) -> tuple[Captioner, WordTokenizer]:
    """A tiny captioner (32x32 images, 4x4 patches of 8 pixels) fitted to the training images' captions."""
    caps = [(i, c) for i, name in enumerate(flickr["train"]) for c in flickr["captions"][name]]
    tok = WordTokenizer.from_captions([c for _, c in caps], min_count=1)
    torch.manual_seed(seed)
    model = Captioner(CaptionerConfig({"image_size": 32, "patch_size": 8, "d_model": 16, "num_layers": 1,
                                       "num_heads": 2},
                                      {"vocab_size": tok.vocab_size, "context": 24, "d_model": 32, "num_layers": 1,
                                       "num_heads": 2}, bos_id=tok.bos_id, eos_id=tok.eos_id,
                                      banned_ids=tok.banned_ids))
    rows = [tok.encode(c)[:12] for _, c in caps]
    inputs = torch.full((len(rows), 13), tok.eos_id)
    targets = torch.full((len(rows), 13), -100)
    for r, ids in enumerate(rows):  # BOS w_1 .. w_n -> w_1 .. w_n EOS
        inputs[r, 0], inputs[r, 1 : len(ids) + 1] = tok.bos_id, torch.tensor(ids)
        targets[r, : len(ids)], targets[r, len(ids)] = torch.tensor(ids), tok.eos_id
    images = torch.from_numpy(np.stack([pixels(flickr["bytes"][flickr["train"][i]], 32) for i, _ in caps]))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(inputs, targets, images=images)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


def train_gpt(text: str, steps: int = 60) -> tuple[GPT, CharTokenizer]:
    """A tiny char GPT (context 32) on the first 20,000 characters of `text`, its vocabulary the whole text's."""
    tok = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPT(GPTConfig(tok.vocab_size, context=32, d_model=32, num_layers=1, num_heads=2))
    data = tok.encode_tensor(text[:20_000])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - 33, (16,))
        batch = torch.stack([data[s : s + 33] for s in starts])
        loss = model(batch[:, :-1], batch[:, 1:])[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


def write_checkpoints(folder: Path, mirror: Path, flickr: dict[str, Any]) -> dict[str, Path]:
    """{"mllm", "rl", "gpt"} -> .pt files: a supervised captioner, a second one standing in for the SCST one
    (trained longer, so its captions and ViT differ), a char GPT. One torch thread: models this small gain
    nothing from more, and lose much when the cores are busy."""
    paths = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for key, steps in (("mllm", 40), ("rl", 80)):
            model, tok = train_captioner(flickr, steps)
            paths[key] = folder / f"{key}.pt"
            torch.save({"kind": "captioner", "model": model.state_dict(),
                        "config": {"eval": {"max_len": 12, "beam_size": 2, "length_penalty": 0.0}},
                        "extra": {"model_config": asdict(model.cfg), "tokenizer": tok.state_dict()}}, paths[key])
        gpt, chars = train_gpt(mirror_file(mirror, "tinyshakespeare", "input.txt").read_text(encoding="utf-8"))
        paths["gpt"] = folder / "gpt.pt"
        torch.save({"kind": "gpt", "model": gpt.state_dict(), "config": {},
                    "extra": {"model_config": asdict(gpt.cfg), "tokenizer": chars.state_dict()}}, paths["gpt"])
    finally:
        torch.set_num_threads(threads)
    return paths


_SHARED: dict[str, Any] = {}


def shared_checkpoints(tmp_path_factory: Any, mirror: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The Flickr8k images (24 test images) and the checkpoints above, made once per test session and shared by
    the web demo's test modules."""
    if "checkpoints" not in _SHARED:
        _SHARED["flickr"] = read_flickr(mirror, n_test=24)
        _SHARED["checkpoints"] = write_checkpoints(tmp_path_factory.mktemp("serve-checkpoints"), mirror,
                                                   _SHARED["flickr"])
    return _SHARED["flickr"], _SHARED["checkpoints"]
