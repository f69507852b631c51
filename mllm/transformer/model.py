"""Stacks of blocks (encoder, decoder) and the full encoder-decoder Transformer."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .attention import KVCache, padding_mask
from .blocks import DecoderBlock, EncoderBlock
from .layers import LayerNorm, LearnedPositionalEncoding, SinusoidalPositionalEncoding


class TransformerEncoder(nn.Module):
    """N encoder blocks and a final norm. [B, T, D] embeddings -> [B, T, D]."""

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 activation: str = "gelu", norm_first: bool = True, final_norm: bool = True,
                 eps: float = 1e-5, fused: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(
            EncoderBlock(d_model, num_heads, d_ff, dropout, activation, norm_first, eps, fused)
            for _ in range(num_layers))
        self.norm = LayerNorm(d_model, eps, fused=fused) if final_norm else nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class DecoderCache:
    """Per-layer key/value caches of a decoder, for incremental decoding."""

    def __init__(self, num_layers: int):
        self.layers = [(KVCache(), KVCache()) for _ in range(num_layers)]

    def __len__(self) -> int:
        """Positions already decoded."""
        return len(self.layers[0][0])

    def record_attention(self) -> DecoderCache:
        """Keep every layer's self-attention weights from now on (`layers[i][0].weights`); returns self."""
        for self_cache, _ in self.layers:
            self_cache.record_weights()
        return self

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` [B'] of every layer's caches (beam search)."""
        for self_cache, cross_cache in self.layers:
            self_cache.reorder(index)
            cross_cache.reorder(index)


class TransformerDecoder(nn.Module):
    """N decoder blocks and a final norm. With `cross_attention=False`, a GPT-style decoder."""

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 activation: str = "gelu", norm_first: bool = True, cross_attention: bool = True,
                 final_norm: bool = True, eps: float = 1e-5, fused: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderBlock(d_model, num_heads, d_ff, dropout, activation, norm_first, cross_attention, eps, fused)
            for _ in range(num_layers))
        self.norm = LayerNorm(d_model, eps, fused=fused) if final_norm else nn.Identity()

    def new_cache(self) -> DecoderCache:
        return DecoderCache(len(self.layers))

    def forward(self, x: Tensor, memory: Tensor | None = None, self_mask: Tensor | None = None,
                memory_mask: Tensor | None = None, is_causal: bool = True, cache: DecoderCache | None = None) -> Tensor:
        """x [B, T, D], memory [B, S, D] -> [B, T, D]. With `cache`, x holds only the new positions."""
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, self_mask, memory_mask, is_causal, None if cache is None else cache.layers[i])
        return self.norm(x)


class Transformer(nn.Module):
    """Encoder-decoder Transformer for sequence-to-sequence tasks (Vaswani et al., 2017).

    src [B, S] and tgt [B, T] token ids -> logits [B, T, tgt_vocab]. Padding (pad_id) is masked.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, d_model: int = 128, num_heads: int = 4,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2, d_ff: int = 512, dropout: float = 0.0,
                 max_len: int = 512, positional: str = "sinusoidal", norm_first: bool = True,
                 activation: str = "gelu", pad_id: int | None = None, fused: bool = False):
        super().__init__()
        if positional not in ("sinusoidal", "learned"):
            raise ValueError(f"positional must be 'sinusoidal' or 'learned', got {positional!r}")
        pos = SinusoidalPositionalEncoding if positional == "sinusoidal" else LearnedPositionalEncoding
        self.d_model, self.pad_id = d_model, pad_id
        self.src_embed = nn.Embedding(src_vocab, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model)
        self.src_pos = pos(d_model, max_len, dropout)
        self.tgt_pos = pos(d_model, max_len, dropout)
        common = dict(d_model=d_model, num_heads=num_heads, d_ff=d_ff, dropout=dropout, activation=activation,
                      norm_first=norm_first, fused=fused)
        self.encoder = TransformerEncoder(num_encoder_layers, **common)
        self.decoder = TransformerDecoder(num_decoder_layers, **common)
        self.head = nn.Linear(d_model, tgt_vocab)

    def src_mask(self, src: Tensor) -> Tensor | None:
        return None if self.pad_id is None else padding_mask(src, self.pad_id)

    def encode(self, src: Tensor) -> Tensor:
        """[B, S] -> memory [B, S, D]"""
        x = self.src_pos(self.src_embed(src) * math.sqrt(self.d_model))
        return self.encoder(x, self.src_mask(src))

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None,
               cache: DecoderCache | None = None) -> Tensor:
        """[B, T] target ids (only the new ones with a cache) -> logits [B, T, V]"""
        offset = 0 if cache is None else len(cache)
        x = self.tgt_pos(self.tgt_embed(tgt) * math.sqrt(self.d_model), offset)
        self_mask = None
        if self.pad_id is not None and cache is None:
            self_mask = padding_mask(tgt, self.pad_id)
        return self.head(self.decoder(x, memory, self_mask, src_mask, is_causal=True, cache=cache))

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        return self.decode(tgt, self.encode(src), self.src_mask(src))

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, bos_id: int, max_len: int) -> Tensor:
        """Greedy decoding with the key/value cache: [B, S] -> [B, max_len] (BOS excluded)."""
        memory, src_mask = self.encode(src), self.src_mask(src)
        cache = self.decoder.new_cache()
        token = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        out = []
        for _ in range(max_len):
            token = self.decode(token, memory, src_mask, cache)[:, -1:].argmax(-1)
            out.append(token)
        return torch.cat(out, dim=1)
