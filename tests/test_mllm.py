"""The captioner: connector, tokenizers, loss positions, decoding (cached = uncached, beam 1 = greedy,
sampled log-probs = teacher-forced), overfitting real Flickr8k images, and its errors."""

import pytest
import torch
import torch.nn.functional as F

from mllm.language.tokenizer import CharTokenizer
from mllm.multimodal.connector import Connector, avg_pool, pixel_shuffle
from mllm.multimodal.mllm import Captioner, CaptionerConfig
from mllm.multimodal.tokenizer import CaptionCharTokenizer, WordTokenizer, tokenizer_from_state

VISION = {"image_size": 16, "patch_size": 4, "d_model": 16, "num_layers": 1, "num_heads": 2}
TEXT = {"vocab_size": 12, "context": 40, "d_model": 32, "num_layers": 2, "num_heads": 4}


def _captioner(seed: int = 0, decisive: bool = True, **kw) -> Captioner:
    torch.manual_seed(seed)
    model = Captioner(CaptionerConfig(VISION, TEXT, bos_id=0, eos_id=1, **kw))
    if decisive:  # large weights: greedy choices far from ties, varied captions
        with torch.no_grad():
            for p in model.gpt.parameters():
                if p.dim() == 2:
                    p.normal_(0, 0.3)
    return model.eval()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ---- connector --------------------------------------------------------------------------------

def test_pixel_shuffle_and_avgpool_take_2x2_neighbourhoods():
    g, d = 4, 3
    tokens = torch.arange(g * g * d, dtype=torch.float32).view(1, g * g, d)  # token (r, c) at r * g + c
    shuffled = pixel_shuffle(tokens)
    assert shuffled.shape == (1, 4, 4 * d)
    # output token 1 is the block at rows 0-1, columns 2-3: tokens (0,2), (0,3), (1,2), (1,3)
    expected = torch.cat([tokens[0, r * g + c] for r in (0, 1) for c in (2, 3)])
    torch.testing.assert_close(shuffled[0, 1], expected)
    pooled = avg_pool(tokens)
    block = torch.stack([tokens[0, r * g + c] for r in (2, 3) for c in (0, 1)])  # rows 2-3, columns 0-1
    torch.testing.assert_close(pooled[0, 2], block.mean(0))
    with pytest.raises(ValueError, match="a 3x3 patch grid cannot be reduced by 2"):
        pixel_shuffle(torch.zeros(1, 9, d))
    connector = Connector(d, 8, "linear", "pixel_shuffle")
    assert connector(tokens).shape == (1, 4, 8) and connector.num_tokens(16) == 4
    with pytest.raises(ValueError, match="connector kind must be mlp or linear"):
        Connector(d, 8, "conv")


# ---- tokenizers -------------------------------------------------------------------------------

def test_word_and_char_tokenizers():
    words = WordTokenizer.from_captions(["A dog runs .", "A dog sits", "a cat"], min_count=2)
    assert words.itos[3:] == ["a", "dog"]
    ids = words.encode("A dog, jumping!")
    assert ids == [words.stoi["a"], words.stoi["dog"], words.unk_id]
    assert words.decode([words.bos_id, *ids, words.eos_id, 5]) == "a dog <unk>"
    assert tokenizer_from_state(words.state_dict()).itos == words.itos

    base = CharTokenizer("\n !abcdefghijklmnopqrstuvwxyz")
    chars = CaptionCharTokenizer.from_captions(["A dog's toy 2 ."], base)
    assert chars.chars.chars.startswith(base.chars) and chars.vocab_size == base.vocab_size + 2  # ' and 2
    assert chars.bos_id == chars.eos_id == base.stoi["\n"]
    assert chars.decode(chars.encode("A dog's toy 2 .") + [chars.eos_id, 4]) == "a dog 's toy 2"  # PTB splits 's


# ---- the model --------------------------------------------------------------------------------

def test_loss_is_on_caption_tokens_only():
    model = _captioner(decisive=False)
    images = _images(2)
    captions = torch.tensor([[0, 4, 5, 6, 1, 1], [0, 7, 1, 1, 1, 1]])  # BOS w.. EOS, then padding
    targets = torch.tensor([[4, 5, 6, 1, -100, -100], [7, 1, -100, -100, -100, -100]])
    logits, loss = model(captions, targets, images=images)
    assert logits.shape == (2, 6, 12)  # caption positions only: the image positions give no logits
    real = targets != -100
    torch.testing.assert_close(loss, F.cross_entropy(logits[real], targets[real]))
    padded = captions.clone()
    padded[0, 5], padded[1, 3:] = 9, 11  # other padding tokens after the end token change nothing
    torch.testing.assert_close(model(padded, targets, images=images)[1], loss)
    other = model(captions, targets, images=_images(2, seed=1))[1]
    assert not torch.allclose(other, loss)  # but the image does


