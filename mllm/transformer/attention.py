"""Scaled dot-product attention, multi-head attention and the key/value cache.

Mask convention everywhere: a boolean tensor, True = "this query may attend to this key".
Padding and causal masks combine with `&`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def causal_mask(t_q: int, t_k: int, device: torch.device | None = None) -> Tensor:
    """[t_q, t_k] lower-triangular mask aligned to the end: query i sits at key position t_k - t_q + i.

    The alignment makes the same mask right for a full pass (t_q == t_k) and for new queries
    appended after `t_k - t_q` cached keys.
    """
    q_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]
    return torch.arange(t_k, device=device)[None, :] <= q_pos


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """[B, T] token ids -> [B, 1, 1, T] mask that hides padded keys."""
    return (tokens != pad_id)[:, None, None, :]


def _check_mask(mask: Tensor, scores_shape: tuple[int, ...]) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"attention mask must be bool (True = may attend), got dtype {mask.dtype}")
    try:
        shape = torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        shape = None
    if mask.dim() > 4 or shape != torch.Size(scores_shape):
        raise ValueError(
            f"attention mask of shape {tuple(mask.shape)} does not broadcast to the scores "
            f"[B, H, T_q, T_k] = {list(scores_shape)}; use [T_q, T_k] (causal), "
            f"[B, 1, 1, T_k] (padding) or [B, 1, T_q, T_k]"
        )


class ScaledDotProductAttention(nn.Module):
    """softmax(q k^T / sqrt(d) masked) v, written out; `fused=True` calls torch's kernel instead."""

    def __init__(self, dropout: float = 0.0, fused: bool = False):
        super().__init__()
        self.dropout = dropout
        self.fused = fused

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        is_causal: bool = False,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """q [B, H, T_q, d], k and v [B, H, T_k, d], mask broadcastable to [B, H, T_q, T_k].

        Returns the output [B, H, T_q, d] and, if asked, the weights [B, H, T_q, T_k].
        """
        t_q, t_k = q.shape[-2], k.shape[-2]
        if mask is not None:
            _check_mask(mask, (*q.shape[:-2], t_q, t_k))
        if is_causal and t_q > 1:
            causal = causal_mask(t_q, t_k, q.device)
            if self.fused and mask is None and t_q == t_k and not return_weights:
                return self._fused(q, k, v, None, is_causal=True), None
            mask = causal if mask is None else mask & causal
        if self.fused and not return_weights:
            return self._fused(q, k, v, mask, is_causal=False), None

        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            # a query that may attend to no key gets zero weights (as the fused kernel does), not NaN:
            # its row is made finite before the softmax and zeroed after, so no NaN reaches the gradients
            empty = ~mask.any(dim=-1, keepdim=True)
            scores = scores.masked_fill(~mask, float("-inf")).masked_fill(empty, 0.0)
        weights = scores.softmax(dim=-1)
        if mask is not None:
            weights = weights.masked_fill(empty, 0.0)
        out = F.dropout(weights, self.dropout, self.training) @ v
        return out, (weights if return_weights else None)

    def _fused(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        p = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal)


class KVCache:
    """Keys and values [B, H, T, d_head] of the positions seen so far, for one attention layer.

    Self-attention extends it one step (or chunk) at a time; cross-attention fills it once with
    the projected encoder memory and reuses it (`static`).
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.weights: list[Tensor] | None = None  # a list: each pass through the layer appends its weights

    def record_weights(self) -> None:
        """From now on, keep the attention weights [B, H, T_q, T_k] of every pass (attention maps)."""
        self.weights = []

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.k is not None:
            k, v = torch.cat([self.k, k], dim=-2), torch.cat([self.v, v], dim=-2)
        self.k, self.v = k, v
        return k, v

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` [B'] (beam search: each surviving beam takes its parent's keys/values)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


class MultiHeadAttention(nn.Module):
    """Multi-head attention for self-attention (key = value = query) and cross-attention."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True, fused: bool = False):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}; "
                             f"pick num_heads among the divisors of d_model")
        self.d_model, self.num_heads, self.d_head = d_model, num_heads, d_model // num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.attention = ScaledDotProductAttention(dropout, fused)

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, T, D] -> [B, H, T, D/H]"""
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.d_head).transpose(1, 2)

    def merge_heads(self, x: Tensor) -> Tensor:
        """[B, H, T, D/H] -> [B, T, D]"""
        b, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(b, t, self.d_model)

    def forward(
        self,
        query: Tensor,
        key_value: Tensor | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        cache: KVCache | None = None,
        static_kv: bool = False,
        return_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """query [B, T_q, D]; key_value [B, T_k, D] (None: self-attention).

        With a `cache`, new keys/values are appended to it (self-attention), or, with
        `static_kv=True` (cross-attention), computed once from `key_value` and then reused.
        Returns [B, T_q, D] and optionally the weights [B, H, T_q, T_k].
        """
        self._check(query, "query")
        source = query if key_value is None else key_value
        if static_kv and cache is not None and cache.k is not None:
            k, v = cache.k, cache.v
        else:
            self._check(source, "key_value")
            if source.shape[0] != query.shape[0]:
                raise ValueError(f"key_value batch {source.shape[0]} != query batch {query.shape[0]}")
            k, v = self.split_heads(self.k_proj(source)), self.split_heads(self.v_proj(source))
            if cache is not None:
                k, v = cache.extend(k, v)
        q = self.split_heads(self.q_proj(query))
        record = cache is not None and cache.weights is not None
        out, weights = self.attention(q, k, v, mask, is_causal, return_weights or record)
        if record:
            cache.weights.append(weights)
        return self.out_proj(self.merge_heads(out)), weights

    def _check(self, x: Tensor, name: str) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{name} must be [batch, seq, d_model={self.d_model}], got shape {tuple(x.shape)}")
