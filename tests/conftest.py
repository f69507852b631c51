"""Shared fixtures: the data mirror (../shared/data in CI), a prepared-data root for the session, and the tiny
trained captioner that SCST's tests start from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    if hasattr(config, "workerinput"):  # a worker of `pytest -n N` (pytest-xdist): N workers share the cores, so
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread each, here and in the processes it starts
            os.environ.setdefault(name, "1")


def find_mirror() -> Path | None:
    value = os.environ.get("MLLM_DATA_MIRROR")
    if value:  # asked for explicitly (CI): it must be there, the real-data tests must not skip
        if not Path(value).is_dir():
            pytest.fail(f"MLLM_DATA_MIRROR={value} is not a folder")
        return Path(value)
    default = REPO.parent / "shared" / "data"
    return default if default.is_dir() else None


@pytest.fixture(scope="session")
def mirror() -> Path:
    found = find_mirror()
    if found is None:
        pytest.skip("no data mirror: set MLLM_DATA_MIRROR to a folder with the archives (CI uses ../shared/data)")
    return found


@pytest.fixture(scope="session")
def data_root(tmp_path_factory, request) -> Path:
    """Prepared-data caches for the session; the workers of `pytest -n N` share one folder (a cache is built under a
    lock by the first worker that needs it, and read by the others)."""
    if hasattr(request.config, "workerinput"):
        root = tmp_path_factory.getbasetemp().parent / "data"
        root.mkdir(exist_ok=True)
        return root
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_supervised(tmp_path_factory, mirror, data_root):
    """A tiny captioner (the rl tiny preset's model) fitted to the captions of 4 training images, saved (SCST's
    tests start from it): (its path, those 4 image indices)."""
    import numpy as np
    import torch

    from mllm.data import prepare_flickr8k
    from mllm.language.decoding import real_token_mask
    from mllm.multimodal.train import CaptioningTask
    from mllm.training.config import load_config

    cfg = load_config("mllm", "tiny", ["train.frozen_vision_until=0"])
    torch.manual_seed(0)  # the same tiny captioner whatever ran before
    task = CaptioningTask(cfg, prepare_flickr8k(data_root, mirror, image_size=cfg.model.image_size))
    chosen = torch.from_numpy(task.split["train"][:4]).long()
    caps = [int(c) for c in np.flatnonzero(np.isin(task.data.caption_image, chosen.numpy()))]
    tokens = task.captions[caps]
    targets = tokens[:, 1:].clone()
    targets[~real_token_mask(targets, task.tokenizer.eos_id)] = -100
    images = task.images[torch.from_numpy(task.data.caption_image[caps]).long()]
    opt = torch.optim.AdamW(task.model.parameters(), lr=3e-3)
    task.model.train()
    for _ in range(200):  # a captioner that has learnt these images' captions, as SCST starts from a trained one
        loss = task.model(tokens[:, :-1], targets, images=images)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("supervised") / "tiny.pt"
    torch.save({"kind": "captioner", "model": task.model.state_dict(), "config": cfg.to_dict(),
                "extra": task.extra_state()}, path)
    return path, chosen
