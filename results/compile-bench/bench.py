"""Does torch.compile make the cpu captioner's training step faster on this CPU? A step as the frozen phase runs it.

    python results/compile-bench/bench.py [ROUNDS] > results/compile-bench/bench.log

The model is the cpu captioner (its config and weights from runs/mllm-cpu/best.pt, dropout on, train mode); a step is
a forward and backward on 64 captions of the training batch shape with cached patch features [64, 256, 128], the
grounding head's loss beside it, then AdamW. Eager and compiled copies alternate in blocks of 20 steps, so that
a slower hour hits both sides alike; the first compiled call (the compilation) is timed on its own.
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from mllm.multimodal.mllm import Captioner, CaptionerConfig

torch.manual_seed(0)
state = torch.load("runs/mllm-cpu/best.pt", map_location="cpu", weights_only=False)
cfg = CaptionerConfig(**state["extra"]["model_config"])
B, T, V = 64, 14, cfg.text["vocab_size"]  # 14: the padded length of a typical batch (captions average ~12 words)
features = torch.randn(B, 256, 128)
captions = torch.randint(2, V, (B, T))
targets = torch.cat([captions[:, 1:], torch.full((B, 1), cfg.eos_id)], 1)
words = (torch.rand(B, cfg.aux_words) < 0.01).float()


def make(compiled: bool):
    model = Captioner(cfg)
    model.load_state_dict(state["model"])
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    net = torch.compile(model) if compiled else model

    def step() -> None:
        _, loss, word_logits = net(captions, targets, features=features, words=True)
        (loss + F.binary_cross_entropy_with_logits(word_logits, words)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
steps = {"eager": make(False), "compiled": make(True)}
start = time.time()
steps["compiled"]()
seconds = time.time() - start
print(f"compilation (first compiled step): {seconds:.1f} s on {torch.get_num_threads()} threads", flush=True)
steps["eager"]()
times: dict[str, list[float]] = {"eager": [], "compiled": []}
for r in range(rounds):
    for name in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
        t = time.time()
        for _ in range(20):
            steps[name]()
        times[name].append((time.time() - t) / 20)
        print(f"round {r}: {name} {times[name][-1]:.3f} s a step", flush=True)
e, c = sum(times["eager"]) / rounds, sum(times["compiled"]) / rounds
print(f"mean over {rounds} rounds: eager {e:.3f} s, compiled {c:.3f} s a step: {e / c:.2f}x")
print(f"torch {torch.__version__}")
