import io
import pickle
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mllm.data import DataError, prepare_cifar10, prepare_flickr8k, prepare_shakespeare
from mllm.data.augment import random_crop, random_flip
from mllm.data.download import Source, download, fetch, md5sum
from mllm.data.flickr8k import parse_captions

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


@pytest.mark.parametrize("form", ["token", "csv"])
def test_flickr_both_caption_formats(tmp_path, form):
    mirror = tmp_path / "mirror" / "flickr8k"
    mirror.mkdir(parents=True)
    with zipfile.ZipFile(mirror / "Flickr8k_text.zip", "w") as z:
        z.writestr("Flickr8k.token.txt" if form == "token" else "captions.txt", TOKENS if form == "token" else CSV)
        z.writestr("Flickr_8k.trainImages.txt", "a.jpg\n")
        z.writestr("Flickr_8k.devImages.txt", "b.jpg\n")
        z.writestr("Flickr_8k.testImages.txt", "")
    with zipfile.ZipFile(mirror / "Flickr8k_Dataset.zip", "w") as z:
        z.writestr("Flicker8k_Dataset/a.jpg", _png((255, 0, 0), 40))
        z.writestr("Flicker8k_Dataset/b.jpg", _png((0, 255, 0), 40))
    data = prepare_flickr8k(tmp_path / "root", tmp_path / "mirror", image_size=16, log=lambda *_: None)
    assert data.images.shape == (2, 16, 16, 3)
    assert data.captions_of(0) == ["A dog runs .", "A dog plays ."]
    assert data.captions_of(1) == ["A cat , sleeping ."]
    assert data.stats["caption_lines_skipped"] == 1 and data.stats["images_missing"] == 1
    assert data.split.tolist() == [0, 1]


def test_caption_csv_needs_its_header():
    with pytest.raises(DataError, match="header 'image,caption'"):
        parse_captions("a.jpg,A dog\n", csv_form=True)


# ---- fetching: mirror, download, checksums ----------------------------------------------------

def test_mirror_missing_a_file_names_it_and_the_url(tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(DataError, match=r"has no .*tinyshakespeare/input.txt.*download it from https://"):
        prepare_shakespeare(tmp_path / "root", tmp_path / "mirror")


def test_mirror_that_is_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="is not a folder; pass --data-mirror"):
        prepare_shakespeare(tmp_path / "root", tmp_path / "nowhere")


def test_wrong_checksum_in_mirror(tmp_path):
    (tmp_path / "m" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "m" / "tinyshakespeare" / "input.txt").write_text("not shakespeare " * 100)
    with pytest.raises(DataError, match="wrong checksum"):
        prepare_shakespeare(tmp_path / "root", tmp_path / "m")


def test_no_network_and_no_mirror(tmp_path):
    source = Source("input.txt", "x", "http://127.0.0.1:9/input.txt")
    with pytest.raises(DataError, match=r"could not download http://127.0.0.1:9/input.txt.*--data-mirror"):
        fetch([source], None, tmp_path)
    assert not (tmp_path / "input.txt").exists()


class _RangeHandler(SimpleHTTPRequestHandler):
    """Serves files and honours `Range: bytes=N-` (enough to test resuming)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().send_head()
        start = int(rng.split("=")[1].rstrip("-"))
        data = path.read_bytes()[start:]
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_resumes_a_partial_file_and_checks_md5(server, tmp_path):
    root, url = server
    payload = bytes(range(256)) * 1000
    (root / "blob.bin").write_bytes(payload)
    dest = tmp_path / "dl" / "blob.bin"
    dest.parent.mkdir()
    dest.with_name("blob.bin.part").write_bytes(payload[:100_000])  # an interrupted earlier download
    source = Source("blob.bin", "x", f"{url}/blob.bin", md5sum(root / "blob.bin"))
    assert download(source, dest).read_bytes() == payload
    assert not dest.with_name("blob.bin.part").exists()

    bad = Source("blob.bin", "x", f"{url}/blob.bin", "0" * 32)
    with pytest.raises(DataError, match="wrong checksum"):
        download(bad, tmp_path / "dl2" / "blob.bin")
    assert not (tmp_path / "dl2" / "blob.bin").exists() and not (tmp_path / "dl2" / "blob.bin.part").exists()


# ---- batch augmentation -----------------------------------------------------------------------

def test_random_crop_and_flip_are_per_image_shifts():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, g)
    assert out.shape == x.shape
    for i in range(2):  # each output is a shifted window of the zero-padded input
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        assert any(torch.equal(out[i], padded[:, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))
    flipped = random_flip(x, torch.Generator().manual_seed(3))
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
