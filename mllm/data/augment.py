"""Batch augmentation as tensor ops: one gather per batch, no per-image Python."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad [B, C, H, W] by `padding`, then crop each image at its own random offset back to H x W."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b, 1, 1), generator=generator, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (b, 1, 1), generator=generator, device=x.device)
    rows = (dy + torch.arange(h, device=x.device)[None, :, None]).expand(b, h, w)
    cols = (dx + torch.arange(w, device=x.device)[None, None, :]).expand(b, h, w)
    batch = torch.arange(b, device=x.device)[:, None, None].expand(b, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image of [B, C, H, W] left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)

