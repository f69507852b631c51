"""Score a finished captioner or SCST run's test split again with other decoding settings, chosen on dev before.

    python scripts/rescore_test.py runs/mllm-cpu --out results/mllm-cpu/no-repeat-2 eval.no_repeat=2

The run's best.pt is decoded with its saved config plus the given `eval.*` overrides (nothing that would change
training), and the run's own test report is written into --out with the config used and `rescore.json` (the run,
the overrides, the checkpoint's sha256, the wall time; `mllm/rescore.py`). Choose the settings with `dev_decode.py`
first: this reads the test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mllm.io import atomic_write_json
from mllm.rescore import rescore
from mllm.training.config import ConfigError


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a finished train-mllm or train-rl run folder (its best.pt is scored)")
    p.add_argument("--out", type=Path, required=True, help="folder for the new report (must not hold one)")
    p.add_argument("--mirror", default=None, help="where the data archives are now (default: the run's)")
    p.add_argument("overrides", nargs="*", help="eval.KEY=VALUE settings, e.g. eval.no_repeat=2")
    args = p.parse_intermixed_args()
    if (args.out / "metrics.json").exists():
        raise SystemExit(f"{args.out} already holds a report; choose another --out")
    try:
        record = rescore(args.run, args.out, args.overrides, args.mirror)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    record["summary"] = {k: v for k, v in record["summary"].items() if k != "test"}  # the test is in metrics.json
    atomic_write_json(args.out / "rescore.json", record)
    print(f"report written to {args.out} ({record['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
