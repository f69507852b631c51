#!/usr/bin/env bash
# SCST fine-tuning of the captioner on CIDEr-D (starts from runs/mllm-$PRESET: scripts/train_mllm.sh).
set -euo pipefail; source "$(dirname "$0")/_env.sh"
$PY main.py train-rl --preset "$PRESET" "$@"
