# Shared by the stage scripts: run from the repository root with the project's venv (make setup) if there is one.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
PRESET="${PRESET:-cpu}"
PY=python
[ -x .venv/bin/python ] && PY=.venv/bin/python
