"""Resuming continues with the run's saved config; changes, other shapes and broken files are clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mllm.cli import main
from mllm.training.config import load_config

REPO = Path(__file__).resolve().parents[1]
STEPS = ["train.max_steps=4", "train.device=cpu", "train.lr=0.01", "train.eval_interval=2"]


@pytest.fixture
def run(tmp_path, mirror):
    run = tmp_path / "run"
    assert main(["train-llm", "--preset", "tiny", "--run-dir", str(run), "--data-mirror", str(mirror), *STEPS]) == 0
    return run


def _resume(run, mirror, *extra):
    return main(["train-llm", "--run-dir", str(run), "--data-mirror", str(mirror), "--resume", *extra])


def test_resume_takes_the_saved_config_not_the_default_preset(run, mirror, capsys):
    saved = torch.load(run / "last.pt", weights_only=False)["config"]
    assert saved["preset"] == "tiny" and saved["train"]["lr"] == 0.01
    assert _resume(run, mirror) == 0  # no --preset, no overrides: the tiny run's own settings
    assert "resumed from" in capsys.readouterr().out
    assert torch.load(run / "last.pt", weights_only=False)["config"] == saved


def test_an_override_that_changes_the_saved_config_is_an_error_naming_the_keys(run, mirror, capsys):
    assert _resume(run, mirror, "train.lr=0.5", "train.max_steps=4") == 2
    err = capsys.readouterr().err
    assert "the command line changes train.lr: 0.01 -> 0.5" in err and "max_steps" not in err
    assert "--allow-config-change" in err
    assert _resume(run, mirror, "--preset", "cpu") == 2
    assert "--preset cpu differs from the run's own preset 'tiny'" in capsys.readouterr().err


def test_allowed_changes_are_logged_and_a_model_of_another_shape_is_a_clear_error(run, mirror, capsys):
    assert _resume(run, mirror, "--allow-config-change", "train.max_steps=6") == 0
    assert "resuming with a changed config (--allow-config-change): train.max_steps: 4 -> 6" in capsys.readouterr().out
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 6
    assert _resume(run, mirror, "--allow-config-change", "model.d_model=48", "train.max_steps=8") == 2
    err = capsys.readouterr().err
    assert "does not fit the model built from the config" in err
    assert "tok_embed.weight: checkpoint (65, 32) vs model (65, 48)" in err and "Traceback" not in err


def test_a_corrupt_last_checkpoint_names_the_file_and_what_to_do(run, mirror, capsys):
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    assert _resume(run, mirror) == 2
    err = capsys.readouterr().err
    assert f"{last} is not a readable checkpoint" in err and "replace it with another checkpoint" in err
    last.write_bytes(b"")
    assert _resume(run, mirror) == 2
    assert f"{last} is not a readable checkpoint" in capsys.readouterr().err


def test_loading_for_inference_imports_no_training_code(run, tmp_path):
    """The ViT's normalisation and classes, the GPT's tokenizer travel in the checkpoint, with the model."""
    from mllm.vision.vit import ViT, ViTConfig

    cfg = load_config("vit", "tiny")
    vit = ViT(ViTConfig(**cfg.model))
    torch.save({"kind": "vit", "model": vit.state_dict(), "config": cfg.to_dict(),
                "extra": {"model_config": vit.config_dict(), "classes": list("abcdefghij")}}, tmp_path / "vit.pt")
    code = f"""
import sys, torch
from mllm.vision.vit import load_vit
from mllm.language.gpt import load_gpt
vit, classes = load_vit({str(tmp_path / "vit.pt")!r}, image_size=48)
gpt, tok = load_gpt({str(run)!r})
assert classes == list("abcdefghij") and vit.cfg.image_size == 48 and vit.cfg.mean[0] == 0.4914
vit(vit.normalize(torch.zeros(1, 48, 48, 3, dtype=torch.uint8)))
gpt.generate(tok.encode_tensor("A")[None], 3)
loaded = sorted(m for m in sys.modules if m.startswith("mllm.training") or m.endswith((".train", ".loop")))
print("training modules:", loaded)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "training modules: []" in done.stdout


def test_where_a_run_reads_data_and_computes_may_change_on_resume(run, mirror, tmp_path, capsys):
    """data.root, data.mirror and train.device are not the recipe: another machine may resume the run."""
    assert main(["train-llm", "--run-dir", str(run), "--data-mirror", str(mirror), "--data-root",
                 str(tmp_path / "elsewhere"), "--device", "auto", "--resume"]) == 0
    used = json.loads((run / "config.json").read_text())  # the config the resumed run went on with
    assert used["data"]["root"] == str(tmp_path / "elsewhere") and used["train"]["device"] == "auto"


def test_a_checkpoint_from_before_a_config_key_existed_resumes_with_its_default(run, mirror, capsys):
    state = torch.load(run / "last.pt", weights_only=False)
    del state["config"]["sample"]["top_p"]  # a key added since the run started: its default is what runs did before
    torch.save(state, run / "last.pt")
    assert _resume(run, mirror) == 0
    assert "written before the config keys sample.top_p existed: resuming with their defaults (sample.top_p=" \
        in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["sample"]["top_p"] == load_config("gpt")["sample"]["top_p"]
