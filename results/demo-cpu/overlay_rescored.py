"""Put the test reports re-scored with the presets' decoding (`eval.no_repeat=2`) into this kept demo's run folders.

    python results/demo-cpu/overlay_rescored.py
    python main.py report --runs results/demo-cpu --out docs/REPORT.md --html docs/REPORT.html --pdf docs/REPORT.pdf

The demo trained its captioner and SCST stages before `eval.no_repeat` existed, so their test reports decoded with
repeated bigrams allowed. `scripts/rescore_test.py` re-ran those reports from the same best.pt files with
`eval.no_repeat=2` (results/no-repeat/, each folder's rescore.json holds the checkpoint's sha256 and the commit).
This script copies those reports (metrics, captions, gallery, attention maps, config) over the demo's, and updates
each summary.json's test metrics, config and grounding figures to match; the training logs and curves stay as
trained. The seed table (rl-cpu-seeds.md) gets the preset's three seeds re-scored the same way, above the table of
every SCST setting as trained. The demo's own n=0 reports stay in results/mllm-cpu/, results/mllm-cpu-blind/ and
results/rl-cpu-seeds/rl-cpu-xe-s0/.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent
DEMO = RESULTS / "demo-cpu"
RESCORED = RESULTS / "no-repeat"
STAGES = {"mllm-cpu": RESCORED / "mllm-cpu", "mllm-cpu-blind": RESCORED / "mllm-cpu-blind",
          "rl-cpu": RESCORED / "rl-cpu-xe-s0"}
SEEDS_NOTE = ("The cpu preset's three seeds, their test reports re-scored with the presets' decoding "
              "(`eval.no_repeat=2`, the same\nbest.pt files; `results/no-repeat/`):\n\n")
TRAINED_NOTE = """
Every SCST setting as trained, its test reports decoded with repeated bigrams allowed (`eval.no_repeat=0`, what runs
did before the key existed):

"""


def rescored_summary(summary: dict, folder: Path) -> dict:
    """The run's summary with the re-scored report's test metrics, config and grounding figures."""
    rescore = json.loads((folder / "rescore.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())  # SCST's: {"test": ..., "changed": ..., ...}
    return {**summary, **rescore["summary"], "test": metrics.get("test", metrics),
            "config": json.loads((folder / "config.json").read_text()),
            "rescored": {"overrides": rescore["overrides"], "commit": rescore["commit"],  # the key's name before
                         "checkpoint_sha256": rescore.get("checkpoint_sha256", rescore.get("best_pt_sha256"))}}


def main() -> None:
    for stage, folder in STAGES.items():
        target = DEMO / stage
        summary = json.loads((target / "summary.json").read_text())
        if "rescored" in summary:
            sys.exit(f"{target} already holds a re-scored report; nothing done")
        for f in folder.iterdir():
            shutil.copyfile(f, target / f.name)
        (target / "summary.json").write_text(json.dumps(rescored_summary(summary, folder), indent=2) + "\n")
        print(f"{stage}: {folder.relative_to(RESULTS)} -> {target.relative_to(RESULTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for seed in range(3):
            run = Path(tmp) / f"rl-cpu-xe-norepeat-s{seed}"
            run.mkdir()
            summary = json.loads((RESULTS / "rl-cpu-seeds" / f"rl-cpu-xe-s{seed}" / "summary.json").read_text())
            summary = rescored_summary(summary, RESCORED / f"rl-cpu-xe-s{seed}")
            (run / "summary.json").write_text(json.dumps(summary))
            runs.append(str(run))
        table = subprocess.run([sys.executable, "scripts/seed_table.py", *runs], capture_output=True, text=True,
                               check=True, cwd=RESULTS.parent).stdout
    trained = (DEMO / "rl-cpu-seeds.md").read_text()
    (DEMO / "rl-cpu-seeds.md").write_text(SEEDS_NOTE + table.strip() + "\n" + TRAINED_NOTE + trained)
    print("rl-cpu-seeds.md: the re-scored seed table added above the trained one")


if __name__ == "__main__":
    main()
