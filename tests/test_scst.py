"""SCST's options and measurements: the entropy term against a direct computation and its effect, both baselines'
advantages, the top-k policy, per-image sampling, the reference cross-entropy, n-gram novelty, the variety
diagnostics, the curves' panels, and SCST under torchrun (2 processes = 1)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mllm.evaluation.diagnostics import caption_diagnostics
from mllm.language.beams import beam_nbest
from mllm.language.decoding import decode, logprobs_of, teacher_inputs
from mllm.multimodal.mllm import Captioner, CaptionerConfig
from mllm.rl.reward import ngram_novelty
from mllm.rl.sampling import sample_per_image
from mllm.rl.scst import baseline_rewards, policy_logprobs, reference_xe, scst_loss
from mllm.training.config import load_config
from mllm.training.plots import panels_of

REPO = Path(__file__).resolve().parents[1]


def _captioner(seed: int = 0) -> Captioner:
    torch.manual_seed(seed)
    return Captioner(CaptionerConfig({"image_size": 16, "patch_size": 4, "d_model": 16, "num_layers": 1,
                                      "num_heads": 2},
                                     {"vocab_size": 12, "context": 24, "d_model": 32, "num_layers": 1,
                                      "num_heads": 2, "dropout": 0.0}, bos_id=0, eos_id=1, banned_ids=(0,))).eval()


@pytest.mark.parametrize("top_k", [0, 4])
def test_entropy_term_equals_a_direct_computation(top_k):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 12)
    tokens = torch.tensor([[4, 5, 1, 1, 1], [6, 7, 8, 9, 1], [2, 1, 1, 1, 1]])
    if top_k:  # sampled tokens come from the top k: the end tokens made likely, the others the 3rd most likely
        logits[..., 1] = torch.where(tokens == 1, 5.0, -5.0)
        logits[..., 0] = -10.0  # the banned token: never sampled
        tokens = torch.where(tokens == 1, tokens, logits.topk(top_k, -1).indices[..., 2])
    temperature, beta = 0.7, 0.3
    logp, mask, entropy = policy_logprobs(logits, tokens, 1, temperature, top_k, banned=(0,))
    total, count = scst_loss(logp, mask, torch.tensor([0.5, -1.0, 2.0]), entropy, beta)
    want_total, want_entropy = 0.0, torch.zeros(3, 5)
    for i in range(3):
        for t in range(5):
            z = logits[i, t].clone()
            z[0] = float("-inf")
            z = z / temperature
            if top_k:
                z[z < z.topk(top_k).values[-1]] = float("-inf")
            p = z.softmax(-1)
            h = -sum(float(q) * float(q.log()) for q in p if q > 0)
            real = 1 not in tokens[i, :t].tolist()
            want_entropy[i, t] = h if real else 0.0
            if real:
                want_total -= [0.5, -1.0, 2.0][i] * float(p[tokens[i, t]].log()) + beta * h
    assert count == 3 and np.isfinite(want_total)
    assert torch.allclose(entropy, want_entropy, atol=1e-5)
    assert float(total) == pytest.approx(want_total, abs=1e-4)


def test_one_step_with_the_entropy_bonus_raises_the_entropy():
    model = _captioner()
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    samples = sample_per_image(model.gpt, model.image_tokens(images), torch.tensor([3, 4]), 4, 0, 1, 6)

    def entropy():
        logits, _ = model(teacher_inputs(samples, 0), images=images.repeat_interleave(4, 0))
        _, mask, h = policy_logprobs(logits, samples, 1, banned=(0,))
        return (h * mask).sum() / mask.sum(), policy_logprobs(logits, samples, 1, banned=(0,))

    before, (logp, mask, h) = entropy()
    total, count = scst_loss(logp, mask, torch.zeros(len(samples)), h, entropy_bonus=1.0)
    (total / count).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    assert float(entropy()[0].detach()) > float(before.detach()) + 1e-3


def test_advantages_of_both_baselines_on_a_hand_made_batch():
    rewards = torch.tensor([0.2, 0.5, 0.8, 1.0, 0.0, 0.5])  # 2 images x 3 samples
    greedy = torch.tensor([0.4, 0.9])
    self_critical = rewards - baseline_rewards(rewards, greedy, 3, "greedy")
    leave_one_out = rewards - baseline_rewards(rewards, greedy, 3, "mean")
    assert self_critical.tolist() == pytest.approx([-0.2, 0.1, 0.4, 0.1, -0.9, -0.4])
    assert leave_one_out.tolist() == pytest.approx([0.2 - 0.65, 0.5 - 0.5, 0.8 - 0.35, 1.0 - 0.25, 0.0 - 0.75,
                                                    0.5 - 0.5])
    assert float(leave_one_out.view(2, 3).sum(1).abs().max()) < 1e-6  # zero mean per image, by construction


def test_bad_endings_and_the_most_common_captions_share():
    captions = ["a dog runs on the", "a dog runs", "A dog runs", "two men sit at a", "a cat", "a dog runs"]
    d = caption_diagnostics(captions, ["a cat ."])
    assert d["bad_endings"] == pytest.approx(2 / 6)  # ends on "the", on "a"
    assert d["top_share"] == pytest.approx(3 / 6) and d["top_caption"] == "a dog runs"  # case does not count
    assert d["distinct"] == 4 and d["copied"] == pytest.approx(1 / 6)
    assert caption_diagnostics(["a dog", ""])["bad_endings"] == 0.5  # an empty caption counts as a bad ending


def test_ngram_novelty_among_an_images_samples():
    got = ngram_novelty(["a dog runs", "a dog runs", "a red ball", "x y", "x z", ""], 3)
    # image 1: the twins share everything; "a red ball": a, red, ball, a red, red ball -> 4 of 5 new
    assert got[:3].tolist() == pytest.approx([0.0, 0.0, 4 / 5])
    assert got[3:].tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])  # x y: y and "x y" new of 3
    with pytest.raises(ValueError, match="cannot be split"):
        ngram_novelty(["a", "b", "c"], 2)


def test_sampling_per_image_does_not_depend_on_the_split_greedy_rows_or_top_k_keeps_to_the_top():
    model = _captioner()
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    seeds = torch.tensor([11, 12, 13, 14])
    with torch.no_grad():
        prefix = model.image_tokens(images)
    whole = sample_per_image(model.gpt, prefix, seeds, 3, 0, 1, 8, banned=(0,))
    halves = [sample_per_image(model.gpt, prefix[i : i + 2], seeds[i : i + 2], 3, 0, 1, 8, banned=(0,))
              for i in (0, 2)]
    width = whole.shape[1]
    padded = torch.cat([torch.nn.functional.pad(h, (0, width - h.shape[1]), value=1) for h in halves])
    assert torch.equal(padded, whole)
    assert not torch.equal(whole[:3], whole[3:6])  # images differ, seeds differ
    bias = torch.rand(4, 12, generator=torch.Generator().manual_seed(1))  # its own per image (earlier endings too)
    for b in (None, bias):  # with greedy rows: the same samples, and after them each image's greedy caption
        alone = sample_per_image(model.gpt, prefix, seeds, 3, 0, 1, 8, banned=(0,), bias=b)
        both = sample_per_image(model.gpt, prefix, seeds, 3, 0, 1, 8, banned=(0,), bias=b, greedy=True)
        greedy = decode(model.gpt, prefix, 0, 1, 8, banned=(0,), bias=b)[0]
        assert torch.equal(both[:12, : alone.shape[1]], alone) and bool((both[:12, alone.shape[1] :] == 1).all())
        assert torch.equal(both[12:, : greedy.shape[1]], greedy)
    top = sample_per_image(model.gpt, prefix, seeds, 3, 0, 1, 8, top_k=2, banned=(0,))
    with torch.no_grad():
        logits, _ = model(teacher_inputs(top, 0), images=images.repeat_interleave(3, 0))
    logits[..., 0] = float("-inf")
    rank = (logits > logits.gather(-1, top[..., None])).sum(-1)  # tokens more likely than the sampled one
    _, mask, _ = policy_logprobs(logits, top, 1, top_k=2)
    assert int(rank[mask].max()) <= 1


def test_beam_nbest_gives_distinct_captions_best_first_scored_by_their_log_probabilities():
    model = _captioner(1)
    images = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    with torch.no_grad():
        prefix = model.image_tokens(images)
    bias = -2.0 * torch.rand(3, 12, generator=torch.Generator().manual_seed(0))  # grounding-like, its own per image
    ending = torch.zeros(3, 12).index_fill(1, torch.tensor([1]), 1.5)  # the end token favoured: early endings
    for b in (None, bias, ending):
        tokens, scores = beam_nbest(model.gpt, prefix, 0, 1, 6, 4, banned=(0,), bias=b)
        assert tokens.shape[0] == 12 and scores.shape == (3, 4)
        with torch.no_grad():
            logits, _ = model(teacher_inputs(tokens, 0), images=images.repeat_interleave(4, 0))
        logp, mask, _ = logprobs_of(logits, tokens, 1, banned=(0,))
        if b is not None:  # the bias is added to the log-probabilities, as beam_search adds it
            logp = logp + b.repeat_interleave(4, 0).gather(1, tokens) * mask
        assert torch.allclose(logp.sum(1).view(3, 4), scores, atol=1e-4)
        assert bool((scores[:, :-1] >= scores[:, 1:]).all())
        if b is ending:  # captions of several lengths, the finished ones kept with their scores
            assert len(set(mask.sum(1).tolist())) > 1
        for i in range(3):  # the K captions of an image are distinct
            assert len({tuple(row[m].tolist()) for row, m in zip(tokens[4 * i : 4 * i + 4], mask[4 * i : 4 * i + 4],
                                                                  strict=True)}) == 4
    one, _ = beam_nbest(model.gpt, prefix, 0, 1, 6, 1, banned=(0,))
    greedy = decode(model.gpt, prefix, 0, 1, 6, banned=(0,))[0]
    assert torch.equal(one[:, : greedy.shape[1]], greedy)


def test_reference_cross_entropy_is_the_mean_over_images_and_splits_into_a_sum():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, 7)
    targets = torch.tensor([[2, 3, 1, -100], [4, 1, -100, -100], [5, 5, 5, 1], [2, 1, -100, -100], [3, 1, -100, -100]])
    owner = torch.tensor([0, 0, 0, 1, 1])
    total, mean = reference_xe(logits, targets, owner, samples=4)
    per_caption = [float(torch.nn.functional.cross_entropy(logits[i][targets[i] != -100],
                                                           targets[i][targets[i] != -100])) for i in range(5)]
    per_image = [np.mean(per_caption[:3]), np.mean(per_caption[3:])]
    assert float(mean) == pytest.approx(np.mean(per_image), abs=1e-5)
    assert float(total) == pytest.approx(4 * sum(per_image), abs=1e-4)
    first, _ = reference_xe(logits[:3], targets[:3], owner[:3], 4)
    second, _ = reference_xe(logits[3:], targets[3:], owner[3:] - 1, 4)
    assert float(first + second) == pytest.approx(float(total), abs=1e-5)


def test_curves_put_the_policy_loss_and_the_cross_entropy_in_separate_panels():
    panels = panels_of(["train_loss", "policy_loss", "xe", "val_xe", "reward_sample", "reward_greedy", "advantage",
                        "entropy", "val_cider"])
    assert ["train_loss", "policy_loss"] in panels and ["xe", "val_xe"] in panels
    assert ["reward_sample", "reward_greedy"] in panels and ["advantage"] in panels and ["val_cider"] in panels


def test_new_rl_options_default_to_todays_behaviour_and_bad_values_are_named():
    from mllm.rl.train import check_rl_settings
    from mllm.training.config import ConfigError

    r = load_config("rl", "cpu").rl
    assert (r.top_k, r.diversity_bonus, r.baseline, r.entropy_bonus, r.sampler) == (0, 0.0, "mean", 0.002, "sample")
    assert (r.xe_weight, r.xe_refs) == (0.2, 1)  # the cross-entropy mix on one reference per image (chosen on dev)
    for bad, message in (("rl.xe_weight=-1", "rl.xe_weight must be 0 or more"),
                         ("rl.top_k=-2", "rl.top_k must be 0 or more"),
                         ("rl.diversity_bonus=0.1 rl.samples=1 rl.baseline=greedy", "rl.diversity_bonus needs"),
                         ("rl.sampler=beams", "rl.sampler must be one of sample, beam"),
                         ("rl.sampler=beam rl.temperature=0.5", "leave rl.temperature=1 and rl.top_k=0")):
        with pytest.raises(ConfigError, match=message):
            check_rl_settings(load_config("rl", "tiny", bad.split()))


@pytest.fixture(scope="module")
def tiny_captioner(tmp_path_factory, mirror, data_root):
    """An untrained tiny captioner (the rl tiny preset's model, dropout 0), saved as a supervised run would be."""
    from mllm.data import prepare_flickr8k
    from mllm.multimodal.train import CaptioningTask

    cfg = load_config("mllm", "tiny", ["train.frozen_vision_until=0", "model.text.dropout=0.0"])
    torch.manual_seed(0)
    task = CaptioningTask(cfg, prepare_flickr8k(data_root, mirror, image_size=cfg.model.image_size))
    path = tmp_path_factory.mktemp("supervised") / "tiny.pt"
    torch.save({"kind": "captioner", "model": task.model.state_dict(), "config": cfg.to_dict(),
                "extra": task.extra_state()}, path)
    return path, task


def test_reference_batch_holds_every_reference_of_each_image(tiny_captioner):
    _, task = tiny_captioner
    images = torch.from_numpy(task.split["train"][[5, 0, 17]]).long()
    ids, owner = task.captioning.reference_ids(images)
    assert owner.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    for j, image in enumerate(images.tolist()):
        assert [str(c) for c in task.data.captions[ids[owner == j].numpy()]] == task.data.captions_of(image)
    inputs, targets, owner2 = task.captioning.reference_batch(images)
    assert torch.equal(owner2, owner) and targets.shape == inputs.shape
    assert torch.equal(inputs[:, 1:], task.captions[ids][:, 1 : inputs.shape[1]])
    assert (inputs[:, 0] == task.tokenizer.bos_id).all()
    some, owner3 = task.captioning.reference_ids(images, 2, torch.tensor([7, 8, 9]))  # rl.xe_refs=2
    assert owner3.tolist() == [0, 0, 1, 1, 2, 2] and set(some.tolist()) < set(ids.tolist())
    alone, _ = task.captioning.reference_ids(images[1:2], 2, torch.tensor([8]))  # an image's draw: its seed's
    assert torch.equal(alone, some[2:4])
    assert not torch.equal(task.captioning.reference_ids(images, 2, torch.tensor([1, 2, 3]))[0], some)


def test_scst_under_torchrun_matches_one_process(tiny_captioner, tmp_path, mirror, data_root):
    """Two gloo processes with half the images each = one process with all of them: per-image sampling seeds,
    the leave-one-out baseline, the reference cross-entropy and the grounded policy are per image; the diagnostics are
    in metrics.json."""
    path, _ = tiny_captioner
    common = ["train-rl", "--preset", "tiny", "--data-mirror", str(mirror), "--data-root", str(data_root),
              "train.device=cpu", f"init.captioner={path}", "train.max_steps=3", "train.eval_interval=3",
              "eval.val_images=8", "eval.gallery=2", "model.text.dropout=0.0", "rl.xe_weight=0.5", "rl.xe_refs=2",
              "rl.diversity_bonus=0.1", "rl.top_k=5", "rl.grounded=true"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    records = {}
    for name, launcher in (("single", [sys.executable]), ("ddp", torchrun)):
        run = tmp_path / name
        skip = ["eval.test=false"] if name == "ddp" else []  # the test report: read from the single run only
        done = subprocess.run([*launcher, str(REPO / "main.py"), *common, *skip, "--run-dir", str(run)], cwd=REPO,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        records[name] = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = {name: [r for r in recs if "train_loss" in r] for name, recs in records.items()}
    assert len(steps["ddp"]) == 3 and {"xe", "policy_loss", "novelty"} <= set(steps["ddp"][0])
    for key in ("train_loss", "reward_sample", "reward_greedy", "xe", "novelty"):
        assert [r[key] for r in steps["ddp"]] == pytest.approx([r[key] for r in steps["single"]], abs=1e-4), key
    metrics = json.loads((tmp_path / "single" / "metrics.json").read_text())
    for row in metrics["test"].values():
        assert {"distinct", "top_share", "vocabulary", "bad_endings", "hallucination_per_caption"} <= set(row)
    assert "## Grounding and variety" in (tmp_path / "single" / "metrics.md").read_text()
    assert "val_top_share" in records["single"][0] and "val_xe" in records["single"][0]
    from mllm.rescore import rescore  # the test report again from best.pt, with another beam size

    again = rescore(tmp_path / "single", tmp_path / "again", ["eval.beam_size=2"], log=lambda _: None)["summary"]
    assert set(again["test"]) == {"supervised, greedy", "supervised, beam 2", "SCST, greedy", "SCST, beam 2"}
    for rows in ("supervised, greedy", "SCST, greedy"):  # greedy does not depend on the beam size: equal
        assert json.loads(json.dumps(again["test"][rows])) == metrics["test"][rows]  # (tuples as JSON keeps them)
    assert json.loads((tmp_path / "again" / "config.json").read_text())["eval"]["beam_size"] == 2
