"""Stage lineage: a finished stage whose starting checkpoint changed is stale, trained again, the old run kept."""

from __future__ import annotations

import json
from pathlib import Path


def _fake_training(calls: list):
    """A stand-in for `main.py train-*`: records the command and writes a finished run as the Trainer would."""
    from mllm.io import atomic_write_json
    from mllm.training.config import load_config
    from mllm.training.lineage import record_inits

    def train(argv):
        calls.append(argv)
        run = Path(argv[argv.index("--run-dir") + 1])
        name = {"train-align": "align", "train-mllm": "mllm", "train-rl": "rl"}[argv[0]]
        config = load_config(name, argv[argv.index("--preset") + 1],
                             [a for a in argv if "=" in a and not a.startswith("-")])
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / "config.json", config.to_dict())
        (run / "best.pt").write_bytes(f"weights {len(calls)}".encode())
        atomic_write_json(run / "summary.json", {"inits": record_inits(config)})
        return 0

    return train


def test_a_run_whose_starting_checkpoint_changed_is_trained_again(tmp_path, monkeypatch, capsys):
    """The cpu chain, training faked: the alignment and the blind captioner from the ViT, the captioner from the
    alignment, SCST from the captioner. The ViT is trained again: every later run is stale, each trained afresh,
    the old folder kept."""
    import os

    import mllm.cli
    from mllm.pipeline import STAGES, run_training_stage

    stages = {s.name: s for s in STAGES}
    chain = (("align", "align-cpu"), ("captioner", "mllm-cpu"), ("blind", "mllm-cpu-blind"), ("scst", "rl-cpu"))
    calls: list = []
    monkeypatch.setattr(mllm.cli, "main", _fake_training(calls))
    vit = tmp_path / "vit-cpu"
    vit.mkdir()
    (vit / "best.pt").write_bytes(b"the first ViT")
    for name, _ in chain:
        assert run_training_stage(stages[name], "cpu", tmp_path, []) == "fresh"
    align = tmp_path / "align-cpu" / "best.pt"
    summary = json.loads((tmp_path / "mllm-cpu" / "summary.json").read_text())
    assert summary["inits"]["init.vision"]["path"] == str(align)
    summary = json.loads((tmp_path / "align-cpu" / "summary.json").read_text())
    assert summary["inits"]["init.vision"]["path"] == str(vit / "best.pt")
    for name, _ in chain:  # the same checkpoints: finished, skipped
        assert run_training_stage(stages[name], "cpu", tmp_path, []) == "skipped"
    assert len(calls) == 4

    (vit / "best.pt").write_bytes(b"the ViT trained again")
    capsys.readouterr()
    for name, run in chain:
        assert run_training_stage(stages[name], "cpu", tmp_path, []) == "fresh", name
        assert (tmp_path / f"{run}.stale-1" / "summary.json").is_file()
    out = capsys.readouterr().out
    assert f"{tmp_path / 'align-cpu'} holds a finished align run that is stale: init.vision: " \
           f"{vit / 'best.pt'} is not the checkpoint the run started from" in out
    assert f"{tmp_path / 'mllm-cpu'} holds a finished captioner run that is stale: init.vision: " \
           f"{align} is not the checkpoint the run started from" in out
    assert f"{tmp_path / 'rl-cpu'} holds a finished scst run that is stale: init.captioner: " in out
    assert "kept in" in out and [c[0] for c in calls[4:]] == ["train-align", "train-mllm", "train-mllm", "train-rl"]
    for name, _ in chain:
        assert run_training_stage(stages[name], "cpu", tmp_path, []) == "skipped"

    # a run from before the record existed: stale only if the checkpoint is newer than the run's start
    summary_path = tmp_path / "mllm-cpu" / "summary.json"
    summary_path.write_text(json.dumps({"kind": "captioner"}))
    started = (tmp_path / "mllm-cpu" / "config.json").stat().st_mtime
    os.utime(align, (started - 60, started - 60))
    assert run_training_stage(stages["captioner"], "cpu", tmp_path, []) == "skipped"
    os.utime(align, (started + 60, started + 60))
    assert run_training_stage(stages["captioner"], "cpu", tmp_path, []) == "fresh"
    assert "init.vision: " + str(align) + " was written after the run started" in capsys.readouterr().out


def test_tiny_scst_is_trained_again_when_its_captioner_changes(tmp_path, mirror, data_root, capsys, monkeypatch):
    """Real tiny runs: the captioner and SCST from it; the captioner's checkpoint changes; SCST is not skipped, and
    a stopped SCST run (its record in last.pt) is not resumed from the old one either."""
    import torch

    import mllm.pipeline
    from mllm.pipeline import STAGES, run_training_stage
    from mllm.training.lineage import file_sha256

    overrides = mllm.pipeline.stage_overrides  # every run without its test report: lineage is what is checked here
    monkeypatch.setattr(mllm.pipeline, "stage_overrides", lambda *args: [*overrides(*args), "eval.test=false"])
    stages = {s.name: s for s in STAGES}
    data = ["--data-root", str(data_root), "--data-mirror", str(mirror)]
    captioner, rl = tmp_path / "mllm-tiny", tmp_path / "rl-tiny"
    assert run_training_stage(stages["captioner"], "tiny", tmp_path, data) == "fresh"
    assert run_training_stage(stages["scst"], "tiny", tmp_path, data) == "fresh"
    recorded = json.loads((rl / "summary.json").read_text())["inits"]["init.captioner"]
    assert recorded == {"path": str(captioner / "best.pt"), "sha256": file_sha256(captioner / "best.pt")}
    assert torch.load(rl / "last.pt", weights_only=False)["inits"] == {"init.captioner": recorded}
    assert run_training_stage(stages["scst"], "tiny", tmp_path, data) == "skipped"

    state = torch.load(captioner / "best.pt", weights_only=False)  # the captioner changes (as if retrained)
    next(iter(state["model"].values())).add_(0.01)
    torch.save(state, captioner / "best.pt")
    (rl / "summary.json").unlink()  # SCST stopped mid-way: its record is in last.pt
    capsys.readouterr()
    assert run_training_stage(stages["scst"], "tiny", tmp_path, data) == "fresh"
    out = capsys.readouterr().out
    assert "holds a stopped scst run that is stale: init.captioner: " in out and "resuming" not in out
    assert (tmp_path / "rl-tiny.stale-1" / "last.pt").is_file()
    new = json.loads((rl / "summary.json").read_text())["inits"]["init.captioner"]["sha256"]
    assert new == file_sha256(captioner / "best.pt") != recorded["sha256"]
