"""Tiny Shakespeare: the first 90% of the characters for training, the last 10% for validation (as nanoGPT)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .download import DataError, Source, fetch

SOURCE = Source("input.txt", "tinyshakespeare",
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                "6fb458f1232090904fb40fe944165e91")


@dataclass
class Shakespeare:
    train: str
    val: str

    @property
    def chars(self) -> str:
        """The sorted character vocabulary of the whole text (65 characters)."""
        return "".join(sorted(set(self.train) | set(self.val)))


def prepare_shakespeare(root: str | Path = "data", mirror: Path | None = None, source: str | Path | None = None,
                        train_fraction: float = 0.9) -> Shakespeare:
    """The text is small (1.1 MB): read it from the mirror or download dir each time; no cache needed."""
    path = Path(source) if source else fetch([SOURCE], mirror, Path(root) / "downloads")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} as UTF-8 text ({e}); fetch it again from {SOURCE.url}") from e
    if len(text) < 1000:
        raise DataError(f"{path} holds only {len(text)} characters; expected Tiny Shakespeare (1,115,394) "
                        f"from {SOURCE.url}")
    n = int(len(text) * train_fraction)
    return Shakespeare(text[:n], text[n:])
