"""Atomic file writes: write to a temporary file in the same folder, then rename over the target."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


def git_output(root: str | Path, *args: str) -> str | None:
    """The stripped output of `git -C root ARGS`, or None where git is missing, fails or hangs (an unpacked copy)."""
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


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


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (POSIX `flock`; no lock where the platform has none): processes that
    would build the same cache at once (torchrun ranks, parallel tests) take turns."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; the atomic writes still keep the cache whole
        yield
        return
    lock = Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_arrays(path: str | Path, settings: dict,
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays saved at `path` with these settings; else `build()` them and save them. A process that finds
    another one building the same cache waits for it and reads its result instead of building it twice."""
    arrays = load_arrays(path, settings)
    if arrays is None:
        with exclusive(path):
            arrays = load_arrays(path, settings)  # built while this process waited
            if arrays is None:
                arrays = build()
                save_arrays(path, settings, **arrays)
    return arrays
