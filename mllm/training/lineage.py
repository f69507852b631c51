"""Which checkpoints a run started from: the sha256 of every `init.*` checkpoint file, kept in the run's
checkpoints and summary.json, so that a later stage can tell that a run it builds on was trained again."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .config import flatten

INIT_PREFIX = "init."
DEFAULT_NAME = "best.pt"  # what `load_checkpoint` reads from a run folder


def init_file(path: str | Path) -> Path:
    """The file an init path loads: a run folder's best.pt, or the .pt file itself."""
    path = Path(path)
    return path / DEFAULT_NAME if path.is_dir() else path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def init_paths(cfg: dict) -> dict[str, str]:
    """The config's non-null `init.*` keys and their paths."""
    return {k: str(v) for k, v in flatten(cfg).items() if k.startswith(INIT_PREFIX) and isinstance(v, str) and v}


def record_inits(cfg: dict) -> dict[str, dict[str, Any]]:
    """{init key: {"path": the checkpoint file, "sha256": its bytes' hash}} for every init the config sets (a
    missing file is left out: the task that loads it fails with its own error)."""
    out = {}
    for key, path in init_paths(cfg).items():
        file = init_file(path)
        if file.is_file():
            out[key] = {"path": str(file), "sha256": file_sha256(file)}
    return out


def changed_inits(recorded: dict[str, dict[str, Any]] | None, current: dict[str, str],
                  started: float | None = None) -> list[str]:
    """How the checkpoints a run started from differ from those at `current` ({init key: path}) now: one line per
    changed init, none when they are the same bytes. A run that recorded nothing (written before this record
    existed) counts as changed when the checkpoint file is newer than `started` (the run's start, a timestamp)."""
    changes = []
    for key, path in current.items():
        file = init_file(path)
        if not file.is_file():
            continue  # nothing to compare with; the stage that needs it fails with its own error
        before = (recorded or {}).get(key)
        if before is None:
            if recorded is None and started is not None and file.stat().st_mtime > started:
                changes.append(f"{key}: {file} was written after the run started")
            continue
        now = file_sha256(file)
        if now != before["sha256"]:
            changes.append(f"{key}: {file} is not the checkpoint the run started from (sha256 {now[:12]} now, "
                           f"{before['sha256'][:12]} then)")
    return changes
