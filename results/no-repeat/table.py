"""Test figures of the kept runs decoded without repeated bigrams (eval.no_repeat=2) beside their original reports.

    python results/no-repeat/table.py > results/no-repeat/table.md

Reads metrics.json of results/no-repeat/<run>/ (written by scripts/rescore_test.py) and of the kept run's own
folder (decoded with eval.no_repeat=0); the three SCST seeds as mean +- standard deviation (n - 1), and each seed's
gain over the supervised captioner decoded the same way.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE.parent
SEEDS = [f"rl-cpu-xe-s{s}" for s in (0, 1, 2)]
ROWS = ("greedy", "beam 3")


def test_rows(folder: Path) -> dict:
    rows = json.loads((folder / "metrics.json").read_text())
    return rows.get("test", rows)  # an SCST report nests its rows under "test"


def cell(values: list[float], fmt: str = "{:.3f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.replace('+', '').format(statistics.stdev(values))}"


def main() -> None:
    print("| Flickr8k test, 1,000 images | no_repeat | CIDEr-D | gain over supervised | BLEU-4 | distinct | "
          "top caption's share | hallucination / caption |")
    print("|---|---|---|---|---|---|---|---|")
    for label, old, new in (("supervised captioner", RESULTS / "mllm-cpu", HERE / "mllm-cpu"),
                            ("blind captioner", RESULTS / "mllm-cpu-blind", HERE / "mllm-cpu-blind")):
        for n, folder in ((0, old), (2, new)):
            rows = test_rows(folder)
            for strategy in ROWS:
                key = next(k for k in rows if k.endswith(strategy))
                r = rows[key]
                print(f"| {label}, {strategy} | {n} | {r['CIDEr-D']:.3f} | | {r['BLEU-4']:.3f} | {r['distinct']} | "
                      f"{r['top_share']:.1%} | {r['hallucination_per_caption']:.3f} |")
    for n, base in ((0, RESULTS / "rl-cpu-seeds"), (2, HERE)):
        runs = [test_rows(base / s) for s in SEEDS]
        for strategy in ROWS:
            scst = [r[f"SCST, {strategy}"] for r in runs]
            sup = [r[f"supervised, {strategy}"] for r in runs]
            gain = [100 * (a["CIDEr-D"] / b["CIDEr-D"] - 1) for a, b in zip(scst, sup, strict=True)]
            print(f"| SCST cpu preset, 3 seeds, {strategy} | {n} | {cell([r['CIDEr-D'] for r in scst])} | "
                  f"{cell(gain, '{:+.1f}')}% | {cell([r['BLEU-4'] for r in scst])} | "
                  f"{cell([r['distinct'] for r in scst], '{:.0f}')} | "
                  f"{cell([100 * r['top_share'] for r in scst], '{:.1f}')}% | "
                  f"{cell([r['hallucination_per_caption'] for r in scst])} |")


if __name__ == "__main__":
    main()
