"""Number formatting, the ablation tables and the analysis sentences: computed from the runs' numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _pick(rows: dict[str, dict], prefix: str) -> dict | None:
    return next((v for k, v in rows.items() if k.startswith(prefix)), None)


def analysis_captioner(rows: dict[str, dict[str, Any]]) -> str:
    """What beat what: beam vs greedy, the captioner vs the blind one and the two caption-copying baselines."""
    beam, greedy = _pick(rows, "captioner, beam"), rows.get("captioner, greedy")
    out = [f"Analysis: beam search scores CIDEr-D {fmt(beam['CIDEr-D'])} against greedy's {fmt(greedy['CIDEr-D'])} "
           f"({(beam['CIDEr-D'] / greedy['CIDEr-D'] - 1) * 100:+.0f}%)."]
    blind = _pick(rows, "blind captioner, beam")
    if blind:
        out.append(f"The same model trained without the image reaches {fmt(blind['CIDEr-D'])} with "
                   f"{blind['distinct_candidates']} distinct caption(s): seeing the image is worth "
                   f"{beam['CIDEr-D'] / blind['CIDEr-D']:.2f}x its CIDEr-D.")
    for label in ("baseline: nearest neighbour", "baseline: most frequent"):
        base = _pick(rows, label)
        if base:
            out.append(f"Against the {label.split(': ')[1]} baseline ({fmt(base['CIDEr-D'])}): "
                       f"{beam['CIDEr-D'] / base['CIDEr-D']:.1f}x.")
    return " ".join(out) + "\n"


def analysis_scst(s: dict[str, Any]) -> str:
    """Relative changes SCST vs supervised, greedy and beam, and what happened to the variety of captions."""
    t, out = s["test"], ["Analysis:"]
    for decode in ("greedy", "beam"):
        before, after = _pick(t, f"supervised, {decode}"), _pick(t, f"SCST, {decode}")
        out.append(f"{decode}: CIDEr-D {fmt(before['CIDEr-D'])} -> {fmt(after['CIDEr-D'])} "
                   f"({(after['CIDEr-D'] / before['CIDEr-D'] - 1) * 100:+.1f}%), BLEU-4 {fmt(before['BLEU-4'])} -> "
                   f"{fmt(after['BLEU-4'])} ({(after['BLEU-4'] / before['BLEU-4'] - 1) * 100:+.1f}%), distinct "
                   f"captions {before['distinct_candidates']} -> {after['distinct_candidates']};")
    changed = s.get("changed", {})
    if changed:
        out.append(f"{changed['greedy'] * 100:.1f}% of the greedy test captions changed.")
    return " ".join(out) + "\n"


def ablation_table(runs: Path, pattern: str, main_folder: Path, differences: Callable[[dict, dict], str]) -> str:
    """A table of the ablation runs runs/<pattern> (dev-selected, each scored on test at its end), if any."""
    folders = sorted(p for p in runs.glob(pattern) if (p / "summary.json").is_file())
    if not folders or not (main_folder / "config.json").is_file():
        return ""
    main_cfg = json.loads((main_folder / "config.json").read_text())
    lines = ["Ablations (runs kept beside this one; compared on dev CIDEr-D, test scored at the end of each):\n",
             "| run | differs from the main run in | steps | wall time | best dev CIDEr-D | test CIDEr-D greedy | "
             "test CIDEr-D beam | distinct (greedy) |", "|---|---|---|---|---|---|---|---|"]
    for folder in folders:
        s = json.loads((folder / "summary.json").read_text())
        cfg = json.loads((folder / "config.json").read_text())
        rows = s["test"]
        greedy = next(v for k, v in rows.items() if k.endswith(", greedy") and not k.startswith("supervised"))
        beam = next(v for k, v in rows.items() if ", beam" in k and not k.startswith("supervised"))
        lines.append(f"| {folder.name} | {differences(main_cfg, cfg)} | {s['steps']} | {minutes(s['wall_time_s'])} "
                     f"| {fmt(s['best_val_cider'])} | {fmt(greedy['CIDEr-D'])} | {fmt(beam['CIDEr-D'])} | "
                     f"{greedy['distinct_candidates']} |")
    return "\n".join(lines) + "\n"
