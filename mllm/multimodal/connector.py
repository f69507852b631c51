"""The modality connector: ViT patch tokens -> image tokens in the language model's embedding space.

Optionally fewer tokens first: 2x2 average pooling (4x fewer, width kept) or pixel-shuffle (4x fewer, each
token the concatenation of a 2x2 neighbourhood, width x4, as nanoVLM does), then a linear layer or a
2-layer MLP to the language model's width.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS = ("none", "avgpool", "pixel_shuffle")


def grid_of(tokens: Tensor, factor: int) -> int:
    """The side g of the square patch grid of tokens [B, g*g, D], checked to be a multiple of `factor`."""
    g = math.isqrt(tokens.shape[1])
    if g * g != tokens.shape[1]:
        raise ValueError(f"patch tokens [B, N, D] must form a square grid, got N = {tokens.shape[1]}")
    if g % factor:
        raise ValueError(f"a {g}x{g} patch grid cannot be reduced by {factor}; use an image size whose grid "
                         f"(image_size / patch_size) is a multiple of {factor}, or reduce: none")
    return g


def pixel_shuffle(tokens: Tensor, factor: int = 2) -> Tensor:
    """[B, g*g, D] -> [B, (g/f)^2, D*f*f]: each output token holds an f x f block of neighbours."""
    b, _, d = tokens.shape
    g = grid_of(tokens, factor)
    x = tokens.reshape(b, g // factor, factor, g // factor, factor, d).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (g // factor) ** 2, factor * factor * d)


def avg_pool(tokens: Tensor, factor: int = 2) -> Tensor:
    """[B, g*g, D] -> [B, (g/f)^2, D]: the mean of each f x f block."""
    b, _, d = tokens.shape
    g = grid_of(tokens, factor)
    grid = tokens.transpose(1, 2).reshape(b, d, g, g)
    return F.avg_pool2d(grid, factor).flatten(2).transpose(1, 2)


class Connector(nn.Module):
    """patch tokens [B, N, d_vision] -> image tokens [B, N / f^2 (or N), d_text]."""

    def __init__(self, d_vision: int, d_text: int, kind: str = "mlp", reduce: str = "pixel_shuffle",
                 factor: int = 2):
        super().__init__()
        if kind not in ("mlp", "linear") or reduce not in REDUCTIONS:
            raise ValueError(f"connector kind must be mlp or linear and reduce one of {', '.join(REDUCTIONS)}; "
                             f"got {kind!r}, {reduce!r}")
        self.reduce, self.factor = reduce, factor
        d_in = d_vision * factor * factor if reduce == "pixel_shuffle" else d_vision
        self.proj = (nn.Linear(d_in, d_text) if kind == "linear" else
                     nn.Sequential(nn.Linear(d_in, d_text), nn.GELU(), nn.Linear(d_text, d_text)))

    def forward(self, patches: Tensor) -> Tensor:
        if self.reduce == "pixel_shuffle":
            patches = pixel_shuffle(patches, self.factor)
        elif self.reduce == "avgpool":
            patches = avg_pool(patches, self.factor)
        return self.proj(patches)

    def num_tokens(self, num_patches: int) -> int:
        return num_patches if self.reduce == "none" else num_patches // self.factor**2
