"""GPT generation tokens/s with the key/value cache vs without it (greedy decoding, the same model and prompt).

    python bench/generation.py [--quick] [--checkpoint runs/gpt-cpu] [--new-tokens 500] [--batch 1]

The model is the trained cpu GPT of `--checkpoint` when it exists (default runs/gpt-cpu), otherwise a randomly
initialised model of the cpu preset's shape (--quick: the tiny preset's, 16 new tokens). Besides the timed
rounds it checks that both ways produce the same tokens within the context (past it the cached path refills
its window from the last half-context and the two see different contexts; docs/tutorial/03-gpt.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Ratio, Side, alternate, parser, report, setup  # noqa: E402
from mllm.language.gpt import GPT, GPTConfig, load_gpt  # noqa: E402
from mllm.training.config import load_config  # noqa: E402

DEFAULT_CHECKPOINT = "runs/gpt-cpu"


def model_and_prompt(checkpoint: str | None, quick: bool, batch: int) -> tuple[GPT, torch.Tensor, str]:
    """The GPT (eval mode), a one-token prompt [batch, 1] and where the model came from."""
    path = checkpoint or (None if quick else DEFAULT_CHECKPOINT)
    if path and Path(path).exists():
        model, tok = load_gpt(path)
        return model, tok.encode_tensor("\n")[None].repeat(batch, 1), path
    if checkpoint:
        raise SystemExit(f"--checkpoint {checkpoint}: no such run or file (python main.py train-llm writes one)")
    preset = "tiny" if quick else "cpu"
    cfg = load_config("gpt", preset)
    model = GPT(GPTConfig(vocab_size=65, **cfg.model)).eval()
    return model, torch.zeros(batch, 1, dtype=torch.long), f"random init, {preset} preset shape"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__, rounds=7)
    p.add_argument("--checkpoint", default=None, help=f"a GPT run folder or .pt (default {DEFAULT_CHECKPOINT} if "
                                                      f"it exists; --quick: a random tiny model)")
    p.add_argument("--new-tokens", type=int, default=None, help="tokens generated a call (default 500; quick 16)")
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args(argv)
    setup(args)
    if args.new_tokens is None:
        args.new_tokens = 16 if args.quick else 500
    model, prompt, source = model_and_prompt(args.checkpoint, args.quick, args.batch)
    outs: dict[bool, torch.Tensor] = {}

    def generate(use_cache: bool) -> None:
        outs[use_cache] = model.generate(prompt, args.new_tokens, temperature=0, use_cache=use_cache)

    items = args.new_tokens * args.batch
    sides = [Side("cached", lambda: generate(True), items, "tokens"),
             Side("uncached", lambda: generate(False), items, "tokens")]
    alternate(sides, args.rounds, args.warmup)
    within = model.cfg.context - prompt.shape[1]
    same = bool(torch.equal(outs[True][:, :within], outs[False][:, :within]))
    what = (f"GPT generation, {args.new_tokens} new tokens, batch {args.batch}, context {model.cfg.context} "
            f"({source}): with vs without the KV cache")
    compared = min(within, outs[True].shape[1]) - prompt.shape[1]
    checks = {"same_tokens_within_context": same, "new_tokens_compared": compared}
    return report("generation", [Ratio(what, sides[0], sides[1])], args, checks,
                  {"source": source, "context": model.cfg.context})


if __name__ == "__main__":
    main()
