"""What the web demo accepts; every limit is an option of `python main.py serve`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    max_upload_bytes: int = 10_000_000  # 10 MB
    max_pixels: int = 40_000_000  # decoded image size (width x height); a decompression bomb is refused
    max_prompt_chars: int = 1000
    max_length: int = 2000  # new characters per generation
    max_temperature: float = 2.0


def too_large(size: int, limit: int) -> str:
    """The message for an upload over the byte limit: the sizes and the fixes."""
    return (f"the upload is {size / 1e6:.2f} MB, over the limit of {limit / 1e6:.2f} MB; downscale or "
            f"recompress the image (the captioners see it at a few dozen pixels a side anyway), or start the "
            f"server with a larger --max-upload-mb")
