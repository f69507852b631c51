"""Causal self-attention, forward + backward: our hand-written attention vs our fused path vs torch's.

    python bench/attention.py [--quick] [--rounds 15] [--out /tmp/attention.json]

Sides: `MultiHeadAttention(fused=False)` (softmax(q k^T / sqrt(d)) v written out, mllm/transformer/attention.py),
the same module with `fused=True` (torch's scaled_dot_product_attention) and `torch.nn.MultiheadAttention`
(need_weights=False, so it also reaches scaled_dot_product_attention), all with the same weights, on a batch
of the GPT cpu preset's shape (batch 32 x context 128, width 192, 4 heads; --quick: the tiny preset's).
Before timing, the three must give the same outputs and gradients (input and every weight) to 1e-5, relative to
each tensor's largest magnitude where that is above 1 (weight gradients sum over all B x T positions).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Ratio, Side, alternate, parser, report, setup  # noqa: E402
from mllm.training.config import load_config  # noqa: E402
from mllm.transformer import MultiHeadAttention, causal_mask  # noqa: E402

ATOL = 1e-5


def build(d_model: int, num_heads: int) -> dict[str, nn.Module]:
    """The three modules with the same weights: hand-written, fused, torch.nn.MultiheadAttention."""
    hand = MultiHeadAttention(d_model, num_heads, fused=False)
    fused = MultiHeadAttention(d_model, num_heads, fused=True)
    fused.load_state_dict(hand.state_dict())
    ref = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([hand.q_proj.weight, hand.k_proj.weight, hand.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([hand.q_proj.bias, hand.k_proj.bias, hand.v_proj.bias]))
        ref.out_proj.weight.copy_(hand.out_proj.weight)
        ref.out_proj.bias.copy_(hand.out_proj.bias)
    return {"hand-written": hand, "fused": fused, "torch MHA": ref}


def forward(module: nn.Module, x: Tensor) -> Tensor:
    """Causal self-attention [B, T, D] -> [B, T, D] with either kind of module."""
    if isinstance(module, nn.MultiheadAttention):
        t = x.shape[1]
        return module(x, x, x, attn_mask=~causal_mask(t, t), need_weights=False, is_causal=True)[0]
    return module(x, is_causal=True)[0]


def step(module: nn.Module, x: Tensor, probe: Tensor) -> Tensor:
    """One forward + backward (gradients from a fixed probe), fresh gradients each call; returns the output."""
    module.zero_grad(set_to_none=True)
    x.grad = None
    out = forward(module, x)
    (out * probe).sum().backward()
    return out


def gradients(module: nn.Module) -> list[Tensor]:
    """The weight gradients in our layout (q, k, v, out projections; weights then biases)."""
    if isinstance(module, nn.MultiheadAttention):
        w, b = module.in_proj_weight.grad, module.in_proj_bias.grad
        return [*w.chunk(3), *b.chunk(3), module.out_proj.weight.grad, module.out_proj.bias.grad]
    p = [module.q_proj, module.k_proj, module.v_proj]
    return [*(m.weight.grad for m in p), *(m.bias.grad for m in p), module.out_proj.weight.grad,
            module.out_proj.bias.grad]


def agreement(modules: dict[str, nn.Module], x: Tensor, probe: Tensor) -> dict[str, float]:
    """Largest difference from the hand-written side over the outputs, input and weight gradients, per side;
    each tensor's difference is divided by its largest magnitude where that is above 1."""
    seen = {}
    for name, module in modules.items():
        out = step(module, x, probe).detach()
        seen[name] = [out, x.grad.clone(), *gradients(module)]
    base = seen["hand-written"]
    return {name: max(float((a - b).abs().max() / a.abs().max().clamp(min=1)) for a, b in zip(base, got, strict=True))
            for name, got in seen.items() if name != "hand-written"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__, rounds=15).parse_args(argv)
    setup(args)
    m = load_config("gpt", "tiny" if args.quick else "cpu")
    b, t, d, h = m.train.batch_size, m.model.context, m.model.d_model, m.model.num_heads
    modules = build(d, h)
    x = torch.randn(b, t, d, requires_grad=True)
    probe = torch.randn(b, t, d)
    diffs = agreement(modules, x, probe)
    if max(diffs.values()) > ATOL:
        raise SystemExit(f"the attention sides disagree: largest difference from hand-written {diffs} > {ATOL}")
    sides = {name: Side(name, lambda mod=mod: step(mod, x, probe), items=b, unit="sequences")
             for name, mod in modules.items()}
    alternate(list(sides.values()), args.rounds, args.warmup, calls=2 if args.quick else 10)
    shape = f"[{b}, {t}, {d}], {h} heads"
    ratios = [Ratio(f"causal self-attention fwd+bwd {shape}: fused vs hand-written", sides["fused"],
                    sides["hand-written"]),
              Ratio(f"causal self-attention fwd+bwd {shape}: ours fused vs torch.nn.MultiheadAttention",
                    sides["fused"], sides["torch MHA"])]
    checks = {"max_diff_from_hand_written": diffs, "atol": ATOL}
    return report("attention", ratios, args, checks, {"shape": [b, t, d], "heads": h})


if __name__ == "__main__":
    main()
