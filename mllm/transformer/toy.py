"""A toy sequence-to-sequence task that the encoder-decoder Transformer must learn: reverse digits."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .model import Transformer

PAD, BOS, DIGITS = 0, 1, 10  # digits are tokens 2..11


def reversal_batch(size: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Random digit strings: (src [B, L], decoder input [B, L] = BOS + reversed[:-1], target [B, L])."""
    src = torch.randint(2, DIGITS + 2, (size, length), generator=generator)
    tgt = src.flip(1)
    return src, torch.cat([torch.full((size, 1), BOS), tgt[:, :-1]], 1), tgt


def train_reversal(max_steps: int = 1500, target: float = 0.99, length: int = 8, seed: int = 0,
                   seconds: float | None = None, eval_every: int = 50,
                   log: Callable[[str], object] = print) -> float:
    """Train a small Transformer on batches of 64 digit strings [64, length] until the held-out token
    accuracy (greedy decoding of 500 strings, measured every `eval_every` steps) reaches `target`, or
    `max_steps` optimizer steps (or, if given, `seconds` of wall-clock time) are spent.

    Returns the last held-out token accuracy. Seeded: the same arguments give the same run.
    """
    torch.manual_seed(seed)
    model = Transformer(DIGITS + 2, DIGITS + 2, d_model=64, num_heads=4, num_encoder_layers=2,
                        num_decoder_layers=2, d_ff=128, max_len=2 * length, pad_id=PAD, fused=True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    test_src, _, test_tgt = reversal_batch(500, length, gen)
    start, steps, accuracy = time.time(), 0, 0.0
    while steps < max_steps and accuracy < target and (seconds is None or time.time() - start < seconds):
        model.train()
        for _ in range(min(eval_every, max_steps - steps)):
            src, tgt_in, tgt_out = reversal_batch(64, length, gen)
            loss = nn.functional.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        model.eval()
        accuracy = (model.greedy_decode(test_src, BOS, length) == test_tgt).float().mean().item()
        log(f"step {steps:5d}  loss {loss.item():.4f}  held-out token accuracy {accuracy:.4f}")
    log(f"reversal: {accuracy:.4f} token accuracy after {steps} steps in {time.time() - start:.1f}s")
    return accuracy


def reverse_command(args: argparse.Namespace) -> int:
    accuracy = train_reversal(max_steps=args.steps, target=args.target, seconds=args.seconds)
    return 0 if accuracy >= args.target else 1
