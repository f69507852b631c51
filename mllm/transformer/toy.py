"""A toy sequence-to-sequence task that the encoder-decoder Transformer must learn: reverse digits."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mllm.io import atomic_write_json

from .model import Transformer

PAD, BOS, DIGITS = 0, 1, 10  # digits are tokens 2..11


def reversal_batch(size: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Random digit strings: (src [B, L], decoder input [B, L] = BOS + reversed[:-1], target [B, L])."""
    src = torch.randint(2, DIGITS + 2, (size, length), generator=generator)
    tgt = src.flip(1)
    return src, torch.cat([torch.full((size, 1), BOS), tgt[:, :-1]], 1), tgt


@dataclass
class Reversal:
    """What a reversal run ends with: the model and its held-out token accuracy after `steps` steps."""

    model: Transformer
    accuracy: float
    steps: int
    seconds: float


def train_reversal(max_steps: int = 1500, target: float = 0.99, length: int = 8, seed: int = 0,
                   seconds: float | None = None, eval_every: int = 50,
                   log: Callable[[str], object] = print) -> float:
    """The held-out token accuracy of `fit_reversal` with the same arguments."""
    return fit_reversal(max_steps, target, length, seed, seconds, eval_every, log).accuracy


def fit_reversal(max_steps: int = 1500, target: float = 0.99, length: int = 8, seed: int = 0,
                 seconds: float | None = None, eval_every: int = 50,
                 log: Callable[[str], object] = print) -> Reversal:
    """Train a small Transformer on batches of 64 digit strings [64, length] until the held-out token
    accuracy (greedy decoding of 500 strings, measured every `eval_every` steps) reaches `target`, or
    `max_steps` optimizer steps (or, if given, `seconds` of wall-clock time) are spent.

    Seeded: the same arguments give the same run.
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
    return Reversal(model, accuracy, steps, time.time() - start)


def reverse_command(args: argparse.Namespace) -> int:
    """Train until the target accuracy; with --run-dir, keep the log, a summary and three examples there."""
    lines: list[str] = []
    log = (lambda line: (print(line), lines.append(line))) if args.run_dir else print
    run = fit_reversal(max_steps=args.steps, target=args.target, seconds=args.seconds, log=log)
    if args.run_dir:
        src, _, tgt = reversal_batch(3, 8, torch.Generator().manual_seed(12345))
        out = run.model.eval().greedy_decode(src, BOS, 8)
        show = lambda row: "".join(str(int(t) - 2) for t in row)  # noqa: E731  tokens 2..11 are digits 0..9
        run_dir = Path(args.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "train.log").write_text("\n".join(lines) + "\n")
        atomic_write_json(run_dir / "summary.json", {
            "kind": "reverse", "accuracy": run.accuracy, "target": args.target, "steps": run.steps,
            "wall_time_s": round(run.seconds, 1),
            "examples": [{"input": show(s), "output": show(o), "correct": bool((o == t).all())}
                         for s, o, t in zip(src, out, tgt, strict=True)]})
    return 0 if run.accuracy >= args.target else 1
