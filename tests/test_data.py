import io
import json
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mllm.data import DataError, prepare_cifar10, prepare_flickr8k, prepare_shakespeare
from mllm.data.flickr8k import parse_captions
from mllm.io import load_arrays, save_arrays

# ---- the real data sets, from the mirror ------------------------------------------------------


def test_prepare_all_three_from_the_mirror(mirror, data_root):
    cifar = prepare_cifar10(data_root, mirror)
    assert cifar.x_train.shape == (50000, 32, 32, 3) and cifar.x_test.shape == (10000, 32, 32, 3)
    assert cifar.x_train.dtype == np.uint8
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10

    text = prepare_shakespeare(data_root, mirror)
    assert (len(text.train), len(text.val), len(text.chars)) == (1_003_854, 111_540, 65)

    flickr = prepare_flickr8k(data_root, mirror, image_size=32)
    assert [len(flickr.split_indices(s)) for s in ("train", "dev", "test")] == [6000, 1000, 1000]
    assert np.bincount(flickr.caption_image).tolist() == [5] * 8000
    assert flickr.images.shape == (8000, 32, 32, 3)
    assert flickr.stats["caption_lines_skipped"] == 5 and flickr.stats["images_in_no_split"] == 91

    cache = data_root / "cifar10" / "cifar10.npz"
    mtime = cache.stat().st_mtime_ns
    prepare_cifar10(data_root, mirror)  # second run reuses the cache
    assert cache.stat().st_mtime_ns == mtime


# ---- small archives built here ----------------------------------------------------------------

