#!/usr/bin/env bash
# The trained GPT: its validation loss and two samples from a prompt.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
RUN="${RUN:-runs/gpt-$PRESET}"
$PY -c "import json,sys; s=json.load(open(sys.argv[1])); print('val loss (nats/char)', s['val_loss'])" "$RUN/summary.json"
$PY main.py generate "$RUN" --prompt "ROMEO:" --num-samples 2 --length 300 "$@"
