"""The variety trade-off: dev CIDEr-D against distinct dev captions as the grounding strength grows.

    python scripts/variety_curve.py runs/rl-cpu/dev_decode.json:SCST results/mllm-cpu/dev_decode.json:supervised \
        --out results/rl-variety/variety.png

Each input is a `scripts/dev_decode.py --grounding ...` output (dev split, scored like test) with a label after the
colon. One line per model and decoding (greedy, beam), its points the grounding strengths, each point marked
with its strength. The figure is dev only: nothing here reads the test split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(rows: dict) -> dict[str, list[tuple[float, int, float]]]:
    """dev_decode rows -> {"greedy" | "beam K": [(strength, distinct, CIDEr-D), ...] by strength}."""
    out: dict[str, list[tuple[float, int, float]]] = {}
    for name, row in rows.items():
        if "grounding" not in row:
            raise ValueError(f"row {name!r} has no grounding strength: rerun scripts/dev_decode.py to write one")
        if row.get("length_penalty", 0.0):
            print(f"skipped {name!r}: one line per beam size, at length penalty 0")
            continue
        key = "greedy" if row["beam"] == 1 else f"beam {row['beam']}"
        out.setdefault(key, []).append((row["grounding"], row["distinct"], row["CIDEr-D"]))
    return {k: sorted(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", help="FILE.json:LABEL, a dev_decode.py output and its label")
    p.add_argument("--out", required=True, help="the PNG to write")
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for spec in args.inputs:
        path, _, label = spec.partition(":")
        for decoding, points in series(json.loads(Path(path).read_text())).items():
            strengths, distinct, cider = zip(*points, strict=True)
            ax.plot(distinct, cider, "o-" if decoding == "greedy" else "s--", label=f"{label or path}, {decoding}")
            for g, x, y in points:
                ax.annotate(f"{g:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=9)
    ax.legend(fontsize=9)
    save_trade_off(fig, ax, "distinct dev captions", "dev CIDEr-D",
                   "Variety against CIDEr-D over the grounding strength (numbers at the points)", args.out)


def save_trade_off(fig, ax, xlabel: str, ylabel: str, title: str, out: str) -> None:
    """Label, grid and write a dev CIDEr-D against variety figure (also `run_curve.py`'s)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
