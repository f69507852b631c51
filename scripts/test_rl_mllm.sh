#!/usr/bin/env bash
# The SCST captioner: its before/after table on the test split and captions for three test images.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
RUN="${RUN:-runs/rl-$PRESET}"
cat "$RUN/metrics.md"
$PY main.py caption "$RUN" --flickr 3385593926_d3e9c21170.jpg 1056338697_4f7d7ce270.jpg 106490881_5a2dd9b7bd.jpg "$@"
