"""Curves from a run's metrics.jsonl: losses on one panel, accuracies on another, every other metric on its own."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mllm.io import atomic_write  # noqa: E402

NOT_PLOTTED = ("step", "lr", "time")
SMOOTH_ABOVE = 300  # series with more points get a moving average


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file (empty if there is none yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def panels_of(keys: list[str]) -> list[list[str]]:
    """Group metric names into panels: all `*loss`, all `*accuracy`, the rewards (`reward_*` but a share), the
    cross-entropies named `xe` / `*_xe` (apart from the losses: beside a policy loss they mean something else),
    then one panel per other metric."""
    losses = [k for k in keys if k.endswith("loss")]
    accuracies = [k for k in keys if "accuracy" in k]
    rewards = [k for k in keys if k.startswith("reward_") and not k.endswith("share")]
    entropies = [k for k in keys if k == "xe" or k.endswith("_xe")]
    grouped = set(losses + accuracies + rewards + entropies)
    return [p for p in (losses, accuracies, rewards, entropies) if p] + [[k] for k in keys if k not in grouped]


def moving_average(ys: list[float], window: int) -> np.ndarray:
    """The mean of each point and the window - 1 before it (fewer at the start): [len(ys)]."""
    sums = np.cumsum(np.asarray(ys, dtype=np.float64))
    ahead = np.concatenate([np.zeros(window), sums[:-window]]) if len(sums) > window else np.zeros(len(sums))
    return (sums - ahead[: len(sums)]) / np.minimum(np.arange(1, len(sums) + 1), window)


def plot_curves(metrics_path: str | Path, out_path: str | Path, title: str = "",
                marks: dict[int, str] | None = None) -> Path | None:
    """Plot every numeric series of metrics.jsonl against step (the learning rate and time excepted).

    `marks` {step: label} draws a dashed vertical line on each panel (a change of phase).
    """
    series: dict[str, tuple[list, list]] = {}
    for r in read_metrics(metrics_path):
        for key, value in r.items():
            if key not in NOT_PLOTTED and isinstance(value, (int, float)) and not isinstance(value, bool):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(r["step"])
                ys.append(value)
    if not series:
        return None
    panels = panels_of(list(series))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    for ax, keys in zip(axes.flat, panels, strict=False):
        for key in keys:
            xs, ys = series[key]
            if len(xs) < SMOOTH_ABOVE:
                ax.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, markersize=3)
            else:  # noisy per-step values: faint, with their moving average on top
                window = max(10, len(xs) // 50)
                line, = ax.plot(xs, ys, alpha=0.25, linewidth=0.8)
                ax.plot(xs, moving_average(ys, window), color=line.get_color(), label=f"{key} (mean of {window})")
        for step, label in (marks or {}).items():
            ax.axvline(step, color="grey", linestyle="--", linewidth=1, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss" if keys[0].endswith("loss") else "accuracy" if "accuracy" in keys[0] else
                      "reward" if len(keys) > 1 and keys[0].startswith("reward_") else
                      "cross-entropy (nats/token)" if keys[0] == "xe" or keys[0].endswith("_xe") else keys[0])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    out = atomic_write(out_path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return out
