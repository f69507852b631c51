"""Exercise `connector`: pixel-unshuffle (space-to-depth) of the ViT's patch grid, then the MLP.

Write `pixel_shuffle` (the project's name; torch calls this operation pixel_unshuffle: space to depth) and
`Connector.forward` below. `Connector.__init__` is the project's own: self.reduce ("none", "avgpool" or
"pixel_shuffle"), self.factor = f, self.proj (Linear, or Linear-GELU-Linear, from D * f * f to the GPT's
width). `python main.py exercise check connector` runs the real tests (tests/test_mllm.py).
"""

from __future__ import annotations

from torch import Tensor, nn

from mllm.multimodal.connector import avg_pool, grid_of  # noqa: F401  (grid_of: the checked grid side)


def pixel_shuffle(tokens: Tensor, factor: int = 2) -> Tensor:
    """[B, g*g, D] -> [B, (g/f)^2, D*f*f]: each output token holds an f x f block of neighbours.

    Token (r, c) of the grid is tokens[:, r * g + c]. Output token (R, C) concatenates, in row-major
    order, the tokens (f R + i, f C + j) for i, j in 0..f-1.
      1. g = grid_of(tokens, factor) (raises the error the tests expect for a grid that does not divide);
      2. reshape to [B, g/f, f, g/f, f, D] and permute to [B, g/f, g/f, f, f, D];
      3. reshape to [B, (g/f)^2, f*f*D].
    """
    raise NotImplementedError("write pixel_shuffle (exercise 'connector')")


class Connector(nn.Module):
    """patch tokens [B, N, d_vision] -> image tokens [B, N / f^2 (or N), d_text]."""

    def forward(self, patches: Tensor) -> Tensor:
        """Reduce the tokens (pixel_shuffle, avg_pool or neither, by self.reduce), then self.proj."""
        raise NotImplementedError("write Connector.forward (exercise 'connector')")
