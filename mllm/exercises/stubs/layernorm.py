"""Exercise `layernorm`: layer normalisation over the last dimension.

Write `LayerNorm.forward` below; `__init__` is the project's own: self.weight [D] (ones), self.bias [D]
(zeros, or None with bias=False), self.eps, self.fused. `python main.py exercise check layernorm` runs
the real tests (tests/test_blocks.py), which compare yours with torch.nn.LayerNorm, outputs and gradients.

    y = (x - mean) / sqrt(var + eps) * weight + bias      mean and var over the last dimension,
                                                          var biased (divide by D, not D - 1)
"""

from __future__ import annotations

import torch  # noqa: F401  (you will need these)
import torch.nn.functional as F  # noqa: F401
from torch import Tensor, nn


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dimension (biased variance)."""

    def forward(self, x: Tensor) -> Tensor:
        """x [..., D] -> [..., D].

        1. if x.shape[-1] != D: raise ValueError naming the shape (the tests only need the right numbers);
        2. if self.fused: return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps);
        3. mean and biased variance over dim=-1 (keepdim=True), normalise, scale by weight, add bias
           (when it is not None). torch.rsqrt(var + eps) is 1 / sqrt(var + eps).
        """
        raise NotImplementedError("write LayerNorm.forward (exercise 'layernorm')")
