"""Generation speed with and without the key/value cache (not a test: a benchmark).

    python scripts/bench_generation.py [--checkpoint runs/gpt-cpu] [--new-tokens 500]

Without a checkpoint it times a randomly initialised model of the cpu preset's shape.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm.language.gpt import GPT, GPTConfig, load_gpt  # noqa: E402
from mllm.training.config import load_config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/gpt-cpu")
    p.add_argument("--new-tokens", type=int, default=500)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    if Path(args.checkpoint).exists():
        model, tok = load_gpt(args.checkpoint)
        prompt = tok.encode_tensor("\n")[None].repeat(args.batch, 1)
        source = args.checkpoint
    else:
        cfg = load_config("gpt", "cpu")
        model = GPT(GPTConfig(vocab_size=65, **cfg.model)).eval()
        prompt = torch.zeros(args.batch, 1, dtype=torch.long)
        source = "random init, cpu preset shape"
    results = {"source": source, "new_tokens": args.new_tokens, "batch": args.batch,
               "context": model.cfg.context, "threads": torch.get_num_threads()}
    outs = {}
    for use_cache in (True, False):
        model.generate(prompt, 20, temperature=0, use_cache=use_cache)  # warm up
        start = time.perf_counter()
        outs[use_cache] = model.generate(prompt, args.new_tokens, temperature=0, use_cache=use_cache)
        seconds = time.perf_counter() - start
        key = "cached" if use_cache else "uncached"
        results[f"{key}_tokens_per_s"] = round(args.new_tokens * args.batch / seconds, 1)
        print(f"{key:>8}: {results[f'{key}_tokens_per_s']:8.1f} tokens/s ({seconds:.2f} s)")
    results["speedup"] = round(results["cached_tokens_per_s"] / results["uncached_tokens_per_s"], 2)
    within = model.cfg.context - prompt.shape[1]
    results["same_tokens_within_context"] = bool(torch.equal(outs[True][:, :within], outs[False][:, :within]))
    print(f" speedup: {results['speedup']}x; identical tokens within the context: "
          f"{results['same_tokens_within_context']}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