def _png(color, size=32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(color, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _member_data_offset(path: Path, member: str) -> tuple[int, int]:
    """Where `member`'s (compressed) data starts in the zip file at `path`, and its length."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def _poke(path: Path, offset: int, value: int | None = None) -> None:
    """Overwrite one byte of the file (or invert it when `value` is None)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([old ^ 0xFF if value is None else value]))


def _cut(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if how == "half" else b"")


def _cifar_pickles(path: Path, per_batch: int = 4) -> Path:
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            d = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": list(range(per_batch))}
            blob = pickle.dumps(d)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def _cifar_zip(path: Path, classes=("cat", "dog"), size=32) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for split in ("train", "test"):
            for i, c in enumerate(classes):
                z.writestr(f"cifar10/{split}/{c}/{i:04d}.png", _png((i * 100, 0, 0), size))
    return path


def test_cifar_official_pickle_form(tmp_path):
    archive = _cifar_pickles(tmp_path / "cifar-10-python.tar.gz")
    data = prepare_cifar10(tmp_path / "root", source=archive)
    assert data.x_train.shape == (20, 32, 32, 3) and data.x_test.shape == (4, 32, 32, 3)
    with tarfile.open(archive) as tar:  # the channel-first rows become HWC images
        first = pickle.load(tar.extractfile("cifar-10-batches-py/data_batch_1"), encoding="bytes")[b"data"][0]
    assert np.array_equal(data.x_train[0], first.reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar_image_folder_zip_and_directory(tmp_path):
    archive = _cifar_zip(tmp_path / "cifar10-jpeg.zip")
    data = prepare_cifar10(tmp_path / "root", source=archive)
    assert data.y_train.tolist() == [3, 5]  # cat, dog in CIFAR's class order
    assert data.x_train[1, 0, 0].tolist() == [100, 0, 0]
    folder = tmp_path / "folder"
    zipfile.ZipFile(archive).extractall(folder)
    again = prepare_cifar10(tmp_path / "root2", source=folder)
    assert np.array_equal(again.x_train, data.x_train)


@pytest.mark.parametrize("bad", ["truncated-tar", "truncated-zip", "wrong-layout", "wrong-size", "not-an-archive"])
def test_cifar_bad_archives(tmp_path, bad):
    if bad == "truncated-tar":
        path = _cifar_pickles(tmp_path / "cifar-10-python.tar.gz")
        path.write_bytes(path.read_bytes()[:2000])
        match = "corrupt or truncated"
    elif bad == "truncated-zip":
        path = _cifar_zip(tmp_path / "c.zip")
        path.write_bytes(path.read_bytes()[:300])
        match = "corrupt or truncated"
    elif bad == "wrong-layout":
        path = tmp_path / "c.zip"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("images/0001.png", _png((0, 0, 0)))
        match = r"no images under train/<class>/"
    elif bad == "wrong-size":
        path = _cifar_zip(tmp_path / "c.zip", size=20)
        match = "is 20x20, CIFAR-10 images are 32x32"
    else:
        path = tmp_path / "c.bin"
        path.write_bytes(b"hello")
        match = "neither a tar.gz"
    with pytest.raises(DataError, match=match) as e:
        prepare_cifar10(tmp_path / "root", source=path)
    assert str(path) in str(e.value)
    assert not list((tmp_path / "root").rglob("*.npz")) and not list((tmp_path / "root").rglob("*.tmp"))


TOKENS = "a.jpg#0\tA dog runs .\na.jpg#1\tA dog plays .\nb.jpg#0\tA cat , sleeping .\nghost.jpg#0\tNo image .\n"
CSV = 'image,caption\na.jpg,A dog runs .\na.jpg,A dog plays .\nb.jpg,"A cat , sleeping ."\nghost.jpg,No image .\n'


def _flickr_mirror(tmp_path: Path, form: str = "token", images: dict[str, bytes] | None = None,
                   compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A two-image Flickr8k mirror under tmp_path/mirror (a.jpg train, b.jpg dev); returns the image zip."""
    mirror = tmp_path / "mirror" / "flickr8k"
    mirror.mkdir(parents=True)
    with zipfile.ZipFile(mirror / "Flickr8k_text.zip", "w") as z:
        z.writestr("Flickr8k.token.txt" if form == "token" else "captions.txt", TOKENS if form == "token" else CSV)
        z.writestr("Flickr_8k.trainImages.txt", "a.jpg\n")
        z.writestr("Flickr_8k.devImages.txt", "b.jpg\n")
        z.writestr("Flickr_8k.testImages.txt", "")
    if images is None:
        images = {"Flicker8k_Dataset/a.jpg": _png((255, 0, 0), 40), "Flicker8k_Dataset/b.jpg": _png((0, 255, 0), 40)}
    with zipfile.ZipFile(mirror / "Flickr8k_Dataset.zip", "w", compression) as z:
        for name, blob in images.items():
            z.writestr(name, blob)
    return mirror / "Flickr8k_Dataset.zip"


def _prepare_flickr(tmp_path: Path):
    return prepare_flickr8k(tmp_path / "root", tmp_path / "mirror", image_size=16, log=lambda *_: None)


@pytest.mark.parametrize("form", ["token", "csv"])
def test_flickr_both_caption_formats(tmp_path, form):
    _flickr_mirror(tmp_path, form)
    data = _prepare_flickr(tmp_path)
    assert data.images.shape == (2, 16, 16, 3)
    assert data.captions_of(0) == ["A dog runs .", "A dog plays ."]
    assert data.captions_of(1) == ["A cat , sleeping ."]
    assert data.stats["caption_lines_skipped"] == 1 and data.stats["images_missing"] == 1
    assert data.split.tolist() == [0, 1]


@pytest.mark.parametrize("damage", ["not-a-jpeg", "truncated-jpeg"])
def test_flickr_corrupt_image_names_the_member(tmp_path, damage):
    good = _jpeg((0, 255, 0))
    bad = b"this is not a JPEG" * 20 if damage == "not-a-jpeg" else good[:len(good) // 2]
    image_zip = _flickr_mirror(tmp_path, images={"Flicker8k_Dataset/a.jpg": _jpeg((255, 0, 0)),
                                                 "Flicker8k_Dataset/b.jpg": bad})
    with pytest.raises(DataError, match="cannot read image Flicker8k_Dataset/b.jpg") as e:
        _prepare_flickr(tmp_path)
    assert str(image_zip) in str(e.value) and "fetch it again" in str(e.value)
    assert not list((tmp_path / "root").rglob("*.npz"))


def test_flickr_image_failing_its_crc_names_the_member(tmp_path):
    # The real image zip is 1 GB and is not CRC-checked up front (only zips under 10 MB are), so a stored member
    # past that size whose bytes are damaged must be caught when it is read. The filler makes this zip that big.
    image_zip = _flickr_mirror(tmp_path, images={"Flicker8k_Dataset/a.jpg": _jpeg((255, 0, 0)),
                                                 "Flicker8k_Dataset/b.jpg": _jpeg((0, 255, 0)),
                                                 "Flicker8k_Dataset/filler.bin": bytes(10_000_000)},
                               compression=zipfile.ZIP_STORED)
    assert image_zip.stat().st_size > 10_000_000
    start, length = _member_data_offset(image_zip, "Flicker8k_Dataset/b.jpg")
    _poke(image_zip, start + length // 2)
    with pytest.raises(DataError, match=r"cannot read image Flicker8k_Dataset/b.jpg \(BadZipFile: Bad CRC") as e:
        _prepare_flickr(tmp_path)
    assert str(image_zip) in str(e.value)


@pytest.mark.parametrize("how", ["half", "empty"])
def test_truncated_flickr_cache_is_rebuilt(tmp_path, how):
    _flickr_mirror(tmp_path)
    first = _prepare_flickr(tmp_path)
    cache = tmp_path / "root" / "flickr8k" / "flickr8k_16.npz"
    size = cache.stat().st_size
    _cut(cache, how)
    again = _prepare_flickr(tmp_path)
    assert np.array_equal(again.images, first.images) and again.captions.tolist() == first.captions.tolist()
    assert cache.stat().st_size == size  # written whole again
    assert load_arrays(cache, {"version": 1, "image_size": 16}) is not None


@pytest.mark.parametrize("how", ["half", "empty"])
def test_truncated_cifar_cache_is_rebuilt(tmp_path, how):
    archive = _cifar_zip(tmp_path / "cifar10-jpeg.zip")
    first = prepare_cifar10(tmp_path / "root", source=archive)
    cache = tmp_path / "root" / "cifar10" / "cifar10.npz"
    size = cache.stat().st_size
    _cut(cache, how)
    again = prepare_cifar10(tmp_path / "root", source=archive)
    assert np.array_equal(again.x_train, first.x_train) and np.array_equal(again.y_test, first.y_test)
    assert cache.stat().st_size == size


@pytest.mark.parametrize("damage", ["none", "settings", "half", "empty", "bad-crc", "bad-deflate"])
def test_load_arrays_returns_none_for_any_unusable_cache(tmp_path, damage):
    settings = {"version": 1}
    images = np.arange(4096, dtype=np.uint8).reshape(16, 16, 16)
    path = tmp_path / "cache.npz"
    if damage == "bad-deflate":  # a compressed cache whose deflate stream is broken: zlib.error when read
        np.savez_compressed(path, __settings__=np.array(json.dumps(settings)), images=images)
        start, _ = _member_data_offset(path, "images.npy")
        _poke(path, start, 0b111)  # final block of the invalid type 3
    else:
        save_arrays(path, settings, images=images)
    if damage == "bad-crc":
        start, length = _member_data_offset(path, "images.npy")
        _poke(path, start + length - 1)
    elif damage in ("half", "empty"):
        _cut(path, damage)
    loaded = load_arrays(path, {"version": 2} if damage == "settings" else settings)
    if damage == "none":
        assert np.array_equal(loaded["images"], images) and list(loaded) == ["images"]
    else:
        assert loaded is None
    assert load_arrays(tmp_path / "missing.npz", settings) is None


def test_caption_csv_needs_its_header():
    with pytest.raises(DataError, match="header 'image,caption'"):
        parse_captions("a.jpg,A dog\n", csv_form=True)


def _build_slowly(cache: str, log: str) -> None:
    """In a child process: build the cache through cached_arrays, noting each build in `log`."""
    import time

    from mllm.io import cached_arrays

    def build():
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)  # long enough for the other process to find the cache missing
        return {"x": np.arange(3)}

    assert cached_arrays(cache, {"v": 1}, build)["x"].tolist() == [0, 1, 2]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the lock is POSIX flock")
def test_two_processes_building_one_cache_build_it_once(tmp_path):
    import multiprocessing

    cache, log = str(tmp_path / "c.npz"), str(tmp_path / "log")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_build_slowly, args=(cache, log)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert [w.exitcode for w in workers] == [0, 0]
    assert Path(log).read_text() == "built\n"  # the second process waited and read the first one's cache
    assert load_arrays(cache, {"v": 1})["x"].tolist() == [0, 1, 2]
