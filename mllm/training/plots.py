"""Curves from a run's metrics.jsonl: losses on one panel, accuracies on another."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mllm.io import atomic_write  # noqa: E402


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: str | Path, out_path: str | Path, title: str = "",
                marks: dict[int, str] | None = None) -> Path | None:
    """Plot every `*loss` series against step, and every `*accuracy` series on a second panel.

    `marks` {step: label} draws a dashed vertical line on each panel (a change of phase).
    """
    records = read_metrics(metrics_path)
    series: dict[str, tuple[list, list]] = {}
    for r in records:
        for key, value in r.items():
            if key != "step" and isinstance(value, (int, float)) and (key.endswith("loss") or "accuracy" in key):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(r["step"])
                ys.append(value)
    if not series:
        return None
    panels = [[k for k in series if k.endswith("loss")], [k for k in series if "accuracy" in k]]
    panels = [p for p in panels if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, keys in zip(axes[0], panels, strict=True):
        for key in keys:
            xs, ys = series[key]
            ax.plot(xs, ys, label=key, marker="o" if len(xs) < 30 else None, markersize=3)
        for step, label in (marks or {}).items():
            ax.axvline(step, color="grey", linestyle="--", linewidth=1, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("loss" if keys[0].endswith("loss") else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    out = atomic_write(out_path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return out
