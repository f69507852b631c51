"""Strict configs: bad values fail when the config is loaded, with the key and the fix in the message."""

import re
from pathlib import Path

import pytest

from mllm.training.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("config, override, message", [
    ("gpt", "train.dtype=float16", "train.dtype must be one of float32, bfloat16"),
    ("gpt", "train.device=gpu", "train.device must be auto, cpu, mps, cuda or cuda:N"),
    ("gpt", "train.best_mode=maximum", "train.best_mode must be one of min, max"),
    ("gpt", "train.finish_with=final", "train.finish_with must be one of best, last"),
    ("vit", "model.pool=max", "model.pool must be one of cls, mean"),
    ("gpt", "train.grad_accum=0", "train.grad_accum must be at least 1, got 0"),
    ("gpt", "train.eval_interval=0", "train.eval_interval must be at least 1, got 0"),
    ("gpt", "train.batch_size=-1", "train.batch_size must be at least 1"),
    ("gpt", "sample.top_k=abc", "sample.top_k must be int, got str 'abc'"),
    ("gpt", "sample.top_p=high", "sample.top_p must be float, got str 'high'"),
    ("vit", "data.mirror=3", "data.mirror must be str, got int 3"),
])
def test_bad_values_fail_at_load_time(config, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(config, "tiny", [override])


def test_good_values_of_strict_keys_pass():
    cfg = load_config("gpt", "tiny", ["train.device=cuda:1", "train.dtype=bfloat16", "sample.top_k=5",
                                      "sample.top_p=0.9", "sample.top_k=null", "data.mirror=/data/mirror"])
    assert (cfg.train.device, cfg.sample.top_k, cfg.sample.top_p) == ("cuda:1", None, 0.9)
    assert load_config("vit", "cpu", ["model.pool=mean"]).model.pool == "mean"


def test_yaml_floats_without_a_dot_are_floats(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  lr: 3e-4\n  eps: 1E+2\n  steps: 10\n  name: 3e-4x\n"
                    "presets:\n  tiny:\n    train.lr: 5e-5\n")
    cfg = load_config(path)
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float) and cfg.train.eps == 100.0
    assert cfg.train.steps == 10 and cfg.train.name == "3e-4x"
    assert load_config(path, "tiny").train.lr == 5e-5
    assert load_config(path, None, ["train.lr=2e-3"]).train.lr == 2e-3


def test_a_null_default_needs_a_declared_type(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("sample:\n  top_k: null\n")
    with pytest.raises(ConfigError, match=r"keys with a null default need a type in its `types:` section: "
                                          r"\['sample.top_k'\]"):
        load_config(path)
    path.write_text("sample:\n  top_k: null\ntypes:\n  sample.top_k: integer\n")
    with pytest.raises(ConfigError, match="must each be one of"):
        load_config(path)


def test_pyproject_asks_for_the_torch_the_code_needs():
    """The fused AdamW on the CPU (the Trainer's default there) arrived in torch 2.4; zeros, not NaN, from the
    fused attention kernel for a query that may attend to nothing, in 2.5."""
    text = (REPO / "pyproject.toml").read_text()
    spec = re.search(r'"torch>=(\d+)\.(\d+)', text)
    assert spec and (int(spec[1]), int(spec[2])) >= (2, 5), "pyproject.toml must require torch>=2.5"


@pytest.mark.parametrize("text, value", [("1_000", 1000), (".5", 0.5), ("1.0e5", 1.0e5), ("1e5", 1e5), ("-2E-3", -2e-3),
                                         ("inf", "inf"), ("3e-4x", "3e-4x"), ("12", 12), ("[1e-3, 2]", [1e-3, 2])])
def test_yaml_numbers(text, value):
    from mllm.training.config import read_yaml

    got = read_yaml(f"x: {text}")["x"]
    assert got == value and type(got) is type(value)


def test_the_vit_epochs_and_steps_cannot_both_be_given(mirror, data_root):
    from mllm.data import prepare_cifar10
    from mllm.vision.train import ImageClassificationTask

    data = prepare_cifar10(data_root, mirror)
    with pytest.raises(ConfigError, match=r"train.epochs=2 sets max_steps \(1406\).*got train.max_steps=100"):
        ImageClassificationTask(load_config("vit", "cpu", ["train.epochs=2", "train.max_steps=100"]), data)
    cfg = load_config("vit", "cpu", ["train.epochs=2"])
    ImageClassificationTask(cfg, data)
    assert (cfg.train.max_steps, cfg.train.eval_interval) == (1406, 703)
    ImageClassificationTask(cfg, data)  # a resumed run's saved config holds the derived values: still fine
