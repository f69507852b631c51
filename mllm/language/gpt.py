"""A decoder-only GPT on our Transformer core, with cached generation and an optional embedding prefix."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllm.checkpoint import load_checkpoint, load_weights
from mllm.transformer import DecoderCache, LearnedPositionalEncoding, TransformerDecoder

from .decoding import extend, filter_logits, sample
from .tokenizer import CharTokenizer

__all__ = ["GPT", "GPTConfig", "filter_logits", "load_gpt", "sample"]


@dataclass
class GPTConfig:
    vocab_size: int
    context: int = 256
    d_model: int = 384
    num_layers: int = 6
    num_heads: int = 6
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    fused: bool = True  # torch's fused attention kernel; the hand-written path is tested equal


class GPT(nn.Module):
    """tokens [B, T] (optionally after a prefix of embeddings [B, P, D]) -> next-token logits [B, T, V]."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = LearnedPositionalEncoding(cfg.d_model, cfg.context, cfg.dropout)
        self.decoder = TransformerDecoder(cfg.num_layers, cfg.d_model, cfg.num_heads, int(cfg.mlp_ratio * cfg.d_model),
                                          cfg.dropout, cross_attention=False, fused=cfg.fused)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_embed.weight  # weight tying
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("out_proj.weight", "linear2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.num_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def forward(self, idx: Tensor | None = None, targets: Tensor | None = None, prefix: Tensor | None = None,
                cache: DecoderCache | None = None, last_only: bool = False) -> tuple[Tensor, Tensor | None]:
        """idx [B, T] token ids, prefix [B, P, D] embeddings placed before them, targets [B, T] (-100 = ignore).

        Returns logits [B, T, V] for the token positions ([B, 1, V] with `last_only`), and the mean
        cross-entropy if targets are given. With a cache, idx holds only the new tokens.
        """
        parts = [] if prefix is None else [prefix]
        if idx is not None:
            parts.append(self.tok_embed(idx))
        if not parts:
            raise ValueError("GPT.forward needs token ids, a prefix, or both")
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        h = self.decoder(self.pos(x, 0 if cache is None else len(cache)), is_causal=True, cache=cache)
        if last_only:
            return self.head(h[:, -1:]), None
        n_prefix = 0 if prefix is None else prefix.shape[1]
        logits = self.head(h[:, n_prefix:])
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return logits, loss

    def shared_prefix(self, prefix: Tensor, rows_of: Tensor, idx: Tensor | None = None
                      ) -> tuple[DecoderCache, Tensor]:
        """A prefix [I, P, D] (and tokens idx [I, T] after it) run once per row into a new cache, then handed to B
        rows, row b taking row rows_of[b]'s keys and values: (the cache, the last position's logits [B, 1, V]).
        Several sequences after one image pay for its positions once; with gradients, they add up."""
        cache = self.decoder.new_cache()
        logits, _ = self(idx, prefix=prefix, cache=cache, last_only=True)
        cache.reorder(rows_of)
        return cache, logits[rows_of]

    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, prefix: Tensor | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None, stop_token: int | None = None) -> Tensor:
        """Extend idx [B, T] by up to max_new_tokens sampled tokens -> [B, T + new] (`decoding.extend`)."""
        return extend(self, idx, max_new_tokens, temperature, top_k, top_p, prefix, use_cache, generator, stop_token)


def load_gpt(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, CharTokenizer]:
    """The GPT (eval mode) and tokenizer of a checkpoint written by `train-llm`; needs no training code."""
    state = load_checkpoint(path, "gpt", device)
    model = GPT(GPTConfig(**state["extra"]["model_config"]))
    load_weights(model, state["model"], state["path"])
    return model.to(device).eval(), CharTokenizer.from_state_dict(state["extra"]["tokenizer"])
