"""`train-llm` and `generate` commands."""

from __future__ import annotations

import argparse

import torch

from .gpt import load_gpt


def train_llm(args: argparse.Namespace) -> int:
    from mllm.data import prepare_shakespeare
    from mllm.training.launch import data_location, train

    from .train import LanguageModelTask

    def make_task(cfg):
        return LanguageModelTask(cfg, prepare_shakespeare(*data_location(cfg)))

    train(make_task, args)
    return 0


def generate(args: argparse.Namespace) -> int:
    model, tokenizer = load_gpt(args.checkpoint, args.device)
    prompt = args.prompt or "\n"
    idx = tokenizer.encode_tensor(prompt)[None].repeat(args.num_samples, 1).to(args.device)
    out = model.generate(idx, args.length, args.temperature, args.top_k, args.top_p,
                         generator=torch.Generator().manual_seed(args.seed))
    for i, row in enumerate(out):
        print(f"--- sample {i + 1} ---")
        print(tokenizer.decode(row) if args.prompt else tokenizer.decode(row[1:]))
    return 0
