import math

import pytest
import torch
from torch import nn

from mllm.cli import main
from mllm.language.gpt import GPT, GPTConfig, filter_logits, sample
from mllm.language.tokenizer import CharTokenizer
from mllm.language.train import mean_loss, windows


def _decisive_gpt(context=256, fused=True, seed=0) -> GPT:
    """A random GPT with large weights, so greedy choices are far from ties."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=20, context=context, d_model=32, num_layers=2, num_heads=4, fused=fused))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model.eval()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("fused", [True, False])
def test_cached_greedy_generation_equals_recomputing(batch, fused):
    model = _decisive_gpt(fused=fused)
    prompt = torch.randint(0, 20, (batch, 7), generator=torch.Generator().manual_seed(1))
    cached = model.generate(prompt, 220, temperature=0)
    full = model.generate(prompt, 220, temperature=0, use_cache=False)
    assert cached.shape == (batch, 227)
    assert torch.equal(cached, full)
    assert len(set(cached[0, 7:].tolist())) > 3  # not a degenerate constant sequence


def test_prefix_generation_cached_equals_recomputing():
    model = _decisive_gpt(context=64)
    prefix = torch.randn(2, 5, 32)
    start = torch.zeros(2, 1, dtype=torch.long)
    a = model.generate(start, 40, temperature=0, prefix=prefix)
    b = model.generate(start, 40, temperature=0, prefix=prefix, use_cache=False)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="exceed the context 64"):
        model.generate(start, 80, temperature=0, prefix=prefix)


def test_empty_prompt_needs_a_prefix():
    model = _decisive_gpt(context=64)
    empty = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match="empty prompt"):
        model.generate(empty, 5, temperature=0)
    prefix = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(2))
    out = model.generate(empty, 8, temperature=0, prefix=prefix)
    assert out.shape == (2, 8)
    # the first token is read off the last prefix position, the rest continue from it
    first = model(prefix=prefix, last_only=True)[0][:, -1].argmax(-1)
    assert torch.equal(out[:, 0], first)
    assert torch.equal(model.generate(out[:, :1], 7, temperature=0, prefix=prefix), out)
    assert torch.equal(model.generate(empty, 8, temperature=0, prefix=prefix, use_cache=False), out)


def test_forward_with_prefix_aligns_tokens_after_the_prefix():
    """Logits at token t come from decoder position P + t, which sees the prefix and tokens <= t."""
    model = _decisive_gpt(context=32)
    g = torch.Generator().manual_seed(3)
    prefix, idx = torch.randn(2, 5, 32, generator=g), torch.randint(0, 20, (2, 10), generator=g)
    targets = torch.randint(0, 20, (2, 10), generator=g)
    targets[0, :3], targets[1, 7] = -100, -100
    logits, loss = model(idx, targets, prefix=prefix)
    assert logits.shape == (2, 10, 20)

    x = torch.cat([prefix, model.tok_embed(idx)], dim=1) + model.pos.weight[:15]
    by_hand = model.head(model.decoder(x, is_causal=True)[:, 5:])
    torch.testing.assert_close(logits, by_hand)

    for t in range(9):
        changed = idx.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % 20
        other = model(changed, prefix=prefix)[0]
        torch.testing.assert_close(other[:, : t + 1], logits[:, : t + 1])
        assert not torch.allclose(other[:, t + 1:], logits[:, t + 1:])
    other = model(idx, prefix=prefix + torch.randn(2, 5, 32, generator=g))[0]
    for t in range(10):
        assert not torch.allclose(other[:, t], logits[:, t], atol=1e-4), t

    keep = targets != -100
    log_probs = logits.log_softmax(-1)[keep]  # [N, V]
    expected = -log_probs[torch.arange(log_probs.shape[0]), targets[keep]].mean()
    assert int(keep.sum()) == 16
    torch.testing.assert_close(loss, expected)


def test_generation_slides_past_the_context():
    model = _decisive_gpt(context=16)
    out = model.generate(torch.zeros(1, 4, dtype=torch.long), 50, temperature=0)
    assert out.shape == (1, 54)


def test_full_model_is_causal():
    model = _decisive_gpt(context=32)
    x = torch.randint(0, 20, (2, 16))
    logits, _ = model(x)
    for t in range(15):
        y = x.clone()
        y[:, t + 1:] = (y[:, t + 1:] + 1) % 20
        torch.testing.assert_close(model(y)[0][:, : t + 1], logits[:, : t + 1])


def test_weights_are_tied_and_sampling_uses_the_filter():
    model = _decisive_gpt()
    assert model.head.weight is model.tok_embed.weight
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    g = torch.Generator().manual_seed(0)
    assert {sample(logits, 1.0, top_k=1, generator=g).item() for _ in range(20)} == {3}
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert {sample(probs.log(), 1.0, top_p=0.45, generator=g).item() for _ in range(200)} == {2, 3}
    assert sample(logits, 0).item() == 3


@pytest.mark.parametrize("temperature", [1e-308, 1e-45, 1e-30])
def test_a_tiny_temperature_samples_the_argmax_instead_of_failing(temperature):
    # found by fuzzing the web demo: at temperature 1e-308 (0 in float32) the probabilities were NaN
    logits = torch.tensor([[0.5, -2.0, 3.0, 1.0], [-1.0, 4.0, 4.0 - 1e-3, 2.0]])
    g = torch.Generator().manual_seed(0)
    assert sample(logits, temperature, generator=g).flatten().tolist() == [2, 1]


# two rows, the same probabilities in different orders: token ids sorted by probability, highest first
_PROBS = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.1, 0.3, 0.2]])
_RANKED = [[3, 2, 1, 0], [0, 2, 3, 1]]


def _kept(filtered: torch.Tensor) -> list[set[int]]:
    return [set(torch.isfinite(row).nonzero()[:, 0].tolist()) for row in filtered]


@pytest.mark.parametrize(("top_p", "n_kept"), [(0.05, 1), (0.35, 1), (0.45, 2), (0.65, 2), (0.75, 3), (0.95, 4)])
def test_top_p_keeps_the_smallest_set_reaching_p(top_p, n_kept):
    logits = _PROBS.log()
    filtered = filter_logits(logits, top_p=top_p)
    assert _kept(filtered) == [set(r[:n_kept]) for r in _RANKED]
    finite = torch.isfinite(filtered)
    assert torch.equal(filtered[finite], logits[finite])  # kept logits are untouched


@pytest.mark.parametrize("top_k", [1, 2, 3, 4, 9])
def test_top_k_keeps_exactly_k(top_k):
    filtered = filter_logits(_PROBS.log(), top_k=top_k)
    assert _kept(filtered) == [set(r[:top_k]) for r in _RANKED]


def test_top_p_applies_to_what_top_k_left():
    # after top-3 the best token has mass 0.4 / 0.9 = 0.44 (0.4 before): p = 0.42 keeps it alone
    assert _kept(filter_logits(_PROBS.log(), top_k=3, top_p=0.42)) == [{3}, {0}]
    assert _kept(filter_logits(_PROBS.log(), top_p=0.42)) == [{3, 2}, {0, 2}]


def test_tokenizer_round_trip_unknown_and_extend():
    tok = CharTokenizer.from_text("hello world\n")
    assert tok.decode(tok.encode("hello\nworld")) == "hello\nworld"
    with pytest.raises(ValueError, match=r"characters not in the vocabulary: 'XZ'.*unk=True"):
        tok.encode("helloXZ")
    unk = CharTokenizer.from_text("abc", unk=True)
    assert unk.encode("abz") == [0, 1, unk.stoi[CharTokenizer.UNK]]
    bigger = tok.extend("hey!")
    assert bigger.encode("hello") == tok.encode("hello") and bigger.vocab_size == tok.vocab_size + 2
    assert CharTokenizer.from_state_dict(tok.state_dict()).chars == tok.chars


def test_val_windows_count_every_position_once():
    ids = torch.arange(11)
    x, y = windows(ids, 4)
    assert x.shape == (3, 4)
    assert y[y != -100].tolist() == list(range(1, 11))
    model = _decisive_gpt(context=4)
    ids = torch.randint(0, 20, (50,), generator=torch.Generator().manual_seed(4))
    # 49 next-token positions: 12 full windows and a last one with a single position
    with torch.no_grad():
        total = sum(nn.functional.cross_entropy(model(ids[s : min(s + 4, 49)][None])[0][0], ids[s + 1 : s + 5],
                                                reduction="sum") for s in range(0, 49, 4))
    assert mean_loss(model, ids, 4, batch_size=5) == pytest.approx(total.item() / 49, rel=1e-5)
    model.head = nn.Linear(32, 20, bias=False)
    nn.init.zeros_(model.head.weight)  # uniform logits: log(V) nats per character
    assert mean_loss(model, ids, 4, batch_size=5) == pytest.approx(math.log(20), rel=1e-6)


def test_tiny_gpt_overfits_a_short_text():
    text = "To be, or not to be, that is the question.\n" * 4
    tok = CharTokenizer.from_text(text)
    ids = tok.encode_tensor(text)
    torch.manual_seed(0)
    model = GPT(GPTConfig(tok.vocab_size, context=64, d_model=64, num_layers=2, num_heads=4))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y = ids[:64][None], ids[1:65][None]
    for _ in range(150):
        loss = model(x, targets=y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mirror):
    run = tmp_path_factory.mktemp("gpt-tiny")
    assert main(["train-llm", "--preset", "tiny", "--run-dir", str(run), "--data-mirror", str(mirror),
                 "train.device=cpu"]) == 0
    return run


def test_train_llm_tiny_writes_the_run_folder(tiny_run):
    for name in ("summary.json", "metrics.jsonl", "curves.png", "samples.md", "best.pt", "last.pt"):
        assert (tiny_run / name).is_file()
    assert "Style statistics" in (tiny_run / "samples.md").read_text()


def test_generate_command(tiny_run, capsys):
    assert main(["generate", str(tiny_run), "--length", "30", "--num-samples", "2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2
    assert main(["generate", str(tiny_run), "--prompt", "ROMEO\u00e9", "--length", "5"]) == 2
    assert "characters not in the vocabulary" in capsys.readouterr().err
    assert main(["generate", str(tiny_run / "missing.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
