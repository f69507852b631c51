# Shared by the stage scripts: run from the repository root with the project's venv (make setup) if there is one.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PRESET="${PRESET:-cpu}"
PY=python
[ -x .venv/bin/python ] && PY=.venv/bin/python

# train_once COMMAND RUN [args ...]: `main.py COMMAND --preset $PRESET --run-dir RUN args`, unless RUN is finished
# (kept as it is); a stopped RUN is resumed from its last.pt (the args must then agree with its saved config).
train_once() {
  local command="$1" run="$2"; shift 2
  if [ -f "$run/summary.json" ]; then echo "$run: finished, kept"; return 0; fi
  local resume=(); [ -f "$run/last.pt" ] && resume=(--resume)
  $PY main.py "$command" --preset "$PRESET" --run-dir "$run" "${resume[@]}" "$@"
}
