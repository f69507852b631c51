"""SCST: the loss pushes samples by the sign of their advantage, the reward equals CIDEr-D written out with
training-set document frequencies, a tiny SCST run on 4 real Flickr8k images raises their greedy reward,
`train-rl` end to end, and the model-mismatch error."""

import json
import math
from collections import Counter

import pytest
import torch

from mllm.cli import main
from mllm.evaluation.tokenize import simple_tokenize
from mllm.language.decoding import logprobs_of, teacher_inputs
from mllm.multimodal.mllm import Captioner, CaptionerConfig
from mllm.rl.reward import CiderReward
from mllm.rl.scst import baseline_rewards, scst_loss
from mllm.training.config import ConfigError, flatten, load_config


def test_one_step_makes_a_sample_above_the_baseline_likelier_and_one_below_less_likely():
    torch.manual_seed(0)
    model = Captioner(CaptionerConfig({"image_size": 16, "patch_size": 4, "d_model": 16, "num_layers": 1,
                                       "num_heads": 2},
                                      {"vocab_size": 12, "context": 24, "d_model": 32, "num_layers": 1,
                                       "num_heads": 2}, bos_id=0, eos_id=1)).eval()
    images = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8)
    samples, _ = model.sample_captions(images, n=4, max_len=6, generator=torch.Generator().manual_seed(1))
    rewards, greedy = torch.tensor([0.9, 0.1, 0.5, 0.5]), torch.tensor([0.5])
    advantage = rewards - baseline_rewards(rewards, greedy, 4)
    assert advantage.tolist() == pytest.approx([0.4, -0.4, 0.0, 0.0])

    def logp():
        logits, _ = model(teacher_inputs(samples, 0), images=images.expand(4, -1, -1, -1))
        lp, mask, _ = logprobs_of(logits, samples, 1)
        return lp, mask

    before = logp()[0].sum(1)
    total, count = scst_loss(*logp(), advantage)
    assert count == 4
    (total / count).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
        after = logp()[0].sum(1)
    assert after[0] > before[0] and after[1] < before[1]


def test_mean_baseline_is_the_mean_of_the_other_samples():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    assert baseline_rewards(rewards, torch.zeros(2), 3, "mean").tolist() == [2.5, 2.0, 1.5, 25.0, 20.0, 15.0]
    with pytest.raises(ValueError, match="at least 2 samples"):
        baseline_rewards(rewards, torch.zeros(6), 1, "mean")


def _cider_d_written_out(cand, refs, corpus):
    """CIDEr-D as its paper and pycocoevalcap define it, one caption at a time, df from `corpus` (reference sets)."""
    def grams(tokens, n):
        return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))

    df = Counter()
    for ref_set in corpus:
        df.update({g for ref in ref_set for n in range(1, 5) for g in grams(ref, n)})
    log_n = math.log(len(corpus))
    total = 0.0
    for ref in refs:
        per_n = []
        for n in range(1, 5):
            vc = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in grams(cand, n).items()}
            vr = {g: c * (log_n - math.log(max(1.0, df[g]))) for g, c in grams(ref, n).items()}
            norm_c = math.sqrt(sum(v * v for v in vc.values()))
            norm_r = math.sqrt(sum(v * v for v in vr.values()))
            dot = sum(min(vc[g], vr[g]) * vr[g] for g in vc if g in vr)
            cos = dot / (norm_c * norm_r) if norm_c and norm_r else 0.0
            delta = max(len(cand) - 1, 0) - max(len(ref) - 1, 0)
            per_n.append(cos * math.exp(-delta**2 / (2 * 6.0**2)))
        total += sum(per_n) / 4
    return 10 * total / len(refs)


