"""Run every benchmark in bench/ and write bench/results.md (a markdown table) and bench/results.json.

    python bench/run_all.py                      # the full benchmarks, about 2 minutes on 2 CPU cores
    python bench/run_all.py --quick --out-dir /tmp/bench   # a smoke run, seconds

Run it on a quiet machine: other jobs on the cores contaminate the times (alternating the sides cancels slow
drifts, not a core taken away half the time). The load average at the start is recorded and warned about.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import HEADER, machine  # noqa: E402

BENCHMARKS = ("attention", "gpt_train", "generation", "captioner_features")
HERE = Path(__file__).resolve().parent


def markdown(results: dict[str, dict[str, Any]], info: dict[str, Any], command: str, seconds: float) -> str:
    """The results table with the machine and how the ratios are read."""
    lines = [
        "# Benchmarks", "",
        f"`{command}` on {info['date']}, {info['cpu']} ({info['cores']} cores), {info['threads']} torch thread(s), "
        f"torch {info['torch']}, Python {info['python']}; load average at the start "
        f"{info['load_average_1_5_15']}; {seconds:.0f} s in all.", "",
        "Each benchmark times its sides in the same run, alternating them round by round (A B, B A, ...). The "
        "ratio is side A's speed over side B's from the median times (above 1: A is faster); in brackets the "
        "lowest and highest ratio of single rounds. The scripts are in `bench/`; `results.json` has every "
        "round's time.", "",
        HEADER,
    ]
    for result in results.values():
        lines += result["markdown"]
    lines += ["", "Checks made before timing:", ""]
    for name, result in results.items():
        checks = "; ".join(f"{k} {v}" for k, v in result["checks"].items())
        lines.append(f"- {name}: {checks}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="every benchmark in its seconds-long smoke mode")
    p.add_argument("--out-dir", default=None, help="where results.md and results.json go (default bench/; "
                                                  "--quick writes them only when this is given)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for every benchmark")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = p.parse_args(argv)
    out_dir = Path(args.out_dir) if args.out_dir else (None if args.quick else HERE)
    threads = args.threads or (1 if args.quick else None)  # as the benchmarks choose (bench/common.py)
    if threads:
        torch.set_num_threads(threads)
    at_start = machine()
    load, cores = (at_start["load_average_1_5_15"] or [0.0])[0], at_start["cores"] or 1
    if load > 0.5 * cores:
        print(f"warning: load average {load:.2f} on {cores} cores: other jobs are running, the times will be "
              f"contaminated", file=sys.stderr)
    passed = ["--quick"] * args.quick + (["--threads", str(args.threads)] if args.threads else [])
    start, results = time.perf_counter(), {}
    for name in args.only:
        print(f"\n## {name}", flush=True)
        results[name] = importlib.import_module(f"bench.{name}").main(passed)
    seconds = time.perf_counter() - start
    command = " ".join(["python bench/run_all.py", *passed])
    table = markdown(results, at_start, command, seconds)
    print("\n" + table)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.md").write_text(table)
        payload = {"command": command, "seconds": round(seconds, 1), "machine_at_start": at_start,
                   "machine_at_end": machine(), "benchmarks": results}
        (out_dir / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {out_dir / 'results.md'} and {out_dir / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
