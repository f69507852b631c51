import itertools
import math

import pytest
import torch
from reference import ATOL, assert_same_grads, backward_with, copy_into_ours, mha_pairs
from torch import nn

from mllm.transformer import KVCache, MultiHeadAttention, ScaledDotProductAttention, causal_mask

B, H, D = 3, 4, 32


def _qkv(t_q=5, t_k=7, d=8):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, H, t, d, generator=g) for t in (t_q, t_k, t_k)]


def _pad_mask(t_k, lengths=(7, 4, 2)):
    return (torch.arange(t_k)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]


def test_sdpa_matches_the_formula():
    q, k, v = _qkv()
    out, w = ScaledDotProductAttention()(q, k, v, return_weights=True)
    expected_w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(out, expected_w @ v)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, 5))


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("masking", ["none", "padding", "causal", "padding+causal", "explicit-causal"])
def test_fused_equals_hand_written(masking, train):
    q, k, v = _qkv(t_q=7, t_k=7)
    mask = _pad_mask(7) if "padding" in masking else None
    if masking == "explicit-causal":
        mask = causal_mask(7, 7)
    outs = []
    for fused in (False, True):
        attn = ScaledDotProductAttention(dropout=0.0, fused=fused).train(train)
        outs.append(attn(q, k, v, mask=mask, is_causal="causal" in masking and masking != "explicit-causal")[0])
    torch.testing.assert_close(outs[0], outs[1], atol=ATOL, rtol=1e-5)


def test_fused_dropout_is_active_in_train_only():
    q, k, v = _qkv()
    attn = ScaledDotProductAttention(dropout=0.5, fused=True)
    ref = ScaledDotProductAttention(dropout=0.5)
    assert not torch.allclose(attn.train()(q, k, v)[0], ref.eval()(q, k, v)[0])
    torch.testing.assert_close(attn.eval()(q, k, v)[0], ref.eval()(q, k, v)[0], atol=ATOL, rtol=1e-5)


def test_padded_keys_get_zero_weight_and_do_not_change_outputs():
    q, k, v = _qkv()
    mask = _pad_mask(7)
    out, w = ScaledDotProductAttention()(q, k, v, mask=mask, return_weights=True)
    assert (w.masked_select(~mask.expand_as(w)) == 0).all()
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 4:], v2[1, :, 4:] = 100.0, -100.0  # change only padded keys of row 1
    out2 = ScaledDotProductAttention()(q, k2, v2, mask=mask)[0]
    torch.testing.assert_close(out, out2)


@pytest.mark.parametrize("fused", [False, True])
def test_causality(fused):
    q, k, v = _qkv(t_q=7, t_k=7)
    attn = ScaledDotProductAttention(fused=fused)
    out = attn(q, k, v, is_causal=True)[0]
    for t in range(6):
        k2, v2, q2 = k.clone(), v.clone(), q.clone()
        k2[:, :, t + 1:] += 1.0
        v2[:, :, t + 1:] -= 1.0
        q2[:, :, t + 1:] *= 3.0
        out2 = attn(q2, k2, v2, is_causal=True)[0]
        torch.testing.assert_close(out[:, :, : t + 1], out2[:, :, : t + 1])
        assert not torch.allclose(out[:, :, t + 1:], out2[:, :, t + 1:])


@pytest.mark.parametrize("cross", [False, True])
def test_mha_matches_torch_outputs_and_gradients(cross):
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(D, H, batch_first=True)
    ours = MultiHeadAttention(D, H)
    pairs = mha_pairs(ours, ref)
    copy_into_ours(pairs)
    x = torch.randn(B, 5, D, requires_grad=True)
    mem = torch.randn(B, 9, D, requires_grad=True) if cross else x
    lengths = torch.tensor([9, 6, 3]) if cross else torch.tensor([5, 3, 2])
    keep = torch.arange(mem.shape[1])[None] < lengths[:, None]  # [B, T_k]
    ref_out, ref_w = ref(x, mem, mem, key_padding_mask=~keep, average_attn_weights=False)
    out, w = ours(x, None if not cross else mem, mask=keep[:, None, None, :], return_weights=True)
    torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=1e-4)
    probe = torch.randn_like(out)
    backward_with(ref_out, probe)
    inputs = [x, mem] if cross else [x]
    ref_grads = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    backward_with(out, probe)
    for t, g in zip(inputs, ref_grads, strict=True):
        torch.testing.assert_close(t.grad, g, atol=ATOL, rtol=1e-4)
    assert_same_grads(pairs)


