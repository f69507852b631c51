#!/usr/bin/env bash
# Align the ViT with Flickr8k's training captions (needs the ViT run: scripts/train_vit.sh); the captioner starts
# from it. PRESET=tiny|cpu|gpu. No test script: the stage reads no test photo (its dev retrieval is in summary.json).
set -euo pipefail; source "$(dirname "$0")/_env.sh"
$PY main.py train-align --preset "$PRESET" "$@"
