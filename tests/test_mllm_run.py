"""`train-mllm` and `caption` end to end on real Flickr8k data (tiny preset), and their errors."""

import json

import pytest
import torch

from mllm.cli import main
from mllm.multimodal.mllm import load_captioner
from mllm.training.config import ConfigError, load_config
from mllm.training.lineage import file_sha256
from mllm.vision.vit import ViT, ViTConfig


@pytest.fixture(scope="module")
def mllm_run(tmp_path_factory, mirror, data_root):
    run = tmp_path_factory.mktemp("mllm-tiny")
    assert main(["train-mllm", "--preset", "tiny", "--run-dir", str(run), "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "train.device=cpu"]) == 0
    return run


def test_train_mllm_tiny_writes_the_report(mllm_run):
    for name in ("summary.json", "metrics.jsonl", "curves.png", "best.pt", "metrics.json", "metrics.md",
                 "captions_test.json", "gallery.png", "attention_0.png", "attention_3.png"):
        assert (mllm_run / name).is_file(), name
    captions = json.loads((mllm_run / "captions_test.json").read_text())
    assert len(captions) == 50 and all(len(c["references"]) == 5 for c in captions.values())  # eval.test_images
    metrics = json.loads((mllm_run / "metrics.json").read_text())
    assert any(k.startswith("baseline: most frequent") for k in metrics)
    for row in metrics.values():
        assert 0 <= row["BLEU-1"] <= 1 and row["CIDEr-D"] >= 0
        assert 0 <= row["hallucination_per_caption"] <= 1 and row["distinct"] >= 1
    human = metrics["human: first reference vs the other four"]  # people score far above a 6-step model
    assert human["CIDEr-D"] > 0.5 and human["copied"] < 0.2 and human["distinct"] > 45
    assert metrics["baseline: most frequent training caption"]["top_share"] == 1.0
    records = [json.loads(line) for line in (mllm_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_cider" in r] == [3, 6]
    marks = [r for r in records if "train_loss" in r]
    assert len(marks) == 6


def test_training_batches_frozen_then_full(mirror, data_root):
    """Frozen steps: cached features of an augmented view (view 0 = the image itself); later steps: augmented
    uint8 images. Captions BOS w_1 .., targets w_1 .. EOS then -100; the same step gives the same batch."""
    from mllm.data import prepare_flickr8k
    from mllm.multimodal.train import CaptioningTask

    cfg = load_config("mllm", "tiny")
    task = CaptioningTask(cfg, prepare_flickr8k(data_root, mirror, image_size=cfg.model.image_size))
    assert task.frozen_steps == 3 and task.features.shape[0] == cfg.augment.feature_views
    train = torch.from_numpy(task.split["train"][:5]).long()
    with torch.no_grad():
        task.model.eval()
        exact = task.model.patch_features(task.images[train])  # the cache keeps them as float16
        assert torch.allclose(task.features_of(train), exact, atol=2e-3 * float(exact.abs().max()))
        assert not torch.allclose(task.features_of(train, 1), task.features_of(train))
    assert task.features.shape[1] == len(task.split["train"])  # rows for train images only
    with pytest.raises(ValueError, match="not train images"):
        task.features_of(torch.from_numpy(task.split["dev"][:2]).long())
    batch = task.batch(1, 0)
    assert len(batch) == 4 and batch[3].shape == (cfg.train.batch_size, cfg.model.grounding_words)  # word targets
    features, captions, targets = batch[:3]
    assert features.dtype == torch.float32 and features.shape[:2] == (cfg.train.batch_size, task.model.vit.grid**2)
    images, captions4, targets4 = task.batch(4, 0)[:3]
    assert images.dtype == torch.uint8 and images.shape == (cfg.train.batch_size, 32, 32, 3)
    for a, b in zip(task.batch(4, 0)[:3], (images, captions4, targets4), strict=True):
        assert torch.equal(a, b)
    tok = task.tokenizer
    assert (captions[:, 0] == tok.bos_id).all()
    real = targets != -100
    assert torch.equal(targets[:, :-1][real[:, :-1]], captions[:, 1:][real[:, :-1]])  # shifted by one
    ends = (targets == tok.eos_id).sum(1)
    assert (ends <= 1).all() and ends.sum() > 0  # one EOS target per caption that fits, none for a cut one
    assert (real.long().diff(dim=1) <= 0).all()  # -100 only after the caption
    lengths = real.sum(1)
    assert (targets[torch.arange(len(targets)), lengths - 1] == tok.eos_id)[ends == 1].all()


def test_caption_command(mllm_run, mirror, data_root, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.new("RGBA", (90, 50), (200, 10, 10, 128)).save(image)
    name = next(iter(json.loads((mllm_run / "captions_test.json").read_text())))
    assert main(["caption", str(mllm_run), "--image", str(image), "--flickr", name, "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "--strategy", "greedy"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"{image}: ") and lines[1].startswith(f"{name}: ")
    assert load_captioner(mllm_run)[0].decoding == {"max_len": 8, "beam_size": 3, "length_penalty": 0.0,
                                                  "grounding": 1.0,  # the tiny preset decodes grounded,
                                                  "no_repeat": 2}  # without repeated bigrams
    assert all(len(line.split(": ", 1)[1].split()) <= 8 for line in lines)  # the run's eval.max_len (tiny: 8)
    out = tmp_path / "maps.png"
    assert main(["caption", str(mllm_run), "--flickr", name, "--data-mirror", str(mirror), "--data-root",
                 str(data_root), "--attention", str(out)]) == 0
    assert f"attention maps: {out}" in capsys.readouterr().out
    assert Image.open(out).size[0] > 300  # a PNG: the photo and one panel per word
    assert main(["caption", str(mllm_run), "--image", str(tmp_path / "none.png")]) == 2
    assert "no image file at" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert main(["caption", str(mllm_run), "--image", str(tmp_path / "bad.jpg")]) == 2
    assert "cannot read" in capsys.readouterr().err
    torch.save({"kind": "gpt", "model": {}}, tmp_path / "gpt.pt")
    assert main(["caption", str(tmp_path / "gpt.pt"), "--image", str(image)]) == 2
    assert "holds a 'gpt' model, not a 'captioner' one" in capsys.readouterr().err


def test_a_finished_run_whose_decoding_differs_is_rescored_in_place_not_retrained(mllm_run, tmp_path, mirror,
                                                                                  data_root, capsys):
    import shutil

    from mllm.pipeline import STAGES, run_training_stage

    runs = tmp_path / "runs"
    run = runs / "mllm-tiny"
    shutil.copytree(mllm_run, run)
    cfg = json.loads((run / "config.json").read_text())
    del cfg["eval"]["no_repeat"]  # a run trained before the key existed: it decoded as no_repeat=0 does
    (run / "config.json").write_text(json.dumps(cfg))
    before = {name: (run / name).read_bytes() for name in ("best.pt", "metrics.jsonl", "metrics.json")}
    old_summary = json.loads((run / "summary.json").read_text())
    captioner = next(s for s in STAGES if s.name == "captioner")
    data_args = ["--data-root", str(data_root), "--data-mirror", str(mirror)]
    assert run_training_stage(captioner, "tiny", runs, data_args) == "rescored"
    assert "only its decoding differs from this command's (eval.no_repeat=2)" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["eval"]["no_repeat"] == 2 and summary["rescored"]["overrides"] == ["eval.no_repeat=2"]
    assert summary["rescored"]["keys_added_at_defaults"] == ["eval.no_repeat"]
    assert summary["rescored"]["checkpoint"] == "best.pt"  # the weights it decoded, named and fingerprinted
    assert summary["rescored"]["checkpoint_sha256"] == file_sha256(run / "best.pt")
    assert summary["steps"] == old_summary["steps"] and summary["wall_time_s"] == old_summary["wall_time_s"]
    assert summary["test"] == json.loads((run / "metrics.json").read_text())  # the new report's numbers
    assert summary["test"] == old_summary["test"]  # the run was trained with no_repeat=2: the same report again
    assert (run / "best.pt").read_bytes() == before["best.pt"]  # nothing trained
    assert (run / "metrics.jsonl").read_bytes() == before["metrics.jsonl"]
    kept = run / "report-before-rescore-1"
    assert (kept / "metrics.json").read_bytes() == before["metrics.json"]
    assert "no_repeat" not in json.loads((kept / "config.json").read_text())["eval"]
    assert run_training_stage(captioner, "tiny", runs, data_args) == "skipped"  # its config is the preset's now
    cfg = json.loads((run / "config.json").read_text())
    cfg["eval"]["no_repeat"] = 0
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "best.pt").rename(run / "moved.pt")  # a re-score that fails leaves the run as it was
    with pytest.raises(Exception, match="best.pt"):
        run_training_stage(captioner, "tiny", runs, data_args)
    assert json.loads((run / "config.json").read_text()) == cfg and json.loads((run / "summary.json").read_text()) == \
        summary and not (run / ".rescore").exists() and not (run / "report-before-rescore-2").exists()
    (run / "moved.pt").rename(run / "best.pt")
    cfg = json.loads((run / "config.json").read_text())
    cfg["eval"]["no_repeat"], cfg["train"]["lr"] = 3, 0.5  # a trained setting differs too: an error, as before
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"another config \(eval\.no_repeat: 3 \(run\) vs 2 \(this command\), "
                                          r"train\.lr: 0\.5 \(run\) vs 0\.001"):
        run_training_stage(captioner, "tiny", runs, data_args)


def test_only_decoding_settings_are_rescored(tmp_path):
    from mllm.rescore import decoding_overrides, rescore

    (tmp_path / "config.json").write_text(json.dumps({"rl": {"grounded": False, "sampler": "sample"}}))
    assert decoding_overrides({"eval.no_repeat": (0, 2), "eval.grounding": (1.0, 0.5)}, tmp_path) == [
        "eval.no_repeat=2", "eval.grounding=0.5"]
    for key in ("eval.val_images", "eval.test_images", "train.lr"):  # which images chose best.pt, or training
        assert decoding_overrides({"eval.no_repeat": (0, 2), key: (1, 2)}, tmp_path) == []
    (tmp_path / "config.json").write_text(json.dumps({"rl": {"grounded": True}}))  # SCST's policy decoded so
    assert decoding_overrides({"eval.grounding": (1.0, 0.5)}, tmp_path) == []
    assert decoding_overrides({"eval.beam_size": (3, 2)}, tmp_path) == ["eval.beam_size=2"]
    with pytest.raises(ConfigError, match="trained with eval.grounding"):
        rescore(tmp_path, tmp_path / "out", ["eval.grounding=0.5"])
    (tmp_path / "config.json").write_text(json.dumps({"rl": {"sampler": "beam"}}))  # its samples are beams
    assert decoding_overrides({"eval.beam_size": (3, 2)}, tmp_path) == []
    with pytest.raises(ConfigError, match="only decoding settings"):
        rescore(tmp_path, tmp_path / "out", ["eval.test_images=10"])


def test_a_vision_checkpoint_of_another_size_is_a_clear_error(tmp_path, mirror, data_root, capsys):
    cfg = load_config("vit", "tiny")
    vit = ViT(ViTConfig(**cfg.model))
    torch.save({"kind": "vit", "model": vit.state_dict(),
                "extra": {"model_config": vit.config_dict(), "classes": list("abcdefghij")}}, tmp_path / "vit.pt")
    assert main(["train-mllm", "--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "train.device=cpu", f"init.vision={tmp_path / 'vit.pt'}",
                 "model.vision.d_model=48"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the config (d_model: checkpoint 32 vs config 48" in err and "init.vision=null" in err
    assert "stem" not in err  # the stems agree
    conv = ViT(ViTConfig(**{**cfg.model, "stem": "conv"}))
    old = {k: v for k, v in vit.config_dict().items() if k != "stem"}  # a ViT saved before the stem key: "patch"
    for name, model, config, stem in (("conv.pt", conv, conv.config_dict(), "patch"), ("old.pt", vit, old, "conv")):
        torch.save({"kind": "vit", "model": model.state_dict(),
                    "extra": {"model_config": config, "classes": list("abcdefghij")}}, tmp_path / name)
        assert main(["train-mllm", "--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--data-mirror",
                     str(mirror), "--data-root", str(data_root), "train.device=cpu", f"init.vision={tmp_path / name}",
                     f"model.vision.stem={stem}"]) == 2
        other = "conv" if stem == "patch" else "patch"
        assert f"stem: checkpoint {other!r} vs config {stem!r}" in capsys.readouterr().err
    assert main(["train-mllm", "--preset", "tiny", "--run-dir", str(tmp_path / "run2"), "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "init.vision=runs/nowhere"]) == 2
    assert "init.vision=runs/nowhere: no such run or file; train it first (python main.py train-align" in \
        capsys.readouterr().err
    assert main(["train-mllm", "--preset", "tiny", "--run-dir", str(tmp_path / "run3"), "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "eval.grounding=1.0", "model.grounding_words=0"]) == 2
    assert "eval.grounding=1.0: grounded decoding needs" in capsys.readouterr().err


def test_train_mllm_under_torchrun_matches_one_process(tmp_path, mirror, data_root):
    """Two gloo processes, the frozen (cached features, unused ViT) phase and then the full one."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    common = ["train-mllm", "--preset", "tiny", "--data-mirror", str(mirror), "--data-root", str(data_root),
              "train.device=cpu", "train.max_steps=4", "train.eval_interval=4", "eval.val_images=8",
              "model.text.dropout=0.0",  # dropout masks would differ between one process and two
              "model.grounding_words=20",  # the grounding head's loss and targets, sharded with the captions
              "eval.grounding=1.0",  # dev captions by grounded decoding
              "train.length_pool=2",  # batches of similar length, sharded like any other
              "eval.test=false"]  # the losses are compared, not the test report
    losses = {}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for name, launcher in (("single", [sys.executable]), ("ddp", torchrun)):
        run = tmp_path / name
        done = subprocess.run([*launcher, str(repo / "main.py"), *common, "--run-dir", str(run)], cwd=repo,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["train_loss"] for r in records if "train_loss" in r]
    assert len(losses["ddp"]) == 4
    assert losses["ddp"] == pytest.approx(losses["single"], abs=1e-4)
