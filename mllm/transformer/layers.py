"""Feed-forward, positional encodings and layer normalisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


class PositionwiseFeedForward(nn.Module):
    """Linear(d_model -> d_ff), activation, dropout, Linear(d_ff -> d_model), applied per position."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu", bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.activation = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """[..., d_model] -> [..., d_model]"""
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the last dimension (biased variance).

    `fused=True` calls torch's single-kernel layer_norm (tested equal): the written-out version
    costs nine elementwise passes over the activations, which dominates small models on a CPU.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True, fused: bool = False):
        super().__init__()
        self.eps, self.fused = eps, fused
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"LayerNorm({self.weight.shape[0]}) got input of shape {tuple(x.shape)}; "
                             f"the last dimension must be the model width {self.weight.shape[0]}")
        if self.fused:
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.weight
        return y if self.bias is None else y + self.bias


def _check_positions(x: Tensor, offset: int, max_len: int, d_model: int) -> None:
    if x.shape[-1] != d_model:
        raise ValueError(f"positional encoding expects [batch, seq, {d_model}], got shape {tuple(x.shape)}")
    if offset + x.shape[1] > max_len:
        raise ValueError(f"positions {offset}..{offset + x.shape[1] - 1} exceed max_len={max_len}; "
                         f"raise max_len or shorten the sequence")


class SinusoidalPositionalEncoding(nn.Module):
    """Adds PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...) (Vaswani et al.)."""

    def __init__(self, d_model: int, max_len: int = 4096, dropout: float = 0.0):
        super().__init__()
        pos = torch.arange(max_len, dtype=torch.float32)[:, None]
        inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * inv_freq)
        pe[:, 1::2] = torch.cos(pos * inv_freq[: d_model // 2])
        self.register_buffer("pe", pe, persistent=False)
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x [B, T, D]; positions start at `offset` (tokens already in a cache)."""
        _check_positions(x, offset, self.max_len, self.d_model)
        return self.dropout(x + self.pe[offset : offset + x.shape[1]])


class LearnedPositionalEncoding(nn.Module):
    """Adds a trained vector per position (GPT-2, ViT)."""

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.0, init_std: float = 0.02):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * init_std)
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x [B, T, D]; positions start at `offset`."""
        _check_positions(x, offset, self.max_len, self.d_model)
        return self.dropout(x + self.weight[offset : offset + x.shape[1]])
