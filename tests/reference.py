"""Copy weights between our modules and torch's reference modules, and compare them."""

from __future__ import annotations

import torch
from torch import nn

from mllm.transformer import DecoderBlock, EncoderBlock, MultiHeadAttention

ATOL = 1e-5


def mha_pairs(ours: MultiHeadAttention, ref: nn.MultiheadAttention) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(our parameter, the matching slice of torch's) for every attention weight."""
    d = ours.d_model
    w, b = ref.in_proj_weight, ref.in_proj_bias
    return [
        (ours.q_proj.weight, w[:d]), (ours.k_proj.weight, w[d:2 * d]), (ours.v_proj.weight, w[2 * d:]),
        (ours.q_proj.bias, b[:d]), (ours.k_proj.bias, b[d:2 * d]), (ours.v_proj.bias, b[2 * d:]),
        (ours.out_proj.weight, ref.out_proj.weight), (ours.out_proj.bias, ref.out_proj.bias),
    ]


def _ffn_norm_pairs(ours, ref, norms):
    pairs = [(ours.ffn.linear1.weight, ref.linear1.weight), (ours.ffn.linear1.bias, ref.linear1.bias),
             (ours.ffn.linear2.weight, ref.linear2.weight), (ours.ffn.linear2.bias, ref.linear2.bias)]
    for mine, theirs in norms:
        pairs += [(mine.norm.weight, theirs.weight), (mine.norm.bias, theirs.bias)]
    return pairs


def encoder_pairs(ours: EncoderBlock, ref: nn.TransformerEncoderLayer):
    return mha_pairs(ours.self_attn, ref.self_attn) + _ffn_norm_pairs(
        ours, ref, [(ours.attn_sub, ref.norm1), (ours.ffn_sub, ref.norm2)])


def decoder_pairs(ours: DecoderBlock, ref: nn.TransformerDecoderLayer):
    return (mha_pairs(ours.self_attn, ref.self_attn) + mha_pairs(ours.cross_attn, ref.multihead_attn)
            + _ffn_norm_pairs(ours, ref, [(ours.self_sub, ref.norm1), (ours.cross_sub, ref.norm2),
                                          (ours.ffn_sub, ref.norm3)]))


def transformer_pairs(ours, ref: nn.Transformer):
    pairs = []
    for mine, theirs in zip(ours.encoder.layers, ref.encoder.layers, strict=True):
        pairs += encoder_pairs(mine, theirs)
    for mine, theirs in zip(ours.decoder.layers, ref.decoder.layers, strict=True):
        pairs += decoder_pairs(mine, theirs)
    for mine, theirs in [(ours.encoder.norm, ref.encoder.norm), (ours.decoder.norm, ref.decoder.norm)]:
        pairs += [(mine.weight, theirs.weight), (mine.bias, theirs.bias)]
    return pairs


@torch.no_grad()
def copy_into_ours(pairs) -> None:
    for mine, theirs in pairs:
        mine.copy_(theirs)


def assert_same_grads(pairs, atol: float = ATOL) -> None:
    """Every pair of parameters got the same gradient (torch's slices index into its full grad)."""
    for mine, theirs in pairs:
        assert mine.grad is not None
        torch.testing.assert_close(mine.grad, _grad_of_view(theirs), atol=atol, rtol=1e-4)


def _grad_of_view(t: torch.Tensor) -> torch.Tensor:
    # slices of in_proj_weight are views; their gradient is the matching slice of the base's grad
    if t._base is None:
        return t.grad
    base = t._base
    offset = t.storage_offset() - base.storage_offset()
    return base.grad.flatten()[offset:offset + t.numel()].view_as(t)


def backward_with(out: torch.Tensor, probe: torch.Tensor) -> None:
    (out * probe).sum().backward()
