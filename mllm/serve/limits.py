"""What the web demo accepts and how much work it takes on at once; every limit is an option of
`python main.py serve`. The messages of the refusals that concern sizes and load live here too."""

from __future__ import annotations

import os
from dataclasses import dataclass

MULTIPART_SLACK = 64 * 1024  # form boundaries and part headers around an upload
MAX_SEED = 2**63 - 1


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """Model calls that run at once: one per core, at most 4 (more only splits the same cores finer)."""
    return max(1, min(4, cores()))


@dataclass
class Limits:
    max_upload_bytes: int = 10_000_000  # 10 MB
    max_pixels: int = 40_000_000  # decoded image size (width x height); a decompression bomb is refused
    max_prompt_chars: int = 1000
    max_length: int = 2000  # new characters per generation
    max_temperature: float = 2.0
    workers: int = 0  # model calls that run at once (threads of the work pool); 0: default_workers()
    queue: int = 16  # admitted requests waiting for a worker; more at once are answered 503
    threads: int = 0  # torch threads per model call; 0: the cores shared out among the workers

    def __post_init__(self) -> None:
        self.workers = self.workers or default_workers()
        self.threads = self.threads or max(1, cores() // self.workers)
        for name in ("max_upload_bytes", "max_pixels", "max_prompt_chars", "max_length", "workers", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; it must be at least 1")
        if self.queue < 0:
            raise ValueError(f"queue is {self.queue}; it must be 0 or more")

    @property
    def max_json_bytes(self) -> int:
        """Largest JSON body: the longest prompt with every character escaped (\\ud83d\\ude00: 12 bytes) and room
        for the other fields."""
        return 4096 + 12 * self.max_prompt_chars

    def body_limit(self, path: str) -> int:
        """Largest request body of a route: an upload (with its form around it) or a JSON body."""
        return self.max_upload_bytes + MULTIPART_SLACK if path == "/api/caption" else self.max_json_bytes


def mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def too_large(size: int, limit: int) -> str:
    """The message for an upload over the byte limit: the sizes and the fixes."""
    return (f"the upload is {mb(size)}, over the limit of {mb(limit)}; downscale or recompress the image (the "
            f"captioners see it at a few dozen pixels a side anyway), or start the server with a larger "
            f"--max-upload-mb")


def body_too_large(path: str, limits: Limits, declared: int | None, read: int) -> str:
    """The message for a request body over its route's limit, declared (Content-Length) or found while reading."""
    if path == "/api/caption":
        if declared is not None:
            return too_large(declared, limits.max_upload_bytes)
        return (f"the upload is over the limit of {mb(limits.max_upload_bytes)} (its size was not declared; the "
                f"server stopped reading it after {mb(read)}); downscale or recompress the image, or start the "
                f"server with a larger --max-upload-mb")
    size = (f"{declared:,} bytes" if declared is not None
            else f"over {read:,} bytes (its size was not declared; the server stopped reading it)")
    return (f"the request body is {size}, over the limit of {limits.max_json_bytes:,} bytes for {path}; send a "
            f"JSON object such as {{\"prompt\": \"ROMEO:\", \"length\": 300}} with a prompt of at most "
            f"{limits.max_prompt_chars:,} characters")


def busy(limits: Limits) -> str:
    """The message of a 503 when every worker is busy and the queue is full."""
    return (f"the server is busy: {limits.workers} model calls are running and {limits.queue} requests are waiting "
            f"(its limit); retry in a second (Retry-After), or start the server with a larger --queue or --workers")


class InputError(ValueError):
    """A user's input the demo refuses: `status` is the HTTP status, the message says what is wrong and the fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
