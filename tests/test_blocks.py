import math

import pytest
import torch
from reference import ATOL, assert_same_grads, backward_with, copy_into_ours, decoder_pairs, encoder_pairs
from torch import nn

from mllm.transformer import (
    DecoderBlock,
    EncoderBlock,
    LayerNorm,
    LearnedPositionalEncoding,
    PositionwiseFeedForward,
    SinusoidalPositionalEncoding,
    TransformerDecoder,
)

D, H, FF = 32, 4, 64


def _assert_same_norm(a: nn.Module, b: nn.Module) -> None:
    """Two layer norms with the same weights give the same outputs and gradients."""
    x = torch.randn(4, 6, D) * 3 + 1
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out1, out2 = a(x1), b(x2)
    torch.testing.assert_close(out1, out2, atol=ATOL, rtol=1e-5)
    probe = torch.randn_like(out1)
    backward_with(out1, probe), backward_with(out2, probe)
    torch.testing.assert_close(x1.grad, x2.grad, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(a.weight.grad, b.weight.grad, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(a.bias.grad, b.bias.grad, atol=ATOL, rtol=1e-4)


def test_layernorm_matches_torch_outputs_and_gradients():
    ours, ref = LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
    with torch.no_grad():
        ref.weight.normal_(), ref.bias.normal_()
        ours.weight.copy_(ref.weight), ours.bias.copy_(ref.bias)
    _assert_same_norm(ours, ref)


def test_fused_layernorm_equals_hand_written():
    hand, fused = LayerNorm(D), LayerNorm(D, fused=True)
    with torch.no_grad():
        hand.weight.normal_(), hand.bias.normal_()
    fused.load_state_dict(hand.state_dict())
    _assert_same_norm(hand, fused)


def test_feed_forward_is_linear_gelu_linear():
    ffn = PositionwiseFeedForward(D, FF)
    x = torch.randn(2, 3, D)
    expected = torch.nn.functional.gelu(x @ ffn.linear1.weight.T + ffn.linear1.bias) @ ffn.linear2.weight.T
    torch.testing.assert_close(ffn(x), expected + ffn.linear2.bias)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        PositionwiseFeedForward(D, FF, activation="swish")


def test_sinusoidal_encoding_values():
    pe = SinusoidalPositionalEncoding(D, max_len=50)
    out = pe(torch.zeros(1, 50, D))[0]
    for pos, i in [(0, 0), (7, 2), (49, 10), (13, 15)]:
        angle = pos / 10000 ** (2 * i / D)
        assert out[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
        assert out[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    torch.testing.assert_close(pe(torch.zeros(1, 3, D), offset=7)[0], out[7:10])


def test_positional_encodings_reject_overlong_sequences():
    for pe in (SinusoidalPositionalEncoding(D, max_len=8), LearnedPositionalEncoding(D, max_len=8)):
        with pytest.raises(ValueError, match="exceed max_len=8"):
            pe(torch.zeros(1, 6, D), offset=3)
        with pytest.raises(ValueError, match=r"expects \[batch, seq, 32\], got shape \(1, 6, 16\)"):
            pe(torch.zeros(1, 6, 16))


def _inputs(*shapes):
    torch.manual_seed(1)
    return [torch.randn(*s, requires_grad=True) for s in shapes]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_block_matches_torch(norm_first, fused):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=norm_first)
    ours = EncoderBlock(D, H, FF, norm_first=norm_first, fused=fused)
    pairs = encoder_pairs(ours, ref)
    copy_into_ours(pairs)
    x, x_ref = _inputs((3, 6, D), (3, 6, D))
    with torch.no_grad():
        x_ref.copy_(x)
    keep = torch.arange(6)[None] < torch.tensor([6, 4, 1])[:, None]
    out = ours(x, mask=keep[:, None, None, :])
    ref_out = ref(x_ref, src_key_padding_mask=~keep)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=1e-4)
    probe = torch.randn_like(out)
    backward_with(out, probe), backward_with(ref_out, probe)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=ATOL, rtol=1e-4)
    assert_same_grads(pairs)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_block_matches_torch(norm_first, fused):
    torch.manual_seed(0)
    ref = nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, activation="gelu", batch_first=True,
                                     norm_first=norm_first)
    ours = DecoderBlock(D, H, FF, norm_first=norm_first, fused=fused)
    pairs = decoder_pairs(ours, ref)
    copy_into_ours(pairs)
    x, mem, x_ref, mem_ref = _inputs((3, 5, D), (3, 8, D), (3, 5, D), (3, 8, D))
    with torch.no_grad():
        x_ref.copy_(x), mem_ref.copy_(mem)
    mem_keep = torch.arange(8)[None] < torch.tensor([8, 5, 2])[:, None]
    out = ours(x, mem, memory_mask=mem_keep[:, None, None, :], is_causal=True)
    causal = nn.Transformer.generate_square_subsequent_mask(5)
    ref_out = ref(x_ref, mem_ref, tgt_mask=causal, memory_key_padding_mask=~mem_keep)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=1e-4)
    probe = torch.randn_like(out)
    backward_with(out, probe), backward_with(ref_out, probe)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(mem.grad, mem_ref.grad, atol=ATOL, rtol=1e-4)
    assert_same_grads(pairs)


@pytest.mark.parametrize("cross_attention", [True, False])
def test_decoder_cache_equals_full_pass(cross_attention):
    torch.manual_seed(0)
    dec = TransformerDecoder(2, D, H, FF, cross_attention=cross_attention).eval()
    x, mem = torch.randn(2, 9, D), torch.randn(2, 4, D)
    memory = mem if cross_attention else None
    full = dec(x, memory)
    cache = dec.new_cache()
    steps = [dec(x[:, :4], memory, cache=cache)] + [dec(x[:, t : t + 1], memory, cache=cache) for t in range(4, 9)]
    assert len(cache) == 9
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=ATOL, rtol=1e-5)


def test_decoder_block_with_cross_attention_needs_memory():
    with pytest.raises(ValueError, match="pass the encoder memory"):
        DecoderBlock(D, H, FF)(torch.randn(1, 3, D))
