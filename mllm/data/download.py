"""Find a data set's archive in a mirror folder or download it, resumably, with a checksum check."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

MIRROR_ENV = "MLLM_DATA_MIRROR"


class DataError(RuntimeError):
    """A data set could not be found, downloaded or read; the message says how to fix it."""


@dataclass(frozen=True)
class Source:
    """One archive: its file name, where the mirror keeps it, and where it comes from."""

    filename: str
    subdir: str  # folder inside a mirror, e.g. "cifar10"
    url: str | None = None  # None: only available from a mirror
    md5: str | None = None


def default_mirror() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value) if value else None


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, source: Source) -> None:
    if source.md5 and md5sum(path) != source.md5:
        raise DataError(f"{path} has the wrong checksum (expected md5 {source.md5}); the file is corrupt or "
                        f"truncated: delete it and download it again" + (f" from {source.url}" if source.url else ""))


def in_mirror(source: Source, mirror: Path | None) -> Path | None:
    """The archive's path in the mirror (`mirror/subdir/filename` or `mirror/filename`), if there."""
    if mirror is None:
        return None
    for candidate in (mirror / source.subdir / source.filename, mirror / source.filename):
        if candidate.is_file():
            return candidate
    return None


def fetch(sources: list[Source], mirror: Path | None, download_dir: Path, verify: bool = True) -> Path:
    """Return the first source found: in the mirror, already downloaded, or downloaded now.

    `sources` are alternatives (for example the official archive and the mirror's re-encoding).
    """
    if mirror is not None and not Path(mirror).is_dir():
        raise DataError(f"data mirror {mirror} is not a folder; pass --data-mirror DIR (or set {MIRROR_ENV}) "
                        f"to a folder holding the archives")
    for source in sources:
        path = in_mirror(source, mirror) or _existing(download_dir / source.filename)
        if path is not None:
            if verify:
                _verify(path, source)
            return path
    if mirror is not None:
        wanted = " or ".join(f"{mirror / s.subdir / s.filename}" for s in sources)
        raise DataError(f"data mirror {mirror} has no {wanted}; add the file there"
                        + "".join(f", or download it from {s.url}" for s in sources if s.url))
    for source in sources:
        if source.url:
            return download(source, download_dir / source.filename)
    raise DataError(f"no download address for {sources[0].filename}; pass --data-mirror DIR")


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def download(source: Source, dest: Path, timeout: float = 30.0, attempts: int = 3) -> Path:
    """Download `source.url` to `dest` via `dest.part`, resuming a partial file, then verify and rename.

    A transfer cut short (fewer bytes than announced) is resumed, up to `attempts` tries in all; after that
    the `.part` is kept and the error says to run again. A `.part` that is already complete (the server
    answers 416 to the range request with the file's size) is verified and finished.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        total = _transfer(source, part, timeout)
        got = part.stat().st_size if part.exists() else 0
        if total is None or got >= total:
            break
        if attempt == attempts:
            raise DataError(f"the download of {source.url} was cut short {attempts} times: {got:,} of {total:,} "
                            f"bytes. Run the same command again to resume from {part}")
        tqdm.write(f"download cut short at {got:,} of {total:,} bytes; resuming ({attempt + 1}/{attempts})")
    try:
        _verify(part, source)
    except DataError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _transfer(source: Source, part: Path, timeout: float) -> int | None:
    """One request, appending to `part` from its current size; returns the full size announced, if any."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(source.url, headers={"Range": f"bytes={have}-"} if have else {})
    advice = (f"Without network, put {source.filename} in a folder and pass --data-mirror DIR (or set "
              f"{MIRROR_ENV}); the partial download in {part} resumes next time")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # server ignored the range: start over
                have = 0
            total = response.length + have if response.length is not None else None
            with open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=f"download {part.name[:-5]}"
            ) as bar:
                while block := response.read(1 << 16):
                    f.write(block)
                    bar.update(len(block))
            return total
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:
            raise DataError(f"could not download {source.url} ({e}). {advice}") from e
        size = (e.headers.get("Content-Range") or "").rpartition("/")[2]
        if size.isdigit() and int(size) == have:
            return have  # nothing left to fetch: the part is complete
        if not size.isdigit() and source.md5:
            return have  # no size given: the checksum decides
        part.unlink()  # longer than the file, or nothing to check it by: start over
        return _transfer(source, part, timeout)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DataError(f"could not download {source.url} ({type(e).__name__}: {e}). {advice}") from e
