"""Exercise `gpt_forward`: the GPT's causal forward pass with an optional image prefix.

Write `GPT.forward` below; the rest of the GPT is the project's own: self.tok_embed (nn.Embedding),
self.pos (LearnedPositionalEncoding: self.pos(x, offset) adds positions offset..offset+T-1),
self.decoder (TransformerDecoder: self.decoder(x, is_causal=True, cache=cache)), self.head (Linear D -> V,
tied to tok_embed). `python main.py exercise check gpt_forward` runs the real tests (tests/test_gpt.py).
"""

from __future__ import annotations

import torch  # noqa: F401  (you will need these)
import torch.nn.functional as F  # noqa: F401
from torch import Tensor, nn

from mllm.transformer import DecoderCache


class GPT(nn.Module):
    """tokens [B, T] (optionally after a prefix of embeddings [B, P, D]) -> next-token logits [B, T, V]."""

    def forward(self, idx: Tensor | None = None, targets: Tensor | None = None, prefix: Tensor | None = None,
                cache: DecoderCache | None = None, last_only: bool = False) -> tuple[Tensor, Tensor | None]:
        """idx [B, T] token ids, prefix [B, P, D] embeddings placed before them, targets [B, T] (-100 = ignore).

        Returns logits [B, T, V] for the token positions only ([B, 1, V] of the last position with
        `last_only`), and the mean cross-entropy over targets != -100 (None without targets).
          1. x = concat([prefix, tok_embed(idx)], dim=1) (either may be missing; neither: ValueError);
          2. h = decoder(pos(x, offset), is_causal=True, cache=cache), offset = 0 without a cache, len(cache)
             with one (the positions already cached);
          3. last_only: return head(h[:, -1:]), None;
          4. logits = head(h[:, P:]) (drop the prefix positions: they predict no token);
          5. loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100).
        """
        raise NotImplementedError("write GPT.forward (exercise 'gpt_forward')")
