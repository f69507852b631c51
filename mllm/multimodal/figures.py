"""The captioner's pictures: a gallery of test photos with their captions, per-word attention maps, and the
alignment stage's nearest captions of a photo.

Both draw the photo at full resolution, with the model's input (the photo resized to S x S) as an inset, so a
reader sees what the model saw and what a person sees.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mllm.io import atomic_write  # noqa: E402


def _save(fig, path: Path, dpi: int = 100) -> None:
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    plt.close(fig)


def _inset(ax, model_input: np.ndarray) -> None:
    """The model's input image in the photo's lower-right corner, framed."""
    inner = ax.inset_axes((0.68, 0.02, 0.3, 0.3))
    inner.imshow(model_input, interpolation="nearest")
    inner.set_xticks([])
    inner.set_yticks([])
    for spine in inner.spines.values():
        spine.set_edgecolor("white")
        spine.set_linewidth(1.5)


def gallery_figure(photos: list[np.ndarray], inputs: np.ndarray, captions: dict[str, list[str]], path: Path,
                   cols: int = 3) -> None:
    """Photos (full resolution, uint8 [H, W, 3] each) with the model's inputs [N, S, S, 3] as insets, each
    captioned below with one line per entry of `captions` ({label: one caption per photo})."""
    rows = -(-len(photos) // cols)
    lines = sum(2 for _ in captions)  # a caption may wrap once
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, (4.0 + 0.32 * lines) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, photo) in enumerate(zip(axes.flat, photos, strict=False)):
        ax.imshow(photo)
        _inset(ax, inputs[i])
        text = "\n".join(textwrap.fill(f"{label}: {texts[i]}", 52) for label, texts in captions.items())
        ax.text(0.0, -0.02, text, transform=ax.transAxes, va="top", ha="left", fontsize=11)
    fig.tight_layout(h_pad=3.0)
    _save(fig, path)


def upsample_map(weights: torch.Tensor | np.ndarray, height: int, width: int) -> np.ndarray:
    """Attention over P image tokens (a sqrt(P) x sqrt(P) grid, row-major) -> [height, width], bilinear."""
    w = torch.as_tensor(weights, dtype=torch.float32)
    side = math.isqrt(w.numel())
    if side * side != w.numel():
        raise ValueError(f"{w.numel()} image tokens do not form a square grid")
    grid = w.reshape(1, 1, side, side)
    return F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def attention_figure(photo: np.ndarray, model_input: np.ndarray, words: list[str], maps: torch.Tensor,
                     path: Path, title: str = "") -> None:
    """Where each word looked: maps [layers, L, P] (each row sums to one over the P image tokens).

    Row 0 is the combined map (the mean over layers), rows 1.. each layer's; column 0 the photo with the model's
    input inset, then one column per word, its map drawn over the photo (brighter: more attention). Each map is
    scaled to its own maximum, so the panels show where, not how much.
    """
    layers, n_words = maps.shape[0], len(words)
    rows = [("combined", maps.mean(0))] + [(f"layer {i + 1}", maps[i]) for i in range(layers)]
    h, w = photo.shape[:2]
    fig, axes = plt.subplots(len(rows), n_words + 1, figsize=(1.9 * (n_words + 1), 1.9 * h / w * len(rows) + 0.6),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(photo)
    _inset(axes[0, 0], model_input)
    axes[0, 0].set_title("photo (input inset)", fontsize=9)
    for r, (label, m) in enumerate(rows):
        axes[r, 0].text(-0.05, 0.5, label, transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right",
                        fontsize=9)
        if r:
            axes[r, 0].imshow(photo)
        for j, word in enumerate(words):
            ax = axes[r, j + 1]
            heat = upsample_map(m[j], h, w)
            ax.imshow(photo)
            ax.imshow(heat / max(float(heat.max()), 1e-12), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            if r == 0:
                ax.set_title(word, fontsize=11)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _save(fig, path, dpi=80)


def retrieval_figure(images: np.ndarray, nearest: list[list[tuple[str, bool]]], path: Path, cols: int = 3) -> None:
    """Photos as the model sees them (uint8 [N, S, S, 3]), each with its nearest captions below, in order; a
    caption of the photo's own is marked (+) and drawn green, another photo's (-) red."""
    rows = -(-len(images) // cols)
    lines = 2 * max(len(n) for n in nearest)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, (3.6 + 0.3 * lines) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, captions in zip(axes.flat, images, nearest, strict=False):
        ax.imshow(image, interpolation="nearest")
        y = -0.02
        for k, (text, own) in enumerate(captions):
            line = textwrap.fill(f"{k + 1}. ({'+' if own else '-'}) {text}", 50)
            ax.text(0.0, y, line, transform=ax.transAxes, va="top", ha="left", fontsize=10,
                    color="#1a7f37" if own else "#b42318")
            y -= 0.075 * (line.count("\n") + 1)
    fig.tight_layout(h_pad=3.0)
    _save(fig, path)
