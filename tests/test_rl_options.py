"""SCST's options beyond the preset, from the tiny trained captioner: training on beams (`rl.sampler=beam`) and
fresh augmented feature views (`rl.feature_views`)."""

import pytest
import torch

from mllm.training.config import ConfigError, load_config


def test_beam_sampler_rewards_each_images_best_beams(tiny_supervised, mirror, data_root):
    """rl.sampler=beam: the policy term's captions are each image's rl.samples best beams, found with the grounding
    bias that dev and test decode with."""
    from mllm.data import prepare_flickr8k
    from mllm.language.beams import beam_nbest
    from mllm.rl.train import SCSTTask

    path, chosen = tiny_supervised
    cfg = load_config("rl", "tiny", [f"init.captioner={path}", "rl.sampler=beam", "eval.grounding=2.0"])
    task = SCSTTask(cfg, prepare_flickr8k(data_root, mirror, image_size=32))
    model, features, r = task.model.eval(), task.features_of(chosen), cfg.rl
    out = task.loss(model, (features, chosen, torch.arange(4)))
    with torch.no_grad():
        prefix = model.image_tokens(features=features)
        beams, _ = beam_nbest(model.gpt, prefix, model.bos_id, model.eos_id, r.max_len, r.samples, model.banned,
                              model.grounding_bias(prefix, 2.0))
        plain, _ = beam_nbest(model.gpt, prefix, model.bos_id, model.eos_id, r.max_len, r.samples, model.banned)
    assert not torch.equal(plain, beams)  # the bias changes the beams here: the test sees whether it is applied
    want = task.reward([task.tokenizer.decode(x) for x in beams], chosen.numpy().repeat(r.samples)).mean()
    assert float(out.metrics["reward_sample"]) == pytest.approx(float(want), abs=1e-6)
    greedy = model.generate(features=features, max_len=r.max_len)  # the baseline's caption: the plain greedy one
    want = task.reward([task.tokenizer.decode(g) for g in greedy], chosen.numpy()).mean()
    assert float(out.metrics["reward_greedy"]) == pytest.approx(float(want), abs=1e-6)
    out.total.backward()  # a loss with gradients, as for samples


def test_feature_views_are_fresh_augmentations_one_drawn_per_image(tiny_supervised, mirror, data_root, tmp_path):
    from mllm.data import prepare_flickr8k
    from mllm.rl.train import SCSTTask

    path, _ = tiny_supervised
    data = prepare_flickr8k(data_root, mirror, image_size=32)
    one = SCSTTask(load_config("rl", "tiny", [f"init.captioner={path}"]), data)
    three = SCSTTask(load_config("rl", "tiny", [f"init.captioner={path}", "rl.feature_views=3"]), data)
    assert three.features.shape[0] == 3 and torch.equal(three.features[0], one.features[0])  # view 0: the image
    assert not torch.equal(three.features[1], three.features[0]) and not torch.equal(three.features[1],
                                                                                      three.features[2])
    seen = set()
    for step in (1, 2, 3):
        pixels, images, seeds = three.batch(step, 0)
        rows = three.captioning.feature_row[images]
        views = [next(v for v in range(3) if torch.equal(three.features[v, r], p)) for r, p in zip(rows, pixels,
                                                                                                 strict=True)]
        seen.update(views)
    assert seen == {0, 1, 2}  # every view is drawn
    with pytest.raises(ConfigError, match="rl.feature_views=0"):
        SCSTTask(load_config("rl", "tiny", [f"init.captioner={path}", "rl.feature_views=0"]), data)
    state = torch.load(path, weights_only=False)  # a supervised run that did not augment: views would be copies
    state["config"]["augment"] = {**state["config"]["augment"], "crop_padding": 0, "flip": False}
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    with pytest.raises(ConfigError, match="did not augment"):
        SCSTTask(load_config("rl", "tiny", [f"init.captioner={plain}", "rl.feature_views=2"]), data)


def test_dropout_option_keeps_the_samples_and_regularises_only_the_gradient(tiny_supervised, mirror, data_root):
    """rl.dropout=true: the same captions are sampled and rewarded (without dropout), but the teacher-forced pass that
    gives their log-probabilities runs with the captioner's dropout on, so the loss differs; off, it is the eval
    model's."""
    from mllm.data import prepare_flickr8k
    from mllm.rl.train import SCSTTask

    path, chosen = tiny_supervised
    data = prepare_flickr8k(data_root, mirror, image_size=32)
    out = {}
    for on in (False, True):
        task = SCSTTask(load_config("rl", "tiny", [f"init.captioner={path}", f"rl.dropout={str(on).lower()}"]), data)
        assert task.model.gpt.cfg.dropout > 0  # the tiny captioner has dropout to turn on
        torch.manual_seed(1)
        out[on] = task.loss(task.model, (task.features_of(chosen), chosen, torch.arange(4)))
        assert task.model.gpt.training == on  # the pass that made the loss ran in this mode
    for key in ("reward_sample", "reward_greedy", "sample_len"):  # the same captions, sampled without dropout
        assert float(out[True].metrics[key]) == float(out[False].metrics[key])
    assert not torch.allclose(out[True].total, out[False].total)
    out[True].total.backward()
