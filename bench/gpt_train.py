"""GPT training steps/s: our GPT (mllm/language/gpt.py) vs the same model built from torch.nn.TransformerEncoder.

    python bench/gpt_train.py [--quick] [--rounds 15] [--out /tmp/gpt_train.json]

Both sides take full training steps as the training loop does (AdamW with decay on matrices, fused kernel;
backward; global-norm clipping at train.grad_clip) on batches of the GPT cpu preset (32 x 128 characters,
width 192, 4 layers, 4 heads; --quick: the tiny preset). The torch model has the same parts: token
embedding tied to the head, learned positions, pre-norm GELU layers with a causal mask (torch's
`is_causal`, so both reach scaled_dot_product_attention), a final LayerNorm. Before timing, our weights are
copied into it and the two must give the same logits (1e-5) and the same parameter count (within 3%).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Ratio, Side, adamw, alternate, parser, report, setup, train_step  # noqa: E402
from mllm.language.gpt import GPT, GPTConfig  # noqa: E402
from mllm.training.config import load_config  # noqa: E402

VOCAB = 65  # Tiny Shakespeare's characters
ATOL = 1e-5


class TorchGPT(nn.Module):
    """The GPT's shape from torch's own modules: tokens [B, T] -> logits [B, T, V] (and the mean loss)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        d = cfg.d_model
        self.tok_embed = nn.Embedding(cfg.vocab_size, d)
        self.pos = nn.Parameter(torch.randn(cfg.context, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, int(cfg.mlp_ratio * d), cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_embed.weight

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        t = idx.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        h = self.encoder(self.tok_embed(idx) + self.pos[:t], mask=mask, is_causal=True)
        logits = self.head(h)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


@torch.no_grad()
def copy_weights(ours: GPT, ref: TorchGPT) -> None:
    """Our GPT's weights into the torch model (attention q, k, v stacked into in_proj)."""
    ref.tok_embed.weight.copy_(ours.tok_embed.weight)
    ref.pos.copy_(ours.pos.weight)
    for mine, theirs in zip(ours.decoder.layers, ref.encoder.layers, strict=True):
        a = mine.self_attn
        theirs.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        theirs.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        pairs = [(a.out_proj, theirs.self_attn.out_proj), (mine.ffn.linear1, theirs.linear1),
                 (mine.ffn.linear2, theirs.linear2), (mine.self_sub.norm, theirs.norm1),
                 (mine.ffn_sub.norm, theirs.norm2)]
        for src, dst in pairs:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    ref.encoder.norm.weight.copy_(ours.decoder.norm.weight)
    ref.encoder.norm.bias.copy_(ours.decoder.norm.bias)


def count(model: nn.Module) -> int:
    """Trainable parameters, a tied weight counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def stepper(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, clip: float) -> Callable[[], float]:
    """One training step of `model` on the batch (x, y), as a function of nothing."""
    return lambda: train_step(opt, lambda: model(x, y)[1], clip)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser(__doc__, rounds=15).parse_args(argv)
    setup(args)
    cfg = load_config("gpt", "tiny" if args.quick else "cpu")
    gcfg = GPTConfig(vocab_size=VOCAB, **cfg.model)
    ours, ref = GPT(gcfg), TorchGPT(gcfg)
    copy_weights(ours, ref)
    n_ours, n_ref = count(ours), count(ref)
    print(f"parameters: ours {n_ours:,}, torch.nn.TransformerEncoder model {n_ref:,} "
          f"({100 * (n_ref - n_ours) / n_ours:+.2f}%)")
    if abs(n_ref - n_ours) > 0.03 * n_ours:
        raise SystemExit("the two models differ in size by more than 3%")
    b, t = cfg.train.batch_size, cfg.model.context
    chunk = torch.randint(0, VOCAB, (b, t + 1))
    x, y = chunk[:, :-1], chunk[:, 1:]
    with torch.no_grad():
        a, r = ours(x)[0], ref(x)[0]
    diff = float((a - r).abs().max())
    if diff > ATOL:
        raise SystemExit(f"with the same weights the two models' logits differ by {diff} > {ATOL}")
    tr = cfg.train
    sides = []
    for name, model in (("ours", ours), ("torch.nn.TransformerEncoder", ref)):
        model.train()
        opt = adamw(list(model.parameters()), tr.lr, tr.betas, tr.weight_decay)
        sides.append(Side(name, stepper(model, opt, x, y, tr.grad_clip), items=1, unit="steps"))
    alternate(sides, args.rounds, args.warmup)
    m = cfg.model
    shape = f"batch {b} x {t}, width {m.d_model}, {m.num_layers} layers"
    ratios = [Ratio(f"GPT training step ({shape}): ours vs torch.nn.TransformerEncoder", sides[0], sides[1])]
    checks = {"parameters_ours": n_ours, "parameters_torch": n_ref, "max_abs_logit_diff_same_weights": diff}
    return report("gpt_train", ratios, args, checks)


if __name__ == "__main__":
    main()
