#!/usr/bin/env bash
# The trained ViT: its test-set figures (scored once at the end of training) and predictions for 8 test images.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
RUN="${RUN:-runs/vit-$PRESET}"
$PY -c "import json,sys; s=json.load(open(sys.argv[1])); print('test accuracy', s['test_accuracy'])" "$RUN/summary.json"
$PY main.py predict "$RUN" --index 0 1 2 3 4 5 6 7 "$@"
