"""Reading an uploaded image from its bytes: any format PIL reads, any mode, EXIF orientation applied, bicubic
resize to the captioners' size, as `mllm.data.images.load_image` does, with two differences for a server:

- a JPEG is decoded at reduced size when the model needs fewer pixels (`Image.draft`: the decoder's DCT scaling
  to 1/2, 1/4 or 1/8, kept at least `REDUCING_GAP` times the model's size, as PIL's own `thumbnail` does), so a
  40-megapixel photo costs a fraction of its full decode; other formats decode in full;
- nothing process-wide changes (no `warnings.catch_warnings`): the pixel limit is checked from the header,
  before decoding, and PIL's own decompression-bomb error is caught.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .limits import InputError

REDUCING_GAP = 2  # a JPEG is decoded to at least this many times the model's size a side
FORMATS = "a PNG, JPEG, GIF, BMP, WebP or TIFF file"


def _not_an_image(filename: str) -> InputError:
    return InputError(415, f"the upload {filename!r} is not an image the server can read; upload {FORMATS}")


def _too_many_pixels(filename: str, width: int, height: int, max_pixels: int) -> InputError:
    return InputError(413, f"the upload {filename!r} is {width}x{height} pixels, over the limit of {max_pixels:,}; "
                           f"downscale it first (any size up to that is fine)")


def decode(data: bytes, filename: str, size: int, max_pixels: int) -> Image.Image:
    """Uploaded bytes -> the decoded, upright image (RGB), at reduced size for a JPEG much larger than `size`."""
    if not data:
        raise InputError(422, f"the upload {filename!r} is empty; choose an image file (PNG, JPEG, ...)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise _too_many_pixels(filename, width, height, max_pixels)
            im.draft("RGB", (size * REDUCING_GAP, size * REDUCING_GAP))  # no-op for formats other than JPEG
            return ImageOps.exif_transpose(im).convert("RGB")
    except InputError:
        raise
    except Image.DecompressionBombError as e:  # PIL's own guard (twice its MAX_IMAGE_PIXELS)
        raise InputError(413, f"the upload {filename!r} is too large to decode safely ({e}); downscale it "
                              f"first") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise _not_an_image(filename) from e


def read_upload(data: bytes, filename: str, size: int, max_pixels: int) -> np.ndarray:
    """Uploaded bytes -> uint8 [size, size, 3] as the captioners see it, or an InputError (415 not an image,
    413 too many pixels, 422 empty) naming the problem and the fix."""
    return np.asarray(decode(data, filename, size, max_pixels).resize((size, size), Image.BICUBIC))
