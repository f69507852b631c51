#!/usr/bin/env bash
# SCST with both baselines, 3 seeds each, the same training budget (the preset's), then a table of the mean and
# standard deviation across seeds of the dev and test metrics (scripts/seed_table.py):
#   runs/rl-$PRESET-mean-s{0,1,2}    the leave-one-out baseline (mean of the image's other samples), the preset's
#   runs/rl-$PRESET-greedy-s{0,1,2}  the self-critical baseline (the greedy caption's reward)
# SEEDS="0 1 2" by default; extra key=value arguments go to every run (e.g. init.captioner=runs/mllm-cpu-v2).
# A finished run is kept, a stopped one resumed: running the script again completes the set.
# The kept runs (results/rl-cpu-seeds/): rl-cpu-{mean,greedy}-s* came from this script before the preset took the
# cross-entropy mix (the same as `bash scripts/scst_seeds.sh rl.xe_weight=0` now); the current preset's three seeds,
# rl-cpu-xe-s*, from `python main.py train-rl --preset cpu --run-dir runs/rl-cpu-xe-s$SEED train.seed=$SEED`.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
SEEDS="${SEEDS:-0 1 2}"
runs=()
for baseline in mean greedy; do
  for seed in $SEEDS; do
    run="runs/rl-$PRESET-$baseline-s$seed"
    runs+=("$run")
    train_once train-rl "$run" train.seed="$seed" rl.baseline="$baseline" "$@"
  done
done
$PY scripts/seed_table.py "${runs[@]}" --out "runs/rl-$PRESET-seeds.md"
