"""The captioner's grounding: the hallucination and variety diagnostics on hand-made captions, per-word attention
maps against a hand computation, the ViT adapted to another image and patch size, and the grounding loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from mllm.evaluation.diagnostics import caption_diagnostics, hallucination, human_hallucination, objects_in
from mllm.language.decoding import attention_of
from mllm.multimodal.mllm import Captioner, CaptionerConfig, content_word_loss
from mllm.multimodal.words import content_vocabulary, word_targets
from mllm.rl.sampling import sample_per_image
from mllm.transformer.attention import causal_mask
from mllm.vision.vit import ViT, ViTConfig, resize_matrix

VISION = {"image_size": 16, "patch_size": 2, "d_model": 16, "num_layers": 1, "num_heads": 2}
TEXT = {"vocab_size": 30, "context": 40, "d_model": 32, "num_layers": 2, "num_heads": 4}


# ---- object hallucination and variety -------------------------------------------------------------
def test_objects_synonyms_plurals_and_people_as_one_object():
    assert objects_in("Two puppies chase a ball past the benches .") == ["dog", "ball", "bench"]
    assert objects_in("A man , a girl and three children .") == ["person", "person", "person"]
    assert objects_in("") == [] and objects_in("a blue sky") == []


def test_hallucination_counts_per_mention_and_per_caption():
    refs = [["A dog runs on the grass .", "A brown puppy plays ."],
            ["A girl rides a bike .", "A child on a bicycle ."],
            ["Snow on the mountain ."]]
    captions = ["Two dogs with a ball .",  # dog named by the references (plural, synonym); ball is not
                "A man on a bicycle .",   # a man vs a girl and a child: people are one object; bicycle = bike
                ""]                       # an empty caption names nothing
    h = hallucination(captions, refs)
    assert (h["mentions"], h["hallucinated_mentions"]) == (4, 1)
    assert h["per_mention"] == pytest.approx(1 / 4) and h["per_caption"] == pytest.approx(1 / 3)
    assert h["most_hallucinated"] == [("ball", 1)]
    assert hallucination([""], [["a dog"]])["per_mention"] == 0.0
    with pytest.raises(ValueError, match="one list per caption"):
        hallucination(["a dog"], [])


def test_human_hallucination_judges_each_reference_against_the_others():
    h = human_hallucination([["a dog on grass", "a dog and a ball", "a puppy"]])
    # "a dog and a ball" names a ball the other two do not: 1 of 3 captions, 1 of 4 mentions
    assert h["captions"] == 3 and h["per_caption"] == pytest.approx(1 / 3)
    assert h["per_mention"] == pytest.approx(1 / 4)


def test_caption_diagnostics():
    captions = ["A dog runs .", "a dog runs", "A man on a", "A cat sleeps on the"]
    d = caption_diagnostics(captions, train_captions=["a dog runs ."])
    assert d["distinct"] == 3 and d["top_share"] == pytest.approx(0.5) and d["top_caption"] == "a dog runs"
    assert d["bad_endings"] == pytest.approx(0.5) and d["copied"] == pytest.approx(0.5)
    assert d["vocabulary"] == len({"a", "dog", "runs", "man", "on", "cat", "sleeps", "the"})


# ---- per-word attention maps ----------------------------------------------------------------------
def _captioner(**kw) -> Captioner:
    torch.manual_seed(0)
    return Captioner(CaptionerConfig(VISION, TEXT, bos_id=0, eos_id=1, **kw)).eval()


def test_attention_maps_equal_a_hand_computation_and_sum_to_one():
    model = _captioner()
    images = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    ids, att = model.generate(images, max_len=6, attention=True)
    prefix = model.image_tokens(images)
    p, layers = prefix.shape[1], model.gpt.cfg.num_layers
    assert att.maps.shape == (3, layers, ids.shape[1], p) and p == 16
    assert torch.allclose(att.maps.sum(-1), torch.ones(3, layers, ids.shape[1]), atol=1e-5)
    assert torch.allclose(att.combined, att.maps.mean(1))
    # layer 1 by hand: its queries and keys from the input of its attention, heads averaged, the rows of the
    # positions that predicted each token (BOS, then the tokens), renormalised over the image tokens
    gpt = model.gpt
    inputs = torch.cat([torch.zeros_like(ids[:, :1]), ids[:, :-1]], dim=1)
    with torch.no_grad():
        x = gpt.pos(torch.cat([prefix, gpt.tok_embed(inputs)], dim=1))
        x = gpt.decoder.layers[0](x, is_causal=True)
        block = gpt.decoder.layers[1]
        h = block.self_sub.norm(x)
        attn = block.self_attn
        q, k = attn.split_heads(attn.q_proj(h)), attn.split_heads(attn.k_proj(h))
        scores = (q @ k.transpose(-2, -1) / math.sqrt(attn.d_head)).masked_fill(~causal_mask(x.shape[1], x.shape[1]),
                                                                              float("-inf"))
        weights = scores.softmax(-1).mean(1)[:, p:, :p]  # [B, L, P]
    expected = weights / weights.sum(-1, keepdim=True)
    assert torch.allclose(att.maps[:, 1], expected, atol=1e-5)
    assert torch.allclose(att.mass[:, 1], weights.sum(-1), atol=1e-5)
    # the same maps from one teacher-forced pass over the decoded tokens (what beam search uses)
    again = attention_of(gpt, prefix, ids, 0)
    assert torch.allclose(again.maps, att.maps, atol=1e-5)


def test_attention_needs_image_tokens():
    model = _captioner(blind=True)
    with pytest.raises(ValueError, match="blind model"):
        model.generate(torch.zeros(1, 16, 16, 3, dtype=torch.uint8), max_len=3, attention=True)


# ---- the ViT at another size ----------------------------------------------------------------------
@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_vit_adapted_to_its_own_size_is_unchanged(stem):
    torch.manual_seed(0)
    vit = ViT(ViTConfig(image_size=16, patch_size=4, d_model=16, num_layers=1, num_heads=2, stem=stem)).eval()
    x = torch.randn(2, 3, 16, 16)
    same = vit.adapted(16, 4)
    assert torch.equal(same(x), vit(x)) and torch.equal(same.tokens(x), vit.tokens(x))


def test_patch_kernel_resize_embeds_a_resized_patch_as_the_original():
    torch.manual_seed(0)
    vit = ViT(ViTConfig(image_size=16, patch_size=4, d_model=16, num_layers=1, num_heads=2)).eval()
    big = vit.adapted(32, 8)
    assert big.grid == vit.grid and big.pos.weight.shape == vit.pos.weight.shape
    x = torch.randn(2, 3, 16, 16)
    patches = x.reshape(2, 3, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(-1, 3, 16)
    resized = (patches @ resize_matrix(4, 8)).reshape(2, 4, 4, 3, 8, 8).permute(0, 3, 1, 4, 2, 5).reshape(2, 3, 32, 32)
    assert torch.allclose(big.patch_embed(resized), vit.patch_embed(x), atol=1e-5)
    assert torch.allclose(big(resized), vit(x), atol=1e-4)  # same grid: the whole model agrees
    finer = vit.adapted(32, 4)  # more pixels, same patch: a 8x8 grid, positions interpolated
    assert finer.grid == 8 and finer.tokens(torch.randn(1, 3, 32, 32)).shape == (1, 65, 16)


# ---- the grounding objective ----------------------------------------------------------------------
def test_content_words_and_targets():
    captions = [["a", "dog", "runs"], ["the", "dog", "jumps"], ["a", "man", "runs", "in", "the", "park"]]
    assert content_vocabulary(captions, 3) == ["dog", "runs", "jumps"]  # by count, ties by word
    targets = word_targets([[["a", "dog"], ["dog", "jumps"]], [["runs"]]], ["dog", "runs", "jumps"])
    assert torch.equal(targets, torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))


def test_grounding_loss_against_a_direct_computation():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    p = torch.sigmoid(logits)
    direct = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean()
    assert content_word_loss(logits, targets).item() == pytest.approx(direct.item(), rel=1e-6)
    per_image = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean(1)
    tokens = torch.tensor([3.0, 5.0])  # weighted by each caption's tokens: a sum, exact under any batch split
    assert content_word_loss(logits, targets, tokens).item() == pytest.approx((per_image * tokens).sum().item())
    model = _captioner(aux_words=3)
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    captions = torch.randint(2, 30, (2, 5))
    logits_caps, _, words = model(captions, images=images, words=True)
    expected = model.word_head(model.image_tokens(images).mean(1))
    assert torch.allclose(words, expected) and torch.equal(logits_caps, model(captions, images=images)[0])
    assert F.binary_cross_entropy_with_logits(words, targets).item() == pytest.approx(
        content_word_loss(words, targets).item())


# ---- grounded decoding ------------------------------------------------------------------------------
def _images(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))


def test_grounding_bias_is_the_heads_log_probability_at_each_content_word():
    model = _captioner(aux_words=3, aux_word_ids=(5, 7, 9))
    prefix = model.image_tokens(_images(2))
    bias = model.grounding_bias(prefix, 2.0)
    assert bias.shape == (2, 30)
    expected = 2.0 * F.logsigmoid(model.word_logits(prefix))
    assert torch.allclose(bias[:, [5, 7, 9]], expected)
    others = [i for i in range(30) if i not in (5, 7, 9)]
    assert (bias[:, others] == 0).all() and (bias <= 0).all()
    with pytest.raises(ValueError, match="grounded decoding needs the grounding head"):
        _captioner().generate(_images(1), max_len=4, grounding=1.0)
    with pytest.raises(ValueError, match="no word ids"):
        _captioner(aux_words=3).generate(_images(1), max_len=4, grounding=1.0)
    with pytest.raises(ValueError, match="grounding must be >= 0"):
        model.generate(_images(1), max_len=4, grounding=-1.0)
    with pytest.raises(ValueError, match="sampling takes none"):
        model.generate(_images(1), max_len=4, strategy="sample", grounding=1.0)
    unk = _captioner(aux_words=3, aux_word_ids=(5, 2, 2), banned_ids=(0, 2))  # two words unknown to the vocabulary
    assert (unk.grounding_bias(prefix, 1.0)[:, 2] == 0).all()


def test_grounded_decoding_adds_the_bias_to_every_choice():
    model = _captioner(aux_words=3, aux_word_ids=(5, 7, 9))
    with torch.no_grad():  # large weights: greedy choices far from ties
        for p in model.gpt.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    images = _images(3)
    plain = model.generate(images, max_len=6)
    assert torch.equal(model.generate(images, max_len=6, grounding=0.0), plain)
    with torch.no_grad():  # the head rules out word 7 for every image: a strong grounding never says it
        model.word_head.weight.zero_()
        model.word_head.bias.copy_(torch.tensor([5.0, -30.0, 5.0]))
    grounded = model.generate(images, max_len=6, grounding=1.0)
    assert not (grounded == 7).any()
    beam = model.generate(images, max_len=6, strategy="beam", beam_size=3, grounding=1.0)
    assert not (beam == 7).any()
    # by hand: the uncached greedy choice of argmax(logits + bias) at every step
    prefix, bias = model.image_tokens(images), model.grounding_bias(model.image_tokens(images), 1.0)
    tokens = torch.zeros(3, 1, dtype=torch.long)
    for _ in range(grounded.shape[1]):
        logits, _ = model.gpt(tokens, prefix=prefix)
        tokens = torch.cat([tokens, (logits[:, -1] + bias).argmax(-1, keepdim=True)], dim=1)
    ends = tokens[:, 1:] == 1
    keep = (ends.long().cumsum(1) - ends.long()) == 0
    assert torch.equal(grounded[keep], tokens[:, 1:][keep])
    assert torch.equal(model.generate(images, max_len=6, strategy="beam", beam_size=1, grounding=1.0), grounded)

def _scst_captioner() -> Captioner:
    torch.manual_seed(0)
    return Captioner(CaptionerConfig({"image_size": 16, "patch_size": 4, "d_model": 16, "num_layers": 1,
                                      "num_heads": 2},
                                     {"vocab_size": 12, "context": 24, "d_model": 32, "num_layers": 1,
                                      "num_heads": 2, "dropout": 0.0}, bos_id=0, eos_id=1, banned_ids=(0,))).eval()


def test_grounded_sampling_draws_from_the_logits_plus_the_bias():
    model = _scst_captioner()
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    seeds = torch.tensor([5, 6])
    with torch.no_grad():
        prefix = model.image_tokens(images)
    plain = sample_per_image(model.gpt, prefix, seeds, 4, 0, 1, 8, banned=(0,))
    assert torch.equal(sample_per_image(model.gpt, prefix, seeds, 4, 0, 1, 8, banned=(0,),
                                        bias=torch.zeros(2, 12)), plain)
    bias = torch.zeros(2, 12)
    bias[:, plain.unique()[plain.unique() != 1]] = -1e4  # every word the plain samples used: ruled out
    grounded = sample_per_image(model.gpt, prefix, seeds, 4, 0, 1, 8, banned=(0,), bias=bias)
    assert not torch.isin(grounded, plain.unique()[plain.unique() != 1]).any()
    # the first token is the inverse of the biased distribution's cumulative sum at the image's uniform
    bias = torch.randn(2, 12)
    got = sample_per_image(model.gpt, prefix, seeds, 4, 0, 1, 8, banned=(0,), bias=bias)
    with torch.no_grad():
        first = model.gpt(torch.zeros(2, 1, dtype=torch.long), prefix=prefix)[0][:, -1] + bias
    first[:, 0] = float("-inf")
    cdf = first.softmax(-1).double().cumsum(-1).repeat_interleave(4, dim=0)
    u = torch.cat([torch.rand(4, 8, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                   for s in (5, 6)])[:, :1]
    assert torch.equal(got[:, 0], torch.searchsorted(cdf, u * cdf[:, -1:])[:, 0])
