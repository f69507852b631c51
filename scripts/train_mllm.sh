#!/usr/bin/env bash
# Train the captioner on Flickr8k (needs the aligned ViT: scripts/train_vit.sh, then scripts/train_align.sh);
# PRESET=tiny|cpu|cpu-char|gpu.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
$PY main.py train-mllm --preset "$PRESET" "$@"