def test_reward_equals_cider_d_written_out_with_training_document_frequencies(mirror, data_root):
    from mllm.data import prepare_flickr8k

    data = prepare_flickr8k(data_root, mirror, image_size=32)
    train = data.split_indices("train")[:300]
    references = [data.captions_of(i) for i in range(len(data.images))]
    reward = CiderReward(references, train)
    images = [int(train[3]), int(train[3]), int(train[50]), int(data.split_indices("dev")[0])]
    captions = [references[images[0]][0], "a dog runs through the grass", references[int(train[7])][1],
                "two people are sitting on a bench ."]
    got = reward(captions, images)
    corpus = [[simple_tokenize(c).split() for c in references[i]] for i in train]
    for caption, image, value in zip(captions, images, got, strict=True):
        refs = [simple_tokenize(c).split() for c in references[image]]
        assert value == pytest.approx(_cider_d_written_out(simple_tokenize(caption).split(), refs, corpus), abs=1e-9)
    assert got[0] > got[1] > 0
    with pytest.raises(ValueError, match="one image per caption"):
        reward(captions, images[:2])


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_tiny_scst_on_four_real_images_raises_their_greedy_reward(tiny_supervised, mirror, data_root, baseline,
                                                                   monkeypatch):
    from mllm.data import prepare_flickr8k
    from mllm.rl.train import SCSTTask

    path, chosen = tiny_supervised
    cfg = load_config("rl", "tiny", [f"init.captioner={path}", "rl.samples=16", "rl.max_len=16",
                                     f"rl.baseline={baseline}", "rl.xe_weight=0"])  # SCST alone
    task = SCSTTask(cfg, prepare_flickr8k(data_root, mirror, image_size=cfg.model.image_size))
    model = task.model.eval()

    def greedy_reward():
        captions = [task.tokenizer.decode(r) for r in model.generate(features=task.features_of(chosen), max_len=16)]
        return float(task.reward(captions, chosen.numpy()).mean())

    before = greedy_reward()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for step in range(40):
        out = task.loss(model, (task.features_of(chosen), chosen, torch.arange(4) + 1000 * step))
        opt.zero_grad()
        (out.total / out.count).backward()
        opt.step()
    assert set(out.metrics) == {"reward_sample", "reward_greedy", "advantage", "sample_len", "entropy",
                                "reward_share"}
    # reward_share is the rewards' share of the loss's time: on a clock where decoding takes 1 s and rewards 3 s, 3/4
    import mllm.rl.train

    clock, reward, decode = [0.0], task.reward, mllm.rl.train.sample_per_image  # samples and greedy captions
    monkeypatch.setattr(mllm.rl.train, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    monkeypatch.setattr(task, "reward", lambda *a: (clock.__setitem__(0, clock[0] + 3.0), reward(*a))[1])
    monkeypatch.setattr(mllm.rl.train, "sample_per_image",
                        lambda *a, **k: (clock.__setitem__(0, clock[0] + 1.0), decode(*a, **k))[1])
    share = task.loss(model, (task.features_of(chosen), chosen, torch.arange(4)))
    assert float(share.metrics["reward_share"]) == pytest.approx(0.75)
    monkeypatch.undo()
    assert greedy_reward() > before + 0.1


def test_grounded_policy_samples_scores_and_baselines_with_the_grounding_bias(tiny_supervised, mirror, data_root):
    """rl.grounded: the greedy baseline is the grounded greedy caption, the samples come from softmax((logits +
    bias) / T) with top-k, and the loss's entropy is of that same distribution."""
    from mllm.data import prepare_flickr8k
    from mllm.rl.sampling import sample_per_image
    from mllm.rl.scst import policy_logprobs
    from mllm.rl.train import SCSTTask

    path, chosen = tiny_supervised
    data, rewards = prepare_flickr8k(data_root, mirror, image_size=32), []
    for grounded, strength in ((True, 3.0), (False, 0.0)):
        cfg = load_config("rl", "tiny", [f"init.captioner={path}", f"rl.grounded={str(grounded).lower()}",
                                         "eval.grounding=3.0", "rl.temperature=0.7", "rl.top_k=3"])
        task = SCSTTask(cfg, data)
        assert task.policy_grounding == strength
        model, features, seeds, r = task.model.eval(), task.features_of(chosen), torch.arange(4), cfg.rl
        out = task.loss(model, (features, chosen, seeds))
        greedy = model.generate(features=features, max_len=r.max_len, grounding=strength)
        want = task.reward([task.tokenizer.decode(g) for g in greedy], chosen.numpy()).mean()
        assert float(out.metrics["reward_greedy"]) == pytest.approx(float(want), abs=1e-6)
        rewards.append(float(want))
        with torch.no_grad():
            prefix = model.image_tokens(features=features)
            bias = model.grounding_bias(prefix, strength) if strength else torch.zeros(4, model.gpt.cfg.vocab_size)
            samples = sample_per_image(model.gpt, prefix, seeds, r.samples, model.bos_id, model.eos_id, r.max_len,
                                       r.temperature, r.top_k, model.banned, bias)
            texts = [task.tokenizer.decode(x) for x in samples]
            want = task.reward(texts, chosen.numpy().repeat(r.samples)).mean()
            logits = model(teacher_inputs(samples, model.bos_id), features=features.repeat_interleave(r.samples, 0))[0]
            _, mask, entropy = policy_logprobs(logits + bias.repeat_interleave(r.samples, 0)[:, None], samples,
                                               model.eos_id, r.temperature, r.top_k, model.banned)
        assert float(out.metrics["reward_sample"]) == pytest.approx(float(want), abs=1e-6)
        assert float(out.metrics["entropy"]) == pytest.approx(float(entropy.sum() / mask.sum()), rel=1e-5)
    assert rewards[0] != rewards[1]  # the grounded greedy captions differ from the plain ones here
    with pytest.raises(ConfigError, match="rl.grounded=true needs"):
        SCSTTask(load_config("rl", "tiny", [f"init.captioner={path}", "rl.grounded=true", "eval.grounding=0"]), data)


def test_train_rl_end_to_end_and_the_mismatch_error(tiny_supervised, tmp_path, mirror, data_root, capsys):
    path, _ = tiny_supervised
    run = tmp_path / "rl"
    common = ["--data-mirror", str(mirror), "--data-root", str(data_root), "train.device=cpu",
              f"init.captioner={path}"]
    assert main(["train-rl", "--preset", "tiny", "--run-dir", str(run), *common]) == 0
    for name in ("metrics.json", "metrics.md", "captions_test.json", "gallery.png", "curves.png", "best.pt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"supervised, greedy", "supervised, beam 3", "SCST, greedy", "SCST, beam 3"}
    captions = json.loads((run / "captions_test.json").read_text())
    for strategy in ("greedy", "beam"):  # the share of test images whose caption SCST changed
        differ = [c["supervised"][strategy] != c["SCST"][strategy] for c in captions.values()]
        assert metrics["changed"][strategy] == pytest.approx(sum(differ) / len(differ))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all({"reward_sample", "reward_greedy", "entropy"} <= set(r) for r in records if "train_loss" in r)
    assert records[0]["step"] == 0 and "val_cider" in records[0]  # the supervised model, before any SCST step
    assert [r["step"] for r in records if "train_loss" in r] == [1, 2, 3, 4, 5, 6]
    assert main(["caption", str(run), "--flickr", next(iter(json.loads((run / "captions_test.json").read_text()))),
                 "--data-mirror", str(mirror), "--data-root", str(data_root)]) == 0
    capsys.readouterr()
    assert main(["train-rl", "--preset", "tiny", "--run-dir", str(tmp_path / "bad"), *common,
                 "model.text.d_model=48", "model.max_caption_len=9"]) == 2
    err = capsys.readouterr().err
    assert "model.max_caption_len: checkpoint 24 vs config 9" in err
    assert "model.text.d_model: checkpoint 32 vs config 48" in err
    for bad, message in (("rl.temperature=0", "rl.temperature must be above 0"),
                         ("rl.baseline=mean rl.samples=1", "needs rl.samples >= 2")):
        assert main(["train-rl", "--preset", "tiny", "--run-dir", str(tmp_path / "t"), *common, *bad.split()]) == 2
        assert message in capsys.readouterr().err
    assert main(["train-rl", "--preset", "tiny", "--run-dir", str(tmp_path / "none"), "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "init.captioner=runs/nowhere"]) == 2
    assert "python main.py train-mllm" in capsys.readouterr().err


def _presets(name: str) -> list[str]:
    from mllm.training.config import CONFIG_DIR, read_yaml

    return list(read_yaml((CONFIG_DIR / f"{name}.yaml").read_text())["presets"])


def test_every_supervised_preset_has_an_rl_preset_and_the_others_are_variants_of_one():
    supervised = _presets("mllm")
    assert set(supervised) <= set(_presets("rl"))
    for extra in set(_presets("rl")) - set(supervised):  # e.g. cpu-greedy: SCST settings on cpu's captioner
        assert extra.rsplit("-", 1)[0] in supervised, extra
    greedy, mean = (flatten(load_config("rl", p)) for p in ("cpu-greedy", "cpu"))
    assert {k for k in greedy if greedy[k] != mean[k]} == {"preset", "rl.baseline"}
    assert greedy["rl.baseline"] == "greedy"


@pytest.mark.parametrize("preset", _presets("rl"))
def test_rl_presets_hold_the_supervised_presets_model_settings(preset):
    base = preset if preset in _presets("mllm") else preset.rsplit("-", 1)[0]
    assert load_config("rl", preset).model.to_dict() == load_config("mllm", base).model.to_dict()
