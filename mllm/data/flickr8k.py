"""Flickr8k: images resized once to a square uint8 array, captions, the official 6000/1000/1000 splits."""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mllm.io import cached_arrays

from .download import DataError, Source, fetch

BASE = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/"
IMAGES = Source("Flickr8k_Dataset.zip", "flickr8k", BASE + "Flickr8k_Dataset.zip")
TEXT = Source("Flickr8k_text.zip", "flickr8k", BASE + "Flickr8k_text.zip")
SPLITS = ("train", "dev", "test")
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}


@dataclass
class Flickr8k:
    images: np.ndarray  # [N, S, S, 3] uint8, the images of the three splits
    names: np.ndarray  # [N] file names
    split: np.ndarray  # [N] 0 train, 1 dev, 2 test
    captions: np.ndarray  # [M] caption strings
    caption_image: np.ndarray  # [M] index into images
    stats: dict

    def split_indices(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split == SPLITS.index(name))

    def captions_of(self, image_index: int) -> list[str]:
        return [str(c) for c in self.captions[self.caption_image == image_index]]


def prepare_flickr8k(root: str | Path = "data", mirror: Path | None = None, image_size: int = 64,
                     log=print) -> Flickr8k:
    cache = Path(root) / "flickr8k" / f"flickr8k_{image_size}.npz"
    settings = {"version": 1, "image_size": image_size}
    downloads = Path(root) / "downloads"
    arrays = cached_arrays(cache, settings, lambda: read_flickr8k(
        fetch([TEXT], mirror, downloads), fetch([IMAGES], mirror, downloads), image_size, log))
    stats = {k[6:]: int(v) for k, v in arrays.items() if k.startswith("stats_")}
    return Flickr8k(arrays["images"], arrays["names"], arrays["split"], arrays["captions"],
                    arrays["caption_image"], stats)


def read_photos(names: list[str], root: str | Path = "data", mirror: Path | None = None) -> list[np.ndarray]:
    """Named Flickr8k images (e.g. 1000268201_693b08cb0e.jpg) as stored in the archive, uint8 [H, W, 3] RGB:
    the photos at full resolution (the mirror's copies at the size it keeps), for figures."""
    path = fetch([IMAGES], mirror, Path(root) / "downloads")
    with _open_zip(path) as z:
        members = {Path(n).name: n for n in z.namelist() if n.lower().endswith(".jpg")}
        unknown = [n for n in names if n not in members]
        if unknown:
            raise DataError(f"{path} holds no image named {unknown[0]!r}; Flickr8k names look like "
                            f"1000268201_693b08cb0e.jpg")
        out = []
        for name in names:
            with Image.open(io.BytesIO(z.read(members[name]))) as im:
                out.append(np.asarray(im.convert("RGB")))
        return out


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        z = zipfile.ZipFile(path)
        bad = z.testzip() if path.stat().st_size < 10_000_000 else None  # CRC-check the small text zip
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path} is not a readable zip ({e}); delete it and fetch it again from {BASE}") from e
    if bad:
        raise DataError(f"{path} is corrupt ({bad} fails its CRC); fetch it again from {BASE}")
    return z


def _find(z: zipfile.ZipFile, filename: str) -> str | None:
    return next((n for n in z.namelist() if Path(n).name == filename), None)


def parse_captions(text: str, csv_form: bool) -> dict[str, list[str]]:
    """`Flickr8k.token.txt` lines `name.jpg#k<TAB>caption`, or `captions.txt` CSV `image,caption`."""
    captions = defaultdict(list)
    if csv_form:
        rows = csv.reader(io.StringIO(text))
        header = next(rows, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
            raise DataError(f"captions.txt must start with the header 'image,caption', got {header}")
        for row in rows:
            if len(row) >= 2:
                captions[row[0].strip()].append(",".join(row[1:]).strip())
    else:
        for line in text.splitlines():
            if "\t" in line:
                key, caption = line.split("\t", 1)
                captions[key.rsplit("#", 1)[0]].append(caption.strip())
    if not captions:
        raise DataError("no captions found: expected lines 'IMAGE.jpg#N<TAB>caption' (Flickr8k.token.txt) "
                        "or a CSV 'image,caption' (captions.txt)")
    return captions


def read_flickr8k(text_zip: Path, image_zip: Path, image_size: int, log=print) -> dict[str, np.ndarray]:
    with _open_zip(text_zip) as tz, _open_zip(image_zip) as iz:
        return _read(tz, iz, text_zip, image_zip, image_size, log)


def _read(tz: zipfile.ZipFile, iz: zipfile.ZipFile, text_zip: Path, image_zip: Path, image_size: int,
          log) -> dict[str, np.ndarray]:
    token, csv_name = _find(tz, "Flickr8k.token.txt"), _find(tz, "captions.txt")
    if token is None and csv_name is None:
        raise DataError(f"{text_zip} has neither Flickr8k.token.txt nor captions.txt; it is not the Flickr8k "
                        f"text archive (get {BASE}{TEXT.filename})")
    captions = parse_captions(tz.read(token or csv_name).decode("utf-8"), csv_form=token is None)
    image_names = {Path(n).name: n for n in iz.namelist() if n.lower().endswith(".jpg")}
    if not image_names:
        raise DataError(f"{image_zip} holds no .jpg images; expected Flicker8k_Dataset/*.jpg "
                        f"(get {BASE}{IMAGES.filename})")
    missing = sorted(n for n in captions if n not in image_names)
    stats = {"caption_lines_skipped": sum(len(captions.pop(n)) for n in missing), "images_missing": len(missing)}
    names, split = [], []
    for s, split_name in enumerate(SPLITS):
        member = _find(tz, SPLIT_FILES[split_name])
        if member is None:
            raise DataError(f"{text_zip} lacks the split list {SPLIT_FILES[split_name]}; use the official "
                            f"{BASE}{TEXT.filename}")
        listed = [n.strip() for n in tz.read(member).decode().split() if n.strip() in captions]
        names += listed
        split += [s] * len(listed)
        stats[f"{split_name}_images"] = len(listed)
    stats["images_in_no_split"] = len(set(captions) - set(names))

    def load(name):
        member = image_names[name]
        try:
            with Image.open(io.BytesIO(iz.read(member))) as im:
                return np.asarray(im.convert("RGB").resize((image_size, image_size), Image.BICUBIC))
        except (zipfile.BadZipFile, zlib.error, OSError, SyntaxError, ValueError) as e:
            raise DataError(f"{image_zip}: cannot read image {member} ({type(e).__name__}: {e}); the archive is "
                            f"corrupt: delete it and fetch it again from {BASE}{IMAGES.filename}") from e

    with ThreadPoolExecutor(4) as pool:
        images = np.stack(list(pool.map(load, names)))
    caps = [(i, c) for i, n in enumerate(names) for c in captions[n]]
    log(f"flickr8k: {len(names)} images ({stats['train_images']}/{stats['dev_images']}/{stats['test_images']}), "
        f"{len(caps)} captions; skipped {stats['caption_lines_skipped']} caption lines of "
        f"{stats['images_missing']} missing images; {stats['images_in_no_split']} images in no split")
    return {"images": images, "names": np.array(names), "split": np.array(split, dtype=np.int8),
            "captions": np.array([c for _, c in caps]), "caption_image": np.array([i for i, _ in caps], np.int32),
            **{f"stats_{k}": np.array(v) for k, v in stats.items()}}
