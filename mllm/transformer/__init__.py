"""The hand-written Transformer core shared by every model in the project."""

from .attention import KVCache, MultiHeadAttention, ScaledDotProductAttention, causal_mask, padding_mask
from .blocks import DecoderBlock, EncoderBlock
from .layers import LayerNorm, LearnedPositionalEncoding, PositionwiseFeedForward, SinusoidalPositionalEncoding
from .model import DecoderCache, Transformer, TransformerDecoder, TransformerEncoder

__all__ = [
    "KVCache", "MultiHeadAttention", "ScaledDotProductAttention", "causal_mask", "padding_mask",
    "DecoderBlock", "EncoderBlock", "LayerNorm", "LearnedPositionalEncoding", "PositionwiseFeedForward",
    "SinusoidalPositionalEncoding", "DecoderCache", "Transformer", "TransformerDecoder", "TransformerEncoder",
]
