"""Atomic file writes: write to a temporary file in the same folder, then rename over the target."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(file)` on a temp file beside `path`, fsync, rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """`obj` as indented JSON, written atomically."""
    return atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def save_arrays(path: str | Path, settings: dict, **arrays: np.ndarray) -> Path:
    """Save arrays to an .npz atomically, tagged with the settings that produced them."""
    return atomic_write(path, lambda f: np.savez(f, __settings__=np.array(json.dumps(settings, sort_keys=True)),
                                                 **arrays))


def load_arrays(path: str | Path, settings: dict) -> dict[str, np.ndarray] | None:
    """The arrays saved at `path` if they were made with the same settings, else None (rebuild)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if str(z["__settings__"]) != json.dumps(settings, sort_keys=True):
                return None
            return {k: z[k] for k in z.files if k != "__settings__"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None  # unreadable or truncated cache: rebuild it
