"""CIFAR-10: the official pickled batches or an image-folder archive -> uint8 arrays, cached once."""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mllm.io import cached_arrays

from .download import DataError, Source, fetch

OFFICIAL = Source("cifar-10-python.tar.gz", "cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                  "c58f30108f718f92721af3b95e74349a")
JPEG_MIRROR = Source("cifar10-jpeg.zip", "cifar10", None, "799604be41ee09c853fb92e3cae990ef")
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


@dataclass
class Cifar10:
    x_train: np.ndarray  # [50000, 32, 32, 3] uint8
    y_train: np.ndarray  # [50000] int64
    x_test: np.ndarray  # [10000, 32, 32, 3] uint8
    y_test: np.ndarray  # [10000] int64
    classes: tuple[str, ...] = CLASSES


def prepare_cifar10(root: str | Path = "data", mirror: Path | None = None, source: str | Path | None = None) -> Cifar10:
    """Load the cached arrays under `root/cifar10`, building them from `source` (or the mirror/URL) once."""
    cache = Path(root) / "cifar10" / "cifar10.npz"
    settings = {"version": 1, "source": str(source) if source else "auto"}
    arrays = cached_arrays(cache, settings, lambda: read_cifar10(
        Path(source) if source else fetch([OFFICIAL, JPEG_MIRROR], mirror, Path(root) / "downloads")))
    return Cifar10(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def read_cifar10(path: Path) -> dict[str, np.ndarray]:
    """Read the official `cifar-10-python.tar.gz`, or a zip/folder laid out `{train,test}/<class>/*.jpg`."""
    name = path.name.lower()
    try:
        if path.is_dir():
            return _read_folder({str(p.relative_to(path)): p.read_bytes for p in path.rglob("*") if p.is_file()}, path)
        if name.endswith((".tar.gz", ".tgz")) or (not name.endswith(".zip") and tarfile.is_tarfile(path)):
            return _read_pickles(path)
        if name.endswith(".zip") or zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return _read_folder({n: (lambda n=n: z.read(n)) for n in z.namelist() if not n.endswith("/")}, path)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, pickle.UnpicklingError, KeyError) as e:
        raise DataError(f"{path} is corrupt or truncated ({e}); delete it and fetch it again from "
                        f"{OFFICIAL.url} (or copy it again into the data mirror)") from e
    raise DataError(f"{path} is neither a tar.gz of CIFAR-10 pickles nor a zip/folder of images; "
                    f"expected {OFFICIAL.filename} from {OFFICIAL.url}")


def _read_pickles(path: Path) -> dict[str, np.ndarray]:
    with tarfile.open(path, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        needed = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        missing = [n for n in needed if n not in members]
        if missing:
            raise DataError(f"{path} does not have the CIFAR-10 layout: missing {missing} "
                            f"(expected cifar-10-batches-py/data_batch_1..5 and test_batch)")

        def batch(name):
            d = pickle.load(tar.extractfile(members[name]), encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            return x, np.asarray(d[b"labels"], dtype=np.int64)

        train = [batch(n) for n in needed[:5]]
        x_test, y_test = batch("test_batch")
    return {"x_train": np.concatenate([x for x, _ in train]), "y_train": np.concatenate([y for _, y in train]),
            "x_test": np.ascontiguousarray(x_test), "y_test": y_test}


def _read_folder(files: dict, path: Path) -> dict[str, np.ndarray]:
    """files: relative name -> reader returning bytes. Finds `<any>/{train,test}/<class>/<image>`."""
    out = {}
    for split in ("train", "test"):
        entries = []
        for name in sorted(files):
            parts = Path(name).parts
            if len(parts) >= 3 and parts[-3] == split and name.lower().endswith(IMAGE_EXTS):
                if parts[-2] not in CLASSES:
                    raise DataError(f"{path}: unknown class folder {parts[-2]!r} in {name}; "
                                    f"expected one of {', '.join(CLASSES)}")
                entries.append((name, CLASSES.index(parts[-2])))
        if not entries:
            raise DataError(f"{path} does not have the CIFAR-10 image layout: no images under "
                            f"{split}/<class>/ (expected {{train,test}}/<class>/*.png|jpg, or {OFFICIAL.filename})")
        with ThreadPoolExecutor(4) as pool:
            images = list(pool.map(lambda e: _decode(files[e[0]](), e[0], path), entries))
        out[f"x_{split}"] = np.stack(images)
        out[f"y_{split}"] = np.array([label for _, label in entries], dtype=np.int64)
    return out


def _decode(data: bytes, name: str, path: Path) -> np.ndarray:
    try:
        image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except OSError as e:
        raise DataError(f"{path}: cannot decode image {name} ({e}); the archive is corrupt, fetch it again") from e
    if image.shape != (32, 32, 3):
        raise DataError(f"{path}: image {name} is {image.shape[1]}x{image.shape[0]}, CIFAR-10 images are 32x32")
    return image
