"""No repeated n-grams in decoded captions (`eval.no_repeat`): the mask by hand, greedy and beam search."""

import pytest
import torch

from mllm.language.beams import beam_nbest
from mllm.language.decoding import decode, repeat_mask
from mllm.multimodal.mllm import Captioner, CaptionerConfig

VISION = dict(image_size=16, patch_size=4, d_model=32, num_layers=1, num_heads=2)
TEXT = dict(vocab_size=30, context=32, d_model=32, num_layers=2, num_heads=2, dropout=0.0)


def _banned(mask_row: torch.Tensor) -> set[int]:
    return set(mask_row.nonzero()[:, 0].tolist())


def test_repeat_mask_bans_the_tokens_that_would_repeat_an_ngram():
    history = torch.tensor([[5, 6, 7, 5, 6], [5, 6, 5, 8, 5]])
    assert _banned(repeat_mask(history, 3, 10)[0]) == {7}  # "5 6" was followed by 7
    assert _banned(repeat_mask(history, 3, 10)[1]) == set()  # "8 5" is new
    assert _banned(repeat_mask(history, 2, 10)[0]) == {7}  # "6" was followed by 7
    assert _banned(repeat_mask(history, 2, 10)[1]) == {6, 8}  # "5" was followed by 6 and by 8
    assert _banned(repeat_mask(history, 1, 10)[1]) == {5, 6, 8}  # no token twice
    assert not repeat_mask(history, 0, 10).any() and not repeat_mask(history, 6, 10).any()  # off; too short
    assert not repeat_mask(history[:, :0], 2, 10).any()  # nothing decoded yet


def _ngrams(row: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]


def _caption(ids: torch.Tensor, eos: int = 1) -> list[int]:
    row = ids.tolist()
    return row[: row.index(eos)] if eos in row else row


@pytest.fixture(scope="module")
def repetitive() -> tuple[Captioner, torch.Tensor]:
    """A random captioner with large weights whose greedy captions repeat themselves."""
    torch.manual_seed(0)
    model = Captioner(CaptionerConfig(VISION, TEXT, bos_id=0, eos_id=1)).eval()
    with torch.no_grad():
        for p in model.gpt.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    images = torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return model, images


def test_greedy_and_beam_captions_repeat_no_ngram(repetitive):
    model, images = repetitive
    plain = [_caption(r) for r in model.generate(images, max_len=20)]
    for n in (2, 3):  # there is something to remove
        assert any(len(set(_ngrams(c, n))) < len(_ngrams(c, n)) for c in plain), n
    for n in (2, 3):
        for strategy in ("greedy", "beam"):
            for row in model.generate(images, max_len=20, strategy=strategy, beam_size=3, no_repeat=n):
                grams = _ngrams(_caption(row), n)
                assert len(set(grams)) == len(grams), (strategy, n, row)
    # a caption with no repetition is left as it was; an n-gram longer than any caption bans nothing
    banned = [_caption(r) for r in model.generate(images, max_len=20, no_repeat=2)]
    clean = [i for i, c in enumerate(plain) if len(set(_ngrams(c, 2))) == len(_ngrams(c, 2))]
    assert clean and all(banned[i] == plain[i] for i in clean)
    assert torch.equal(model.generate(images, max_len=20, no_repeat=21), model.generate(images, max_len=20))
    # beam size 1 is greedy, with the ban too
    assert torch.equal(model.generate(images, max_len=20, strategy="beam", beam_size=1, no_repeat=2),
                       model.generate(images, max_len=20, no_repeat=2))


def test_greedy_no_repeat_equals_a_hand_loop(repetitive):
    model, images = repetitive
    got = model.generate(images, max_len=12, no_repeat=2)
    prefix = model.image_tokens(images)
    tokens = torch.zeros(len(images), 1, dtype=torch.long)
    for _ in range(got.shape[1]):  # uncached greedy, each step the tokens that would repeat a bigram set aside
        logits, _ = model.gpt(tokens, prefix=prefix)
        last = logits[:, -1].clone()
        for i in range(len(images)):
            seen = tokens[i, 1:].tolist()
            for j in range(len(seen) - 1):
                if seen[j] == seen[-1]:
                    last[i, seen[j + 1]] = float("-inf")
        tokens = torch.cat([tokens, last.argmax(-1, keepdim=True)], dim=1)
    for mine, hand in zip(got, tokens[:, 1:], strict=True):
        assert _caption(mine) == _caption(hand)


def test_nbest_beams_repeat_no_ngram(repetitive):
    model, images = repetitive
    prefix = model.image_tokens(images)
    plain, _ = beam_nbest(model.gpt, prefix, 0, 1, 20, 4)
    assert any(len(set(_ngrams(_caption(r), 2))) < len(_ngrams(_caption(r), 2)) for r in plain)
    tokens, _ = beam_nbest(model.gpt, prefix, 0, 1, 20, 4, no_repeat=2)
    for row in tokens:
        grams = _ngrams(_caption(row), 2)
        assert len(set(grams)) == len(grams), row
    assert len({tuple(_caption(r)) for r in tokens[:4]}) == 4  # still 4 different captions of one image


def test_no_repeat_is_for_greedy_and_beam():
    model = Captioner(CaptionerConfig(VISION, TEXT, bos_id=0, eos_id=1)).eval()
    images = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="no_repeat must be >= 0"):
        model.generate(images, max_len=4, strategy="sample", no_repeat=3)
    with pytest.raises(ValueError, match="no_repeat must be >= 0"):
        model.generate(images, max_len=4, no_repeat=-1)
    with pytest.raises(ValueError, match="sampling takes none"):
        decode(model.gpt, model.image_tokens(images), 0, 1, 4, temperature=1.0, no_repeat=2)


def test_a_char_captioner_refuses_no_repeat(mirror, data_root):
    """A char captioner's tokens are letters: n-gram bans would forbid every repeated pair of letters."""
    from mllm.data import prepare_flickr8k
    from mllm.multimodal.train import CaptioningTask
    from mllm.training.config import ConfigError, load_config

    cfg = load_config("mllm", "tiny", ["model.tokenizer=char", "model.grounding_words=0", "eval.grounding=0",
                                       "eval.no_repeat=2"])
    with pytest.raises(ConfigError, match="characters"):
        CaptioningTask(cfg, prepare_flickr8k(data_root, mirror, image_size=cfg.model.image_size))
