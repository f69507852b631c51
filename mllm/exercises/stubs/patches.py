"""Exercise `patches`: the ViT's patch embedding.

Write `PatchEmbedding.forward` below; `__init__` is the project's own: self.patch_size = p,
self.in_channels = C and self.proj = nn.Linear(C * p * p, D). `python main.py exercise check patches`
runs the real tests (tests/test_vit.py): yours must equal Conv2d(C, D, kernel_size=p, stride=p) with the
same weights, patches in row-major order (left to right, then top to bottom).
"""

from __future__ import annotations

from torch import Tensor, nn


class PatchEmbedding(nn.Module):
    """[B, C, H, W] -> [B, N, D]: cut into p x p patches, flatten each (C, p, p), project linearly."""

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, H, W] -> [B, (H/p) * (W/p), D].

        1. if C != self.in_channels or H or W is not a multiple of p: raise ValueError(
           f"images must be [B, {C}, H, W] with H and W multiples of the patch size {p}; got shape {shape}");
        2. reshape to [B, C, H/p, p, W/p, p], permute to [B, H/p, W/p, C, p, p] (each patch's pixels
           together, in the order (C, p, p) that Conv2d's weight [D, C, p, p] uses);
        3. reshape to [B, N, C * p * p] and apply self.proj.
        """
        raise NotImplementedError("write PatchEmbedding.forward (exercise 'patches')")