def test_captions_sharing_an_image_equal_captions_each_with_a_copy_of_it():
    """image_of: 2 images for 4 captions gives the logits, loss and gradients of 4 copies of the images."""
    images, image_of = _images(2), torch.tensor([0, 0, 1, 0])
    captions = torch.tensor([[0, 4, 5, 1], [0, 7, 1, 1], [0, 6, 6, 1], [0, 8, 9, 10]])
    targets = torch.tensor([[4, 5, 1, -100], [7, 1, -100, -100], [6, 6, 1, -100], [8, 9, 10, 1]])
    results = []
    for kwargs in ({"images": images[image_of]}, {"images": images, "image_of": image_of}):
        model = _captioner(decisive=False)
        logits, loss = model(captions, targets, **kwargs)
        loss.backward()
        results.append((logits, loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (logits_a, loss_a, grads_a), (logits_b, loss_b, grads_b) = results
    torch.testing.assert_close(logits_b, logits_a)
    torch.testing.assert_close(loss_b, loss_a)
    assert grads_a.keys() == grads_b.keys() and any(n.startswith("vit.") for n in grads_a)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], msg=name)


def test_cached_decoding_equals_uncached_and_rows_stop_at_their_end_token():
    from mllm.language.decoding import decode

    model = _captioner()
    prefix = model.image_tokens(_images(3))
    cached, logp = decode(model.gpt, prefix, 0, 1, 20)
    uncached, logp_u = decode(model.gpt, prefix, 0, 1, 20, use_cache=False)
    assert torch.equal(cached, uncached)
    torch.testing.assert_close(logp, logp_u)
    for row in cached.tolist():
        if 1 in row:
            assert set(row[row.index(1):]) == {1}
    assert len({tuple(r) for r in cached.tolist()}) > 1


def test_beam_size_one_equals_greedy_and_an_exhaustive_beam_finds_the_best_caption():
    """Beam 1 is greedy. A beam of vocab ** max_len holds every caption, so with no length penalty it must return
    the caption of highest log-probability among all of them (ended by the end token or cut at max_len),
    which a brute-force enumeration scores with a teacher-forced pass. (A wider beam does not always beat a
    narrower one, so that is not the property checked.)"""
    from itertools import product

    model = _captioner(seed=3)
    images = _images(4, seed=2)
    greedy = model.generate(images, max_len=12, strategy="greedy")
    assert torch.equal(greedy, model.generate(images, max_len=12, strategy="beam", beam_size=1))

    vocab, max_len = TEXT["vocab_size"], 3
    words = [v for v in range(vocab) if v != 1]
    every = [[*w, 1] + [1] * (max_len - 1 - len(w)) for n in range(max_len) for w in product(words, repeat=n)]
    every += [list(w) for w in product(words, repeat=max_len)]  # cut at max_len without an end token
    every = torch.tensor(every)
    with torch.no_grad():
        best = model.generate(images, max_len=max_len, strategy="beam", beam_size=vocab**max_len)
        short = model.generate(images, max_len=max_len, strategy="greedy")
        for i in range(len(images)):
            logp, _ = model.caption_logprobs(every, images=images[i : i + 1].expand(len(every), -1, -1, -1))
            total = logp.sum(1)
            assert best[i].tolist() == every[total.argmax()].tolist(), i
            assert total.topk(2).values.diff().abs() > 1e-4  # no tie for the best caption
    assert not torch.equal(best, short)  # greedy misses the best caption of some image: the check has teeth


def test_sampled_log_probs_equal_a_teacher_forced_pass_with_gradients():
    model = _captioner()
    images = _images(2)
    g = torch.Generator().manual_seed(0)
    tokens, logp = model.sample_captions(images=images, n=3, max_len=10, temperature=0.7, generator=g)
    assert tokens.shape[0] == 6
    forced, mask = model.caption_logprobs(tokens, images=images.repeat_interleave(3, dim=0), temperature=0.7)
    torch.testing.assert_close(forced, logp, atol=1e-5, rtol=1e-5)
    assert forced.requires_grad and mask.dtype == torch.bool
    assert (forced[~mask] == 0).all() and mask[:, 0].all()
    forced.sum().backward()
    assert model.connector.proj[0].weight.grad.abs().sum() > 0


