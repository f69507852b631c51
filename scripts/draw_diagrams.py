"""Draw the tutorial's diagrams (docs/tutorial/figures/*.png) with matplotlib; rerun after changing one.

    python scripts/draw_diagrams.py            # all of them
    python scripts/draw_diagrams.py masks      # one (names: see DIAGRAMS)

Every shape is drawn from the sizes the code uses (the cpu presets: 32x32 images, 4x4 patches, 64 patch
tokens, 16 image tokens); the loss curve is read from a kept run (results/demo-cpu/gpt-cpu/metrics.jsonl).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "tutorial" / "figures"
BLUE, ORANGE, GREEN, GREY, RED = "#4c72b0", "#dd8452", "#55a868", "#bbbbbb", "#c44e52"


def box(ax, x: float, y: float, w: float, h: float, text: str, color: str = "#dfe8f5", size: int = 9) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color, ec="#333"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str = "", color: str = "#333") -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=color, lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", va="bottom",
                fontsize=7.5, color="#333")


def canvas(width: float, height: float) -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    return fig, ax


def toy_image(size: int = 32) -> np.ndarray:
    """A smooth synthetic picture (a sun over hills), so the script needs no data set."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.35 + 0.4 * y, 0.55 + 0.3 * y, 0.95 - 0.3 * y], -1)
    sun = (x - 0.7) ** 2 + (y - 0.25) ** 2 < 0.02
    img[sun] = [1.0, 0.8, 0.2]
    hills = y > 0.65 + 0.1 * np.sin(6 * x)
    img[hills] = np.stack([0.2 + 0.2 * x, 0.55 + 0.1 * y, 0.25 + 0 * x], -1)[hills]
    return img.clip(0, 1)


def captioner(path: Path) -> None:
    fig, ax = canvas(14, 3.4)
    ax.imshow(toy_image(), extent=(0.1, 1.5, 0.9, 2.3))
    for i in range(1, 8):
        ax.plot([0.1 + i * 1.4 / 8] * 2, [0.9, 2.3], color="w", lw=0.5)
        ax.plot([0.1, 1.5], [0.9 + i * 1.4 / 8] * 2, color="w", lw=0.5)
    ax.text(0.8, 0.85, "image 32x32\n64 patches of 4x4", ha="center", va="top", fontsize=8)
    steps = [("ViT\n(4 layers, CIFAR-10\nweights)", "#dfe8f5", "[B, 64, 128]\npatch tokens"),
             ("pixel-unshuffle\n2x2 (space to depth)", "#fde3cf", "[B, 16, 512]"),
             ("MLP\nLinear-GELU-Linear", "#fde3cf", "[B, 16, 192]\nimage prefix"),
             ("GPT\n(word level, 4 layers,\ncausal)", "#dcefdc", "logits\n[B, T, V]")]
    x = 1.9
    arrow(ax, (1.55, 1.6), (x, 1.6))
    for name, color, shape in steps:
        box(ax, x, 1.0, 1.9, 1.2, name, color)
        arrow(ax, (x + 1.9, 1.6), (x + 2.6, 1.6))
        ax.text(x + 2.25, 2.35, shape, ha="center", va="bottom", fontsize=7.5)
        x += 2.6
    box(ax, x, 1.0, 1.4, 1.2, '"a dog runs\nthrough the\ngrass"', "#f5f5f5")
    ax.text(7.0, 0.1, "the GPT reads [16 image tokens] + [<bos> a dog runs ...] and predicts the next word at "
            "each caption position (LLaVA's design: an image prefix through an MLP connector)",
            ha="center", fontsize=8, style="italic")
    ax.text(0.1, 2.9, "The captioner end to end (cpu preset shapes)", fontsize=11, weight="bold")
    save(fig, path)


