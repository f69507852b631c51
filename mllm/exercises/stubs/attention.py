"""Exercise `attention`: scaled dot-product attention with boolean masks.

Write `ScaledDotProductAttention.forward` below. Your method replaces the project's own when
`python main.py exercise check attention` runs the real tests (tests/test_attention.py).

    weights = softmax(q k^T / sqrt(d) with masked scores set to -inf)     [B, H, T_q, T_k]
    out     = weights @ v                                                 [B, H, T_q, d]

Shapes: q [B, H, T_q, d]; k and v [B, H, T_k, d]; mask broadcastable to [B, H, T_q, T_k], bool,
True = "this query may attend to this key". is_causal=True also hides the keys after each query
(use `causal_mask(t_q, t_k)`, which aligns the queries to the end of the keys) and combines with
a given mask by `&`.
"""

from __future__ import annotations

import math  # noqa: F401  (you will need these)

import torch.nn.functional as F  # noqa: F401
from torch import Tensor, nn

from mllm.transformer.attention import _check_mask, causal_mask  # noqa: F401


class ScaledDotProductAttention(nn.Module):
    """softmax(q k^T / sqrt(d) masked) v, written out; `fused=True` calls torch's kernel instead.

    `__init__` and `_fused` are the project's own (self.dropout: a probability, self.fused: a flag);
    you write `forward` only.
    """

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

        Returns the output [B, H, T_q, d] and, if `return_weights`, the weights [B, H, T_q, T_k]
        (else None). Steps:
          1. if a mask is given, `_check_mask(mask, (*q.shape[:-2], t_q, t_k))` (clear errors);
          2. if is_causal (and t_q > 1): mask = causal_mask(t_q, t_k, q.device), `&` the given mask;
          3. if self.fused and not return_weights: return self._fused(q, k, v, mask, is_causal=False), None;
          4. scores = q @ k^T / sqrt(d); masked scores -> -inf; softmax over the keys;
             a query with no allowed key must get all-zero weights, not NaN;
          5. dropout on the weights (F.dropout(w, self.dropout, self.training)), then @ v.
        """
        raise NotImplementedError("write ScaledDotProductAttention.forward (exercise 'attention')")
