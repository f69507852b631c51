#!/bin/bash
# Re-score the kept runs' test split with eval.no_repeat=2, chosen on dev (runs/norepeat/*.json).
cd /work/main && . .venv/bin/activate
export MLLM_DATA_MIRROR=/work/shared/data
set -x
/usr/bin/time -v python scripts/rescore_test.py runs/mllm-cpu --out runs/norepeat/mllm-cpu eval.no_repeat=2
for s in 0 1 2; do
  /usr/bin/time -v python scripts/rescore_test.py runs/rl-cpu-xe-s$s --out runs/norepeat/rl-cpu-xe-s$s eval.no_repeat=2
done
echo ALL DONE
