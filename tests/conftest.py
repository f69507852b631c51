"""Shared fixtures: the data mirror (../shared/data in CI) and a prepared-data root for the session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    if hasattr(config, "workerinput"):  # a worker of `pytest -n N` (pytest-xdist): N workers share the cores, so
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread each, here and in the processes it starts
            os.environ.setdefault(name, "1")


def find_mirror() -> Path | None:
    value = os.environ.get("MLLM_DATA_MIRROR")
    if value:  # asked for explicitly (CI): it must be there, the real-data tests must not skip
        if not Path(value).is_dir():
            pytest.fail(f"MLLM_DATA_MIRROR={value} is not a folder")
        return Path(value)
    default = REPO.parent / "shared" / "data"
    return default if default.is_dir() else None


@pytest.fixture(scope="session")
def mirror() -> Path:
    found = find_mirror()
    if found is None:
        pytest.skip("no data mirror: set MLLM_DATA_MIRROR to a folder with the archives (CI uses ../shared/data)")
    return found


@pytest.fixture(scope="session")
def data_root(tmp_path_factory, request) -> Path:
    """Prepared-data caches for the session; the workers of `pytest -n N` share one folder (a cache is built under a
    lock by the first worker that needs it, and read by the others)."""
    if hasattr(request.config, "workerinput"):
        root = tmp_path_factory.getbasetemp().parent / "data"
        root.mkdir(exist_ok=True)
        return root
    return tmp_path_factory.mktemp("data")
