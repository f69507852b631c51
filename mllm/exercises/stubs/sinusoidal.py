"""Exercise `sinusoidal`: the sinusoidal positional encoding of "Attention Is All You Need".

Write `SinusoidalPositionalEncoding.__init__` below: build the table pe [max_len, d_model] with

    pe[pos, 2i]     = sin(pos / 10000^(2i / d))
    pe[pos, 2i + 1] = cos(pos / 10000^(2i / d))

and keep it as a buffer. `forward` is the project's own: it adds pe[offset : offset + T] to x [B, T, D]
after checking the shapes (so it needs self.pe, self.d_model, self.max_len and self.dropout).
`python main.py exercise check sinusoidal` runs the real tests (tests/test_blocks.py).
"""

from __future__ import annotations

import math  # noqa: F401  (you will need these)

import torch  # noqa: F401
from torch import nn


class SinusoidalPositionalEncoding(nn.Module):
    """Adds PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...) (Vaswani et al.)."""

    def __init__(self, d_model: int, max_len: int = 4096, dropout: float = 0.0):
        """1. super().__init__();
        2. pos = [max_len, 1] positions; inv_freq = 10000^(-2i/d) for i = 0 .. d/2 - 1
           (hint: torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model)));
        3. pe = zeros(max_len, d_model); even columns sin(pos * inv_freq), odd columns cos(...);
        4. self.register_buffer("pe", pe, persistent=False); self.d_model, self.max_len = d_model, max_len;
           self.dropout = nn.Dropout(dropout).
        """
        raise NotImplementedError("write SinusoidalPositionalEncoding.__init__ (exercise 'sinusoidal')")
