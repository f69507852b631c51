#!/usr/bin/env bash
# Train the char GPT on Tiny Shakespeare: PRESET=tiny|cpu|gpu (default cpu); extra arguments go to main.py.
set -euo pipefail; source "$(dirname "$0")/_env.sh"
$PY main.py train-llm --preset "$PRESET" "$@"