def masks(path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
    t = 6
    causal = np.tril(np.ones((t, t)))
    lengths = 4
    padding = causal * (np.arange(t)[None, :] < lengths)
    p, n = 4, 5
    prefix = np.tril(np.ones((p + n, p + n)))
    titles = ["causal: query i sees keys j <= i", f"causal & padding (a row of length {lengths})",
              f"image prefix ({p} image tokens) + {n} words,\ncausal over the whole sequence (GPT.forward)"]
    for ax, m, title in zip(axes, [causal, padding, prefix], titles, strict=True):
        colors = np.where(m[..., None] > 0, np.array([0.30, 0.45, 0.69]), np.array([0.93, 0.93, 0.93]))
        if m is prefix:
            image_keys = np.arange(p + n)[None, :] < p
            colors = np.where((m > 0)[..., None] & image_keys[..., None], np.array([0.87, 0.52, 0.32]), colors)
        ax.imshow(colors)
        ax.set_xticks(range(m.shape[1]))
        ax.set_yticks(range(m.shape[0]))
        ax.set_xlabel("key position j")
        ax.set_ylabel("query position i")
        ax.set_title(title, fontsize=9)
        for k in range(m.shape[0] + 1):
            ax.axhline(k - 0.5, color="w", lw=1)
            ax.axvline(k - 0.5, color="w", lw=1)
    axes[1].add_patch(Rectangle((lengths - 0.5, -0.5), t - lengths, t, fill=False, hatch="//", ec=GREY))
    axes[2].text(p / 2 - 0.5, p + n + 0.3, "image", ha="center", color=ORANGE, fontsize=9)
    fig.suptitle("Attention masks: True (coloured) = may attend; they combine with &", fontsize=11)
    save(fig, path)


def patches(path: Path) -> None:
    fig, ax = canvas(12, 4)
    img = toy_image()
    ax.imshow(img, extent=(0.2, 3.0, 0.6, 3.4))
    for i in range(1, 8):
        ax.plot([0.2 + i * 0.35] * 2, [0.6, 3.4], color="w", lw=0.8)
        ax.plot([0.2, 3.0], [0.6 + i * 0.35] * 2, color="w", lw=0.8)
    ax.text(1.6, 0.35, "32x32 image, p = 4: an 8x8 grid, N = 64 patches", ha="center", fontsize=8)
    arrow(ax, (3.1, 2.0), (4.1, 2.0), "flatten\n(C,p,p) = 48")
    box(ax, 4.2, 1.5, 1.5, 1.0, "Linear 48 -> D\n(PatchEmbedding)", "#dfe8f5", 8)
    arrow(ax, (5.75, 2.0), (6.4, 2.0))
    x0 = 6.5
    ax.add_patch(Rectangle((x0, 1.6), 0.3, 0.8, fc=ORANGE, ec="#333"))
    ax.text(x0 + 0.15, 2.6, "[CLS]", ha="center", fontsize=8, color=ORANGE)
    for k in range(10):
        xi = x0 + 0.4 + k * 0.33
        cell = img[(k // 8) * 4 + 1, (k % 8) * 4 + 1]
        ax.add_patch(Rectangle((xi, 1.6), 0.3, 0.8, fc=cell, ec="#333"))
        ax.text(xi + 0.15, 1.35, str(k + 1), ha="center", fontsize=7)
    ax.text(x0 + 0.4 + 10 * 0.33 + 0.1, 2.0, "... 64", va="center", fontsize=8)
    ax.text(x0 + 0.15, 1.35, "0", ha="center", fontsize=7)
    ax.text(x0 + 2.0, 0.9, "+ a learned position vector for each of the 1 + 64 tokens -> [B, 65, D]\n"
            "-> encoder; the class token's final vector -> Linear -> 10 class logits", ha="center", fontsize=8)
    ax.text(0.2, 3.7, "Patches and the class token (ViT)", fontsize=11, weight="bold")
    save(fig, path)


def kv_cache(path: Path) -> None:
    fig, ax = canvas(11, 4.2)
    ax.text(0.2, 3.9, "The key/value cache: each step computes q, k, v for the new token only", fontsize=11,
            weight="bold")
    for row, step in enumerate(range(3, 7)):
        y = 3.0 - row * 0.75
        ax.text(0.2, y + 0.2, f"step {step}", fontsize=9)
        for j in range(step):
            new = j == step - 1
            ax.add_patch(Rectangle((1.3 + j * 0.55, y), 0.5, 0.45, fc=GREEN if new else "#cfd8e8", ec="#333"))
            ax.text(1.55 + j * 0.55, y + 0.22, f"k{j},v{j}", ha="center", va="center", fontsize=6.5)
        ax.add_patch(Rectangle((5.2, y), 0.5, 0.45, fc=GREEN, ec="#333"))
        ax.text(5.45, y + 0.22, f"q{step - 1}", ha="center", va="center", fontsize=7)
        arrow(ax, (5.15, y + 0.22), (1.3 + step * 0.55 + 0.05, y + 0.22))
    ax.add_patch(Rectangle((6.3, 2.75), 0.4, 0.3, fc="#cfd8e8", ec="#333"))
    ax.text(6.8, 2.9, "cached (KVCache.extend keeps them)", va="center", fontsize=8)
    ax.add_patch(Rectangle((6.3, 2.25), 0.4, 0.3, fc=GREEN, ec="#333"))
    ax.text(6.8, 2.4, "computed this step", va="center", fontsize=8)
    ax.text(6.3, 1.2, "without the cache every step recomputes\nk and v of all earlier tokens: the work per\n"
            "token grows with the length. bench/ measures\n5.69x on 500 tokens (bench/results.md)", fontsize=8)
    save(fig, path)


def scst(path: Path) -> None:
    fig, ax = canvas(12, 4.4)
    ax.text(0.2, 4.05, "SCST: one step for one image", fontsize=11, weight="bold")
    box(ax, 0.2, 1.8, 1.4, 1.0, "image", "#f5f5f5")
    box(ax, 2.3, 2.7, 2.4, 1.0, "sample n = 5 captions\n(temperature 1)", "#dcefdc", 8)
    box(ax, 2.3, 0.6, 2.4, 1.0, "greedy caption\n(self-critical baseline only)", "#eeeeee", 8)
    arrow(ax, (1.65, 2.5), (2.25, 3.1))
    arrow(ax, (1.65, 2.1), (2.25, 1.2))
    box(ax, 5.4, 2.7, 2.0, 1.0, "CIDEr-D rewards\nr_1 .. r_5", "#fde3cf", 8)
    box(ax, 5.4, 0.6, 2.0, 1.0, "baseline b_i:\nmean of the other 4\nor greedy's reward", "#fde3cf", 8)
    arrow(ax, (4.75, 3.2), (5.35, 3.2))
    arrow(ax, (4.75, 1.1), (5.35, 1.1))
    arrow(ax, (6.4, 2.65), (6.4, 1.65), "mean of\nthe others")
    box(ax, 8.1, 1.65, 1.8, 1.0, "advantage\nA_i = r_i - b_i", "#dfe8f5", 8)
    arrow(ax, (7.45, 3.2), (8.4, 2.7))
    arrow(ax, (7.45, 1.1), (8.4, 1.6))
    box(ax, 10.2, 1.65, 1.7, 1.0, "loss = -sum A_i\nx log p(caption_i)\n- beta x entropy", "#dfe8f5", 7.5)
    arrow(ax, (9.95, 2.15), (10.15, 2.15))
    ax.add_patch(FancyArrowPatch((11.0, 1.6), (3.5, 0.45), connectionstyle="arc3,rad=-0.15", arrowstyle="-|>",
                                 mutation_scale=12, color=RED))
    ax.text(7.2, -0.1, "gradient step: captions above their baseline become likelier, those below less likely",
            ha="center", fontsize=8, color=RED)
    save(fig, path)


def loss_curve(path: Path) -> None:
    rows = [json.loads(line) for line in (REPO / "results/demo-cpu/gpt-cpu/metrics.jsonl").read_text().splitlines()]
    train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(*zip(*train, strict=True), color=BLUE, lw=1, label="training loss (one batch)")
    ax.plot(*zip(*val, strict=True), "o-", color=ORANGE, ms=3, label="validation loss (whole held-out text)")
    ax.axhline(np.log(65), color=GREY, ls="--", lw=1)
    ax.text(2600, np.log(65) - 0.05, "ln 65: a uniform guess", ha="right", va="top", fontsize=8, color="#777")
    ax.set_xlabel("step")
    ax.set_ylabel("nats per character")
    ax.set_title("The char GPT learning Tiny Shakespeare (results/demo-cpu/gpt-cpu, cpu preset)", fontsize=9)
    ax.legend(fontsize=8)
    save(fig, path)


def save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


DIAGRAMS: dict[str, Callable[[Path], None]] = {"captioner": captioner, "masks": masks, "patches": patches,
                                               "kv_cache": kv_cache, "scst": scst, "loss_curve": loss_curve}


def main(names: list[str]) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    unknown = [n for n in names if n not in DIAGRAMS]
    if unknown:
        print(f"unknown diagram(s) {unknown}; choose from {', '.join(DIAGRAMS)}")
        return 2
    for name in names or list(DIAGRAMS):
        DIAGRAMS[name](OUT / f"{name}.png")
        print(f"wrote {(OUT / f'{name}.png').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
