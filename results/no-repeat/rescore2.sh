#!/bin/bash
# after rescore.sh: the blind captioner with the same decoding (for the image's lift, like for like)
cd /work/main && . .venv/bin/activate
export MLLM_DATA_MIRROR=/work/shared/data
while pgrep -f rescore.sh >/dev/null; do sleep 10; done
set -x
/usr/bin/time -v python scripts/rescore_test.py runs/mllm-cpu-blind --out runs/norepeat/mllm-cpu-blind eval.no_repeat=2
echo ALL DONE