@pytest.mark.parametrize("fused", [False, True])
def test_cache_step_by_step_equals_full_pass(fused):
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, fused=fused).eval()
    x = torch.randn(B, 10, D)
    full = mha(x, is_causal=True)[0]
    cache = KVCache()
    chunks = [x[:, :3]] + [x[:, t : t + 1] for t in range(3, 10)]  # a prompt, then one step at a time
    steps = torch.cat([mha(c, is_causal=True, cache=cache)[0] for c in chunks], dim=1)
    assert len(cache) == 10
    torch.testing.assert_close(steps, full, atol=ATOL, rtol=1e-5)


def test_bad_inputs_name_the_shapes():
    with pytest.raises(ValueError, match="d_model=30 is not divisible by num_heads=4"):
        MultiHeadAttention(30, 4)
    mha = MultiHeadAttention(D, H)
    with pytest.raises(ValueError, match=r"query must be \[batch, seq, d_model=32\], got shape \(2, 5, 16\)"):
        mha(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match=r"key_value must be .*got shape \(2, 6, 8\)"):
        mha(torch.randn(2, 5, D), torch.randn(2, 6, 8))
    with pytest.raises(ValueError, match=r"mask of shape \(5, 4\) does not broadcast .*\[2, 4, 5, 6\]"):
        mha(torch.randn(2, 5, D), torch.randn(2, 6, D), mask=torch.ones(5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="must be bool"):
        mha(torch.randn(2, 5, D), mask=torch.ones(5, 5))


def _mask_with_empty_rows(t_q=5, t_k=7):
    """[B, 1, T_q, T_k] padding mask where some queries may attend to no key: a whole example
    (length 0) and two single queries."""
    mask = _pad_mask(t_k, lengths=(7, 4, 0))[:, :, :1].expand(B, 1, t_q, t_k).clone()
    mask[0, 0, 2] = False
    mask[1, 0, 4] = False
    return mask


def _attention_by_hand(q, k, v, mask):
    """Loops over the queries; a query with no allowed key gets output zero (and no gradient path).
    Returns the output [B, H, T_q, d] and the weights [B, H, T_q, T_k]."""
    out_rows, weight_rows = [], []
    for b, h, i in itertools.product(range(q.shape[0]), range(q.shape[1]), range(q.shape[2])):
        allowed = mask[b, 0, i]
        w = torch.zeros(k.shape[2])
        if allowed.any():
            w = w.index_put((allowed.nonzero()[:, 0],),
                            torch.softmax(k[b, h, allowed] @ q[b, h, i] / math.sqrt(q.shape[-1]), dim=0))
        weight_rows.append(w)
        out_rows.append(w @ v[b, h])
    shape = (*q.shape[:3], -1)
    return torch.stack(out_rows).view(shape), torch.stack(weight_rows).view(shape)


def test_a_query_with_no_allowed_key_gets_zeros_not_nan():
    mask = _mask_with_empty_rows()
    empty = ~mask.any(-1)  # [B, 1, T_q]
    assert empty.sum() == 7
    leaves = [t.requires_grad_() for t in _qkv()]
    probe = torch.randn(B, H, 5, 8, generator=torch.Generator().manual_seed(1))
    ref_out, ref_w = _attention_by_hand(*leaves, mask)
    backward_with(ref_out, probe)
    ref_grads = [t.grad.clone() for t in leaves]
    outs, grads = [], []
    for fused in (False, True):
        for t in leaves:
            t.grad = None
        out = ScaledDotProductAttention(fused=fused)(*leaves, mask=mask)[0]
        assert (out[empty.expand(B, H, 5)] == 0).all(), f"fused={fused}"
        torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=1e-5)
        backward_with(out, probe)
        for t, g in zip(leaves, ref_grads, strict=True):
            assert torch.isfinite(t.grad).all(), f"fused={fused}"
            torch.testing.assert_close(t.grad, g, atol=ATOL, rtol=1e-4)
        assert (leaves[0].grad[empty.expand(B, H, 5)] == 0).all()  # an empty query has no gradient path
        outs.append(out.detach())
        grads.append([t.grad for t in leaves])
    torch.testing.assert_close(outs[0], outs[1], atol=ATOL, rtol=1e-5)
    for g_hand, g_fused in zip(*grads, strict=True):
        torch.testing.assert_close(g_hand, g_fused, atol=ATOL, rtol=1e-4)
    with torch.no_grad():
        w = ScaledDotProductAttention()(*leaves, mask=mask, return_weights=True)[1]
    assert (w[empty.expand(B, H, 5)] == 0).all()
    torch.testing.assert_close(w, ref_w, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), (~empty).float().expand(B, H, 5))
