"""A toy sequence-to-sequence task that the encoder-decoder Transformer must learn: reverse digits."""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from .model import Transformer

PAD, BOS, DIGITS = 0, 1, 10  # digits are tokens 2..11


def reversal_batch(size: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Random digit strings: (src [B, L], decoder input [B, L] = BOS + reversed[:-1], target [B, L])."""
    src = torch.randint(2, DIGITS + 2, (size, length), generator=generator)
    tgt = src.flip(1)
    return src, torch.cat([torch.full((size, 1), BOS), tgt[:, :-1]], 1), tgt


def train_reversal(seconds: float = 60.0, target: float = 0.995, length: int = 8, seed: int = 0,
                   log=print) -> float:
    """Train a small Transformer until held-out token accuracy reaches `target` or time runs out."""
    torch.manual_seed(seed)
    model = Transformer(DIGITS + 2, DIGITS + 2, d_model=64, num_heads=4, num_encoder_layers=2,
                        num_decoder_layers=2, d_ff=128, max_len=2 * length, pad_id=PAD, fused=True)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    test_src, _, test_tgt = reversal_batch(500, length, gen)
    start, steps, accuracy = time.time(), 0, 0.0
    while time.time() - start < seconds and accuracy < target:
        model.train()
        for _ in range(50):
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
    return 0 if train_reversal(seconds=args.seconds, target=args.target) >= args.target else 1
