"""Figures for the ViT: confusion matrix, attention rollout overlays, predictions with probabilities."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from mllm.io import atomic_write  # noqa: E402


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


@torch.no_grad()
def attention_weights(model, images: Tensor) -> list[Tensor]:
    """Run the ViT once and collect every encoder layer's attention weights [B, H, T, T]."""
    weights, handles = [], []
    for block in model.encoder.layers:
        attn = block.self_attn
        handles.append(attn.register_forward_pre_hook(
            lambda m, args, kwargs: (args, {**kwargs, "return_weights": True}), with_kwargs=True))
        handles.append(attn.register_forward_hook(lambda m, args, out: weights.append(out[1])))
    try:
        model(images.to(next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return weights


def attention_rollout(weights: list[Tensor]) -> Tensor:
    """Abnar & Zuidema (2020): multiply head-averaged attention (plus identity for the residual) across layers.

    Returns [B, N] how much the class token draws on each patch.
    """
    rollout = None
    for w in weights:
        a = w.mean(1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], device=a.device)
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout[:, 0, 1:]


def attention_rollout_figure(model, images: Tensor, raw: Tensor, labels: list[str], path: Path) -> None:
    """raw uint8 [B, H, W, C] shown with the rollout of the class token upsampled over it."""
    maps = attention_rollout(attention_weights(model, images)).cpu()
    g = int(maps.shape[-1] ** 0.5)
    maps = F.interpolate(maps.view(-1, 1, g, g), size=raw.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
    fig, axes = plt.subplots(2, len(raw), figsize=(1.6 * len(raw), 3.4))
    for i in range(len(raw)):
        axes[0, i].imshow(raw[i].numpy())
        axes[0, i].set_title(labels[i], fontsize=8)
        axes[1, i].imshow(raw[i].numpy())
        axes[1, i].imshow(maps[i].numpy(), cmap="jet", alpha=0.5)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle("attention rollout (class token -> patches)", fontsize=9)
    _save(fig, path)


def confusion_figure(confusion: Tensor, classes: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(confusion.numpy(), cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    _save(fig, path)


def prediction_figure(raw: Tensor, probs: Tensor, truth: Tensor, classes: list[str], path: Path, k: int = 3) -> None:
    top = probs.topk(k, dim=-1)
    fig, axes = plt.subplots(1, len(raw), figsize=(1.9 * len(raw), 2.6))
    for i, ax in enumerate(axes):
        ax.imshow(raw[i].numpy())
        ax.axis("off")
        lines = [f"{classes[c]} {p:.2f}" for p, c in zip(top.values[i].tolist(), top.indices[i].tolist(), strict=True)]
        ax.set_title(f"true: {classes[truth[i]]}\n" + "\n".join(lines), fontsize=7)
    fig.tight_layout()
    _save(fig, path)
