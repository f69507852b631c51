"""`train-rl`: SCST fine-tuning of a supervised captioner run."""

from __future__ import annotations

import argparse


def train_rl(args: argparse.Namespace) -> int:
    from mllm.data import prepare_flickr8k
    from mllm.training.launch import data_location, train

    from .train import SCSTTask

    train(lambda cfg: SCSTTask(cfg, prepare_flickr8k(*data_location(cfg), image_size=cfg.model.image_size)), args)
    return 0
