"""The pool that runs the models: a fixed number of worker threads, and a count of admitted requests that may
wait for them, so the work the server takes on is bounded however many requests arrive.

Torch's thread count is set once, before the workers start (`set_torch_threads`), so that workers x threads
matches the cores; nothing process-wide changes per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def set_torch_threads(threads: int) -> None:
    """Torch threads per model call (each worker thread takes this number when it first runs torch)."""
    torch.set_num_threads(threads)


class WorkPool:
    """`workers` threads run model calls (`run`); `admit`/`release` count the requests that hold or wait for
    them, at most `workers + queue` at once."""

    def __init__(self, workers: int, queue: int):
        self.workers = workers
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="model")
        self._admitted = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """Take a place if one is free (True); False when `workers + queue` requests are in already."""
        with self._lock:
            if self._admitted >= self.capacity:
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    @property
    def admitted(self) -> int:
        return self._admitted

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) on a worker thread, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
