#!/usr/bin/env bash
# Train the ViT on CIFAR-10: PRESET=tiny|cpu|gpu (default cpu); extra arguments go to main.py (key=value overrides).
set -euo pipefail; source "$(dirname "$0")/_env.sh"
$PY main.py train-vit --preset "$PRESET" "$@"
