#!/usr/bin/env bash
# Train the captioner on Flickr8k (needs the ViT run: scripts/train_vit.sh); PRESET=tiny|cpu|cpu-char|gpu.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
$PY main.py train-mllm --preset "$PRESET" "$@"
