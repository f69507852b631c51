"""The one command: `main.py demo --preset tiny` killed mid-stage, run again, finishes without redoing finished
stages and writes a report whose every section and figure exists and whose numbers are the runs' own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ["## Results at a glance", "## The test suite", "## 1. The Transformer core", "## 2. Vision Transformer",
            "## 3. Character-level GPT", "## 4. The captioner", "## 5. SCST", "## Hardware and wall time",
            "## Challenges and solutions"]


def demo(runs: Path, mirror: Path, data_root: Path) -> list[str]:
    return [sys.executable, "main.py", "demo", "--preset", "tiny", "--runs", str(runs), "--data-root",
            str(data_root), "--data-mirror", str(mirror)]


def kill_when(proc: subprocess.Popen, ready, log: Path, seconds: float = 600) -> None:
    deadline = time.time() + seconds
    while not ready():
        assert proc.poll() is None, f"the pipeline ended before the kill:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, "the captioner stage never wrote a checkpoint"
        time.sleep(0.02)
    proc.kill()
    proc.wait()


def test_tiny_pipeline_killed_mid_stage_resumes_and_reports_the_runs_numbers(tmp_path, mirror, data_root):
    from mllm.report import write_report

    runs, log = tmp_path / "runs", tmp_path / "first.log"
    captioner = runs / "mllm-tiny"
    with log.open("w") as out:
        proc = subprocess.Popen(demo(runs, mirror, data_root), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        kill_when(proc, lambda: (captioner / "last.pt").is_file(), log)
    assert not (captioner / "summary.json").is_file(), "killed too late: the captioner stage had finished"
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")}
    assert set(finished) == {"reverse-tiny", "vit-tiny", "align-tiny", "gpt-tiny"}

    second = subprocess.run(demo(runs, mirror, data_root), cwd=REPO, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for stage in ("reverse", "vit", "align", "gpt"):
        assert f"== {stage} skipped" in second.stdout
    assert "mllm-tiny was stopped before it finished: resuming from its last.pt" in second.stdout
    assert {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")
            if p.parent.name in finished} == finished, "a finished stage was run again"

    report = (runs / "REPORT.md").read_text()
    positions = [report.find(s) for s in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), dict(zip(SECTIONS, positions, strict=True))
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert len(figures) == 14  # tests 1 (the screenshot), ViT 4, GPT 1, captioner 2 + 4 attention maps, SCST 2
    assert all((runs / f).is_file() for f in figures), figures
    assert "*(figure " not in report and "not run |" not in report and "Not run yet" not in report
    tests = report[report.index("## The test suite"):report.index("## 1.")]  # the core's files, first
    assert "The test stage ran for this report" in tests and "every test passed" in tests
    assert [line.split("|")[1].strip() for line in tests.splitlines() if line.startswith("| `")] == [
        f"`tests/{name}.py` (core)" for name in ("test_attention", "test_blocks", "test_transformer")]
    rl_config = json.loads((runs / "rl-tiny" / "config.json").read_text())
    assert rl_config["init"]["captioner"] == str(runs / "mllm-tiny")  # the stages chain inside --runs

    elsewhere = write_report(runs, "tiny", tmp_path / "elsewhere" / "R.md").read_text()
    moved = re.findall(r"!\[[^]]*\]\(([^)]+)\)", elsewhere)
    assert len(moved) == 14 and all((tmp_path / "elsewhere" / f).is_file() for f in moved)

    read = lambda name: json.loads((runs / name / "summary.json").read_text())  # noqa: E731
    vit, gpt, cap, blind, rl = (read(n) for n in ("vit-tiny", "gpt-tiny", "mllm-tiny", "mllm-tiny-blind",
                                                   "rl-tiny"))
    assert f"| ViT, CIFAR-10 | test accuracy {vit['test_accuracy']:.3f} | {vit['steps']:,} |" in report
    assert f"validation loss {gpt['val_loss']:.4f} nats/char" in report
    keys = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
    for name, m in json.loads((runs / "mllm-tiny" / "metrics.json").read_text()).items():
        cells = " | ".join("-" if m[k] is None else f"{m[k]:.3f}" for k in keys)
        assert f"| {name} | {cells} | {m['distinct_candidates']} |" in report, name
    beam = blind["test"]["blind captioner, beam 3"]["CIDEr-D"]
    ratio = f"{cap['test']['captioner, beam 3']['CIDEr-D'] / beam:.2f}x" if beam else "n/a"  # 6 steps: may be 0
    assert f"reaches {beam:.3f} with" in report and f"CIDEr-D is {ratio} the blind model's" in report
    before, after = rl["test"]["supervised, greedy"]["CIDEr-D"], rl["test"]["SCST, greedy"]["CIDEr-D"]
    gain = f"{(after / before - 1) * 100:+.1f}%" if before else "n/a"
    assert f"greedy: CIDEr-D {before:.3f} -> {after:.3f} ({gain})" in report
    hardware = report[report.index("## Hardware and wall time"):report.index("## Challenges")]
    rows = {line.split("|")[1].strip() for line in hardware.splitlines() if line.startswith("| ")}
    assert rows == {"stage", "reverse", "vit", "align", "gpt", "captioner", "blind", "scst"}


def test_a_finished_stage_with_another_config_is_an_error_naming_the_key(tmp_path, mirror, data_root):
    from mllm.pipeline import STAGES, config_changes, stage_overrides
    from mllm.training.config import load_config

    captioner = next(s for s in STAGES if s.name == "captioner")
    run = tmp_path / "mllm-cpu"
    run.mkdir()
    saved = load_config("mllm", "cpu", stage_overrides(captioner, "cpu", tmp_path))
    saved["init"]["vision"] = "/elsewhere/align-cpu"  # another path to the same run: not a difference
    (run / "config.json").write_text(json.dumps(saved))
    assert config_changes(run, captioner, "cpu", []) == {}
    del saved["eval"]["test_images"]  # a run from before the key existed: it did what the key's default does
    (run / "config.json").write_text(json.dumps(saved))
    assert config_changes(run, captioner, "cpu", []) == {}
    tiny = load_config("mllm", "tiny", stage_overrides(captioner, "tiny", tmp_path)).to_dict()
    del tiny["eval"]["test_images"]  # an old tiny run scored the whole test split; the tiny preset now scores 50
    (run / "config.json").write_text(json.dumps(tiny))
    assert config_changes(run, captioner, "tiny", []) == {"eval.test_images": (1000, 50)}
    saved["train"]["seed"], saved["init"]["vision"] = 1, None  # a seed, and a random ViT: differences
    (run / "config.json").write_text(json.dumps(saved))
    assert set(config_changes(run, captioner, "cpu", [])) == {"train.seed", "init.vision"}

    vit = next(s for s in STAGES if s.name == "vit")
    run = tmp_path / "vit-tiny"
    run.mkdir()
    cfg = load_config("vit", "cpu", stage_overrides(vit, "cpu", tmp_path))
    cfg["train"]["max_steps"], cfg["train"]["eval_interval"] = 18278, 703  # derived from the epochs at the start
    (run / "config.json").write_text(json.dumps(cfg))
    assert config_changes(run, vit, "cpu", []) == {}
    cfg = load_config("vit", "tiny", stage_overrides(vit, "tiny", tmp_path))
    (run / "config.json").write_text(json.dumps(cfg))
    assert config_changes(run, vit, "tiny", []) == {}
    cfg["train"]["lr"] = 1.0
    cfg["data"]["root"] = "elsewhere"  # where the data is does not matter
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "summary.json").write_text("{}")
    assert list(config_changes(run, vit, "tiny", [])) == ["train.lr"]
    result = subprocess.run([*demo(tmp_path, mirror, data_root), "--skip", "reverse"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "holds a finished vit run with another config (train.lr: 1.0 (run) vs 0.001 (this command))" in result.stderr
    assert "--runs NEW_FOLDER" in result.stderr


def test_each_stage_has_a_train_and_a_test_script_calling_a_real_command():
    from mllm.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    for name in ("train_vit", "test_vit", "train_align", "train_llm", "test_llm", "train_mllm", "test_mllm",
                 "rl_mllm", "test_rl_mllm"):  # the alignment has no test split to score: no test script
        script = REPO / "scripts" / f"{name}.sh"
        assert script.stat().st_mode & 0o111, f"{script} is not executable"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        used = re.findall(r"main\.py ([a-z-]+)", script.read_text())
        assert used and set(used) <= commands, (name, used)


def test_a_stage_stopped_by_a_signal_stops_the_pipeline_with_how_to_resume(tmp_path, monkeypatch):
    import mllm.cli
    from mllm.pipeline import STAGES, run_training_stage
    from mllm.training.loop import TrainingError

    vit = next(s for s in STAGES if s.name == "vit")
    calls = []
    monkeypatch.setattr(mllm.cli, "main", lambda argv: calls.append(argv) or 0)  # returns 0, writes no summary
    with pytest.raises(TrainingError, match="stopped before it finished .* run the same command again to resume"):
        run_training_stage(vit, "tiny", tmp_path, [])
    assert calls and calls[0][:2] == ["train-vit", "--preset"]
