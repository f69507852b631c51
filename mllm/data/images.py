"""Reading a user's image file (any format, size or mode) the way every command that takes one does."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000  # larger images are refused with a clear message (PIL's own guard is a traceback)


def load_image(path: str | Path, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file -> uint8 [size, size, 3] RGB, upright (EXIF orientation applied), resized bicubically."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ValueError(f"{path} is {width}x{height} pixels, over the limit of {max_pixels:,}; "
                                     f"downscale it first (any size up to that is fine)")
                upright = ImageOps.exif_transpose(im)
                return np.asarray(upright.convert("RGB").resize((size, size), Image.BICUBIC))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"{path} is too large to decode safely ({e}); downscale it first") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"cannot read {path} as an image ({e}); pass a PNG/JPEG/... file") from e
