"""load_image: any user image file -> an upright uint8 [size, size, 3], or a clear error."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from mllm.data.images import load_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _halves(path, orientation: int) -> None:
    """A 48x24 JPEG, left half red, right half blue, tagged with an EXIF orientation."""
    im = Image.new("RGB", (48, 24), BLUE)
    im.paste(RED, (0, 0, 24, 24))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, format="JPEG", quality=95, exif=exif)


def _is(block: np.ndarray, color) -> bool:
    return bool(np.abs(block.reshape(-1, 3).mean(0) - np.array(color)).max() < 30)


# orientation tag -> where the stored left (red) half ends up when displayed upright
@pytest.mark.parametrize("orientation, red_at", [(1, "left"), (3, "right"), (6, "top"), (8, "bottom")])
def test_exif_orientation_is_applied(tmp_path, orientation, red_at):
    path = tmp_path / "photo.jpg"
    _halves(path, orientation)
    with Image.open(path) as im:
        assert im.getexif()[0x0112] == orientation and im.size == (48, 24)
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB").resize((16, 16), Image.BICUBIC))
    out = load_image(path, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.array_equal(out, expected)
    sides = {"top": out[:6], "bottom": out[-6:], "left": out[:, :6], "right": out[:, -6:]}
    opposite = {"top": "bottom", "bottom": "top", "left": "right", "right": "left"}
    assert _is(sides[red_at], RED) and _is(sides[opposite[red_at]], BLUE)


def test_image_over_the_pixel_limit_is_refused_by_name(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (50, 40)).save(path)
    with pytest.raises(ValueError, match=r"big.png is 50x40 pixels, over the limit of 1,999; downscale it"):
        load_image(path, 16, max_pixels=1999)
    assert load_image(path, 16, max_pixels=2000).shape == (16, 16, 3)  # at the limit is fine


@pytest.mark.parametrize("pil_limit", [1500, 500])  # PIL warns above its limit, raises above twice it
def test_pils_decompression_bomb_guard_becomes_a_value_error(tmp_path, monkeypatch, pil_limit):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (50, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_limit)
    with pytest.raises(ValueError, match=r"bomb.png is too large to decode safely .*downscale it first"):
        load_image(path, 16, max_pixels=10**9)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file at .*nope.png"):
        load_image(tmp_path / "nope.png", 16)
    with pytest.raises(FileNotFoundError, match="no image file at"):  # a folder is not an image file either
        load_image(tmp_path, 16)


@pytest.mark.parametrize("content", ["text", "empty", "truncated-jpeg"])
def test_a_file_that_is_not_a_readable_image(tmp_path, content):
    path = tmp_path / "x.jpg"
    if content == "truncated-jpeg":
        Image.effect_noise((64, 64), 50).convert("RGB").save(path, format="JPEG")
        path.write_bytes(path.read_bytes()[:600])
    else:
        path.write_bytes(b"hello, I am not an image\n" if content == "text" else b"")
    with pytest.raises(ValueError, match=r"cannot read .*x.jpg as an image"):
        load_image(path, 16)


@pytest.mark.parametrize("mode, fill, rgb", [
    ("L", 200, (200, 200, 200)),
    ("LA", (90, 10), (90, 90, 90)),
    ("RGBA", (10, 20, 30, 0), (10, 20, 30)),
    ("P", 1, (40, 50, 60)),
    ("1", 1, (255, 255, 255)),
    ("I;16", 1000, None),
])
def test_any_mode_and_odd_size_becomes_rgb_square(tmp_path, mode, fill, rgb):
    im = Image.new(mode, (37, 23), fill)
    if mode == "P":
        im.putpalette([0, 0, 0, 40, 50, 60])
    path = tmp_path / "odd.png"
    im.save(path)
    with Image.open(path) as saved:
        assert saved.mode == mode and saved.size == (37, 23)
    out = load_image(path, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    if rgb is not None:
        assert (out == np.array(rgb, dtype=np.uint8)).all()
