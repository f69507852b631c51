"""Encoder and decoder blocks: attention and feed-forward sublayers with residuals and norms.

Pre-norm (default): x + Dropout(Sublayer(Norm(x))), stable without warmup tricks.
Post-norm (`norm_first=False`, the 2017 paper): Norm(x + Dropout(Sublayer(x))).
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention import KVCache, MultiHeadAttention
from .layers import LayerNorm, PositionwiseFeedForward


class _Residual(nn.Module):
    """One sublayer wrapped with its norm, residual dropout and residual connection."""

    def __init__(self, d_model: int, dropout: float, norm_first: bool, eps: float, fused: bool):
        super().__init__()
        self.norm = LayerNorm(d_model, eps, fused=fused)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: Tensor, sublayer) -> Tensor:
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderBlock(nn.Module):
    """Self-attention then feed-forward. [B, T, D] -> [B, T, D]."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu",
                 norm_first: bool = True, eps: float = 1e-5, fused: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, fused=fused)
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout, activation)
        self.attn_sub = _Residual(d_model, dropout, norm_first, eps, fused)
        self.ffn_sub = _Residual(d_model, dropout, norm_first, eps, fused)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.attn_sub(x, lambda h: self.self_attn(h, mask=mask)[0])
        return self.ffn_sub(x, self.ffn)


class DecoderBlock(nn.Module):
    """Masked self-attention, optional cross-attention to an encoder memory, feed-forward.

    With `cross_attention=False` it is a GPT block. Caches make incremental decoding exact.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu",
                 norm_first: bool = True, cross_attention: bool = True, eps: float = 1e-5, fused: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, fused=fused)
        self.self_sub = _Residual(d_model, dropout, norm_first, eps, fused)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout, fused=fused) if cross_attention else None
        self.cross_sub = _Residual(d_model, dropout, norm_first, eps, fused) if cross_attention else None
        self.ffn = PositionwiseFeedForward(d_model, d_ff, dropout, activation)
        self.ffn_sub = _Residual(d_model, dropout, norm_first, eps, fused)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        is_causal: bool = True,
        cache: tuple[KVCache, KVCache] | None = None,
    ) -> Tensor:
        """x [B, T, D], memory [B, S, D]; `cache` = (self-attention cache, cross-attention cache)."""
        self_cache, cross_cache = cache if cache is not None else (None, None)
        x = self.self_sub(x, lambda h: self.self_attn(h, mask=self_mask, is_causal=is_causal, cache=self_cache)[0])
        if self.cross_attn is not None:
            if memory is None and (cross_cache is None or cross_cache.k is None):
                raise ValueError("this DecoderBlock has cross-attention: pass the encoder memory [B, S, D]")
            x = self.cross_sub(x, lambda h: self.cross_attn(
                h, memory, mask=memory_mask, cache=cross_cache, static_kv=True)[0])
        return self.ffn_sub(x, self.ffn)
