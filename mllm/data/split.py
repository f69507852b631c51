"""Held-out splits: recipes and checkpoints are chosen on a validation split, never on the test set."""

from __future__ import annotations

import numpy as np

from .download import DataError


def stratified_split(labels: np.ndarray, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of a split of `labels` [N] with `val_size` items, the classes in proportion.

    Each class gives floor(val_size * its share) items, plus one for the classes with the largest
    remainders until the sizes add up to val_size (largest remainders), chosen
    by a permutation fixed by `seed`; both index arrays are sorted. Deterministic across machines.
    """
    labels = np.asarray(labels)
    if not 0 < val_size < len(labels):
        raise DataError(f"val_size {val_size} must be between 1 and {len(labels) - 1} (the training set has "
                        f"{len(labels)} items)")
    classes, counts = np.unique(labels, return_counts=True)
    exact = val_size * counts / counts.sum()
    take = np.floor(exact).astype(int)
    take[np.argsort(-(exact - take), kind="stable")[: val_size - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)])
    mask = np.zeros(len(labels), dtype=bool)
    mask[val] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)