def test_blind_captioner_ignores_the_image():
    model = _captioner(blind=True)
    captions = torch.tensor([[0, 4, 5, 1]])
    a, _ = model(captions, images=_images(1))
    b, _ = model(captions, images=_images(1, seed=5))
    torch.testing.assert_close(a, b)
    assert model.num_image_tokens == 0
    captions = model.generate(_images(2), max_len=5)  # every image gets the language model's own greedy caption
    assert torch.equal(captions, model.generate(_images(2, seed=5), max_len=5))
    tokens = []
    with torch.no_grad():
        for _ in range(5):
            logits, _ = model.gpt(torch.tensor([[0, *tokens]]), last_only=True)
            tokens.append(int(logits[0, -1].argmax()))
    assert captions.tolist() == [tokens[: tokens.index(1) + 1] + [1] * (4 - tokens.index(1)) if 1 in tokens
                                 else tokens] * 2


def test_tiny_captioner_overfits_four_real_flickr8k_images(mirror, data_root):
    from mllm.data import prepare_flickr8k

    data = prepare_flickr8k(data_root, mirror, image_size=32)
    chosen = data.split_indices("train")[:4]
    captions = [data.captions_of(int(i))[0] for i in chosen]
    tok = WordTokenizer.from_captions(captions, min_count=1)
    torch.manual_seed(0)
    model = Captioner(CaptionerConfig({**VISION, "image_size": 32, "d_model": 32}, {
        **TEXT, "vocab_size": tok.vocab_size, "d_model": 64}, bos_id=tok.bos_id, eos_id=tok.eos_id))
    ids = [[tok.bos_id, *tok.encode(c), tok.eos_id] for c in captions]
    width = max(map(len, ids))
    tokens = torch.tensor([row + [tok.eos_id] * (width - len(row)) for row in ids])
    targets = tokens[:, 1:].clone()
    targets[torch.tensor([[j >= len(row) - 1 for j in range(width - 1)] for row in ids])] = -100
    images = torch.from_numpy(data.images[chosen])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model(tokens[:, :-1], targets, images=images)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    decoded = [tok.decode(row) for row in model.generate(images, max_len=width)]
    assert decoded == [" ".join(tok.itos[i] for i in tok.encode(c)) for c in captions]


def _plain_beam_search(model, images, beam_size, max_len, length_penalty=0.0):
    """The beam search `beams.beam_search` documents, written plainly: one image at a time, every step
    recomputed from scratch (no cache), candidates as Python lists."""
    out = []
    for image in images:
        prefix = model.image_tokens(image[None])
        live, best, best_score = [([], 0.0)], None, float("-inf")
        for t in range(max_len):
            candidates = []
            for tokens, score in live:
                logits, _ = model.gpt(torch.tensor([[0, *tokens]]), prefix=prefix, last_only=True)
                logp = logits[0, -1].float().log_softmax(-1)
                candidates += [(tokens + [v], score + float(logp[v])) for v in range(logp.shape[0])]
            candidates = sorted(candidates, key=lambda c: -c[1])[: 2 * beam_size]
            for rank, (tokens, score) in enumerate(candidates):
                if tokens[-1] == 1 and rank < beam_size and score / (t + 1) ** length_penalty > best_score:
                    best, best_score = tokens, score / (t + 1) ** length_penalty
            live = [c for c in candidates if c[0][-1] != 1][:beam_size]
            if best_score >= live[0][1] / (t + 1) ** length_penalty:
                break
        else:
            if live[0][1] / max_len**length_penalty > best_score:
                best = live[0][0]
        out.append(best)
    return out


def test_cached_batched_beam_search_equals_a_plain_one_and_the_length_penalty_matters():
    model = _captioner(seed=5)
    with torch.no_grad():
        model.gpt.tok_embed.weight[1] *= 3  # the end token becomes likely: captions of many lengths
    images = _images(3, seed=4)
    results = {}
    for beam_size, penalty in ((3, 0.0), (4, 1.0), (1, 0.0)):
        with torch.no_grad():
            fast = model.generate(images, max_len=8, strategy="beam", beam_size=beam_size, length_penalty=penalty)
            plain = _plain_beam_search(model, images, beam_size, 8, penalty)
        for row, expected in zip(fast.tolist(), plain, strict=True):
            assert row[: len(expected)] == expected and set(row[len(expected):]) <= {1}
        results[beam_size, penalty] = [tuple(r) for r in plain]
    short, long = results[3, 0.0], results[4, 1.0]
    assert any(len(r) < 8 for r in short)  # some captions finished early
    assert sum(map(len, long)) > sum(map(len, short))  # dividing by the length favours longer captions
    assert results[1, 0.0] != short
