"""bench/: the benchmarks run (smoke mode, seconds), print ratio rows, and their sides agree where they must."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import attention, run_all  # noqa: E402
from bench.common import HEADER, Ratio, Side, alternate  # noqa: E402

RATIO_ROW = re.compile(r"^\| .+ \| .+ \| .+ \| \*\*\d+\.\d\dx\*\* \(\d+\.\d\d-\d+\.\d\d\) \| \d+ \| .+ \|$", re.M)


@pytest.fixture(autouse=True)
def torch_state():
    """The benchmarks set torch's thread count (--quick: 1) and seed: give the tests after these theirs back."""
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.random.set_rng_state(rng)


def test_alternation_and_ratio():
    calls = []
    a, b = Side("a", lambda: calls.append("a"), items=2), Side("b", lambda: calls.append("b"), items=2)
    alternate([a, b], rounds=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B | B A | A B
    a.times, b.times = [1.0, 2.0, 1.0], [3.0, 2.0, 4.0]
    r = Ratio("x", a, b)
    assert r.ratio == pytest.approx(3.0) and r.per_round == pytest.approx([3.0, 1.0, 4.0])
    assert RATIO_ROW.search(r.row("machine"))


def test_attention_sides_agree_and_a_difference_is_caught():
    torch.manual_seed(0)
    modules = attention.build(32, 4)
    x, probe = torch.randn(2, 16, 32, requires_grad=True), torch.randn(2, 16, 32)
    diffs = attention.agreement(modules, x, probe)
    assert set(diffs) == {"fused", "torch MHA"} and max(diffs.values()) <= attention.ATOL
    with torch.no_grad():
        modules["torch MHA"].out_proj.bias.add_(1e-3)
    assert attention.agreement(modules, x, probe)["torch MHA"] > attention.ATOL


def test_every_benchmark_runs_quick_and_prints_ratio_rows(tmp_path, capsys):
    results = run_all.main(["--quick", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    for name in run_all.BENCHMARKS:  # each benchmark's own printout has its table and a ratio row
        section = out.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert HEADER in section and RATIO_ROW.search(section), name
    table = (tmp_path / "results.md").read_text()
    assert HEADER in table and len(RATIO_ROW.findall(table)) == 6
    saved = json.loads((tmp_path / "results.json").read_text())
    assert list(saved["benchmarks"]) == list(run_all.BENCHMARKS)
    assert all(row["ratio"] > 0 and row["rounds"] == 2 for r in results.values() for row in r["rows"])
    assert results["generation"]["checks"]["same_tokens_within_context"] is True
    assert results["gpt_train"]["checks"]["parameters_ours"] == results["gpt_train"]["checks"]["parameters_torch"]
    assert saved["machine_at_start"]["cpu"] and saved["machine_at_start"]["torch"] == torch.__version__


def test_a_benchmark_runs_as_a_file(tmp_path):
    out = tmp_path / "generation.json"
    done = subprocess.run([sys.executable, "bench/generation.py", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert RATIO_ROW.search(done.stdout)
    assert json.loads(out.read_text())["rows"][0]["a"]["name"] == "cached"
