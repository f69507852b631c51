"""`scripts/seed_table.py`: mean and standard deviation over seeds of hand-made SCST runs, the checks that only
train.seed differs within a group and that no seed appears twice, and the dev table of dev-only runs."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _seed_table():
    spec = importlib.util.spec_from_file_location("seed_table", REPO / "scripts" / "seed_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _summary(folder: Path, seed: int, dev: float, cider: float, baseline: str = "mean", distinct: int = 400) -> None:
    folder.mkdir(parents=True)
    row = {"CIDEr-D": cider, "BLEU-4": 0.1, "distinct": distinct, "top_share": 0.05, "vocabulary": 300,
           "bad_endings": 0.0, "hallucination_per_caption": 0.2}
    (folder / "summary.json").write_text(json.dumps({
        "best_val_cider": dev, "test": {"SCST, greedy": row},
        "config": {"train": {"seed": seed, "device": "cpu"}, "rl": {"baseline": baseline},
                   "data": {"root": str(folder)}}}))


def test_seed_table_means_and_standard_deviations_of_hand_made_runs(tmp_path, capsys):
    tool = _seed_table()
    for seed, (dev, cider, distinct) in enumerate([(0.27, 0.29, 400), (0.28, 0.30, 420), (0.29, 0.31, 440)]):
        _summary(tmp_path / f"rl-cpu-mean-s{seed}", seed, dev, cider, distinct=distinct)
    _summary(tmp_path / "rl-cpu-greedy-s0", 0, 0.25, 0.27, "greedy")
    runs = sorted(tmp_path.glob("rl-cpu-*"))
    table = tool.seed_table(runs).splitlines()
    mean_row = next(line for line in table if line.startswith("| rl-cpu-mean |"))
    assert "| 0, 1, 2 | SCST, greedy | 0.280 ± 0.010 | 0.300 ± 0.010 |" in mean_row
    assert "| 420.0 ± 20.0 |" in mean_row and "| 0.050 ± 0.000 |" in mean_row
    greedy_row = next(line for line in table if line.startswith("| rl-cpu-greedy |"))
    assert "| 0 | SCST, greedy | 0.250 | 0.270 |" in greedy_row
    assert tool.main([str(r) for r in runs] + ["--out", str(tmp_path / "t.md")]) == 0
    assert (tmp_path / "t.md").read_text() == capsys.readouterr().out
    _summary(tmp_path / "bad" / "rl-cpu-mean-s5", 5, 0.3, 0.3, baseline="greedy")
    with pytest.raises(ValueError, match=r"differs from .* in rl.baseline \(only train.seed may differ\)"):
        tool.seed_table([*runs, tmp_path / "bad" / "rl-cpu-mean-s5"])
    _summary(tmp_path / "twice" / "rl-cpu-mean-s9", 1, 0.3, 0.3)
    with pytest.raises(ValueError, match="seed 1 appears twice"):
        tool.seed_table([*runs, tmp_path / "twice" / "rl-cpu-mean-s9"])
    assert tool.main([str(tmp_path / "nowhere")]) == 2
    assert "no summary.json" in capsys.readouterr().err

    for seed, evals in enumerate([[(500, 0.20, 3.1), (1000, 0.22, 3.0)], [(500, 0.25, 3.2), (1000, 0.24, 3.1)]]):
        run = tmp_path / "dev" / f"mllm-dev-ref-s{seed}"  # dev-only runs: the best evaluation of each
        _summary(run, seed, max(c for _, c, _ in evals), 0.0)
        (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "val_cider": c, "val_loss": loss,
                                                               "val_distinct": 300}) + "\n"
                                                   for s, c, loss in evals))
    dev = tool.dev_table(sorted((tmp_path / "dev").iterdir())).splitlines()
    assert dev[-1] == "| mllm-dev-ref | 0, 1 | 0.235 ± 0.021 | 750.0 ± 353.6 | 3.100 ± 0.141 | 300.0 ± 0.0 | - |"
