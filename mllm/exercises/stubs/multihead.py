"""Exercise `multihead`: multi-head attention (self- and cross-attention, with a key/value cache).

Write `split_heads`, `merge_heads` and `forward` of `MultiHeadAttention` below. `__init__` and `_check`
are the project's own: self.q_proj, self.k_proj, self.v_proj, self.out_proj (nn.Linear(D, D)),
self.attention (a ScaledDotProductAttention), self.num_heads = H, self.d_head = D / H, self.d_model = D.
`python main.py exercise check multihead` runs the real tests (tests/test_attention.py), which copy
torch.nn.MultiheadAttention's weights into yours and require the same outputs and gradients.
"""

from __future__ import annotations

from torch import Tensor, nn

from mllm.transformer.attention import KVCache


class MultiHeadAttention(nn.Module):
    """Multi-head attention for self-attention (key = value = query) and cross-attention."""

    def split_heads(self, x: Tensor) -> Tensor:
        """[B, T, D] -> [B, H, T, D/H]  (hint: view, then transpose two dimensions)"""
        raise NotImplementedError("write MultiHeadAttention.split_heads (exercise 'multihead')")

    def merge_heads(self, x: Tensor) -> Tensor:
        """[B, H, T, D/H] -> [B, T, D]  (the inverse of split_heads)"""
        raise NotImplementedError("write MultiHeadAttention.merge_heads (exercise 'multihead')")

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
        """query [B, T_q, D]; key_value [B, T_k, D] (None: self-attention, keys and values from the query).

        Returns (out [B, T_q, D], weights [B, H, T_q, T_k] or None). Steps:
          1. self._check(query, "query"); source = query if key_value is None else key_value;
          2. k, v = split_heads(k_proj(source)), split_heads(v_proj(source));
             with a `cache`: k, v = cache.extend(k, v) (the cache then holds every key so far);
             with static_kv and a filled cache (cross-attention), reuse cache.k, cache.v instead;
          3. q = split_heads(q_proj(query));
          4. out, weights = self.attention(q, k, v, mask, is_causal, return_weights);
             (optional: if cache is not None and cache.weights is not None, ask for the weights and
             append them to cache.weights: the attention maps)
          5. return out_proj(merge_heads(out)), weights.
        """
        raise NotImplementedError("write MultiHeadAttention.forward (exercise 'multihead')")
