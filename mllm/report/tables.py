"""Number formatting, the ablation tables and the analysis sentences: computed from the runs' numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mllm.training.config import config_diff, with_added_keys
from mllm.training.launch import WHERE_KEYS


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _pick(rows: dict[str, dict], prefix: str) -> dict | None:
    return next((v for k, v in rows.items() if k.startswith(prefix)), None)


def times(a: float, b: float) -> str:
    """a / b as '2.41x', or 'n/a' where b is 0."""
    return f"{a / b:.2f}x" if b else "n/a"


def change(after: float, before: float) -> str:
    """The relative change as '+12.3%', or 'n/a' where `before` is 0."""
    return f"{(after / before - 1) * 100:+.1f}%" if before else "n/a"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def analysis_captioner(rows: dict[str, dict[str, Any]]) -> str:
    """What beat what: beam vs greedy, the captioner vs the blind one and the two caption-copying baselines."""
    beam, greedy = _pick(rows, "captioner, beam"), rows.get("captioner, greedy")
    out = [f"Analysis: beam search scores CIDEr-D {fmt(beam['CIDEr-D'])} against greedy's {fmt(greedy['CIDEr-D'])} "
           f"({change(beam['CIDEr-D'], greedy['CIDEr-D'])})."]
    blind, blind_greedy = _pick(rows, "blind captioner, beam"), rows.get("blind captioner, greedy")
    if blind and blind_greedy:
        out.append(f"The same model trained without the image reaches {fmt(blind['CIDEr-D'])} with "
                   f"{plural(blind['distinct_candidates'], 'distinct caption')}: the captioner's CIDEr-D is "
                   f"{times(beam['CIDEr-D'], blind['CIDEr-D'])} the blind model's with beam search "
                   f"({times(greedy['CIDEr-D'], blind_greedy['CIDEr-D'])} greedy).")
    for label, name in (("baseline: nearest neighbour", "nearest-neighbour"),
                        ("baseline: most frequent", "most-frequent-caption")):
        base = _pick(rows, label)
        if base:
            out.append(f"Against the {name} baseline ({fmt(base['CIDEr-D'])}): "
                       f"{times(beam['CIDEr-D'], base['CIDEr-D'])}.")
    return " ".join(out) + "\n"


def analysis_scst(s: dict[str, Any]) -> str:
    """Relative changes SCST vs supervised, greedy and beam, and what happened to the variety of captions."""
    t, out = s["test"], ["Analysis:"]
    for decode in ("greedy", "beam"):
        before, after = _pick(t, f"supervised, {decode}"), _pick(t, f"SCST, {decode}")
        out.append(f"{decode}: CIDEr-D {fmt(before['CIDEr-D'])} -> {fmt(after['CIDEr-D'])} "
                   f"({change(after['CIDEr-D'], before['CIDEr-D'])}), BLEU-4 {fmt(before['BLEU-4'])} -> "
                   f"{fmt(after['BLEU-4'])} ({change(after['BLEU-4'], before['BLEU-4'])}), distinct "
                   f"captions {before['distinct_candidates']} -> {after['distinct_candidates']};")
    changed = s.get("changed", {})
    if changed:
        out.append(f"{changed['greedy'] * 100:.1f}% of the greedy test captions changed.")
    return " ".join(out) + "\n"


def ablation_table(runs: Path, pattern: str, main_folder: Path, differences: Callable[[dict, dict], str],
                   preset: str) -> str:
    """A table of the finished ablation runs runs/<pattern> of this preset (or its variants, e.g. cpu-char),
    dev-selected and each scored on test at its end; empty if there are none."""
    def usable(folder: Path) -> bool:
        if not (folder / "summary.json").is_file():
            return False
        s = json.loads((folder / "summary.json").read_text())
        return str(s.get("preset", "")).split("-")[0] == preset and "best_val_cider" in s

    folders = sorted(p for p in runs.glob(pattern) if usable(p))
    if not folders or not (main_folder / "config.json").is_file():
        return ""
    main_cfg = json.loads((main_folder / "config.json").read_text())
    lines = ["Ablations (runs kept beside this one; compared on dev CIDEr-D; test scored at the end of each, "
             "except those run with eval.test=false: -):\n",
             "| run | differs from the main run in | steps | wall time | best dev CIDEr-D | test CIDEr-D greedy | "
             "test CIDEr-D beam | distinct (greedy) |", "|---|---|---|---|---|---|---|---|"]
    for folder in folders:
        s = json.loads((folder / "summary.json").read_text())
        cfg = json.loads((folder / "config.json").read_text())
        rows = s.get("test") or {}
        blank = {"CIDEr-D": None, "distinct_candidates": "-"}
        greedy = next((v for k, v in rows.items() if k.endswith(", greedy") and not k.startswith("supervised")), blank)
        beam = next((v for k, v in rows.items() if ", beam" in k and not k.startswith("supervised")), greedy)
        lines.append(f"| {folder.name} | {differences(main_cfg, cfg)} | {s['steps']:,} | {minutes(s['wall_time_s'])} "
                     f"| {fmt(s['best_val_cider'])} | {fmt(greedy['CIDEr-D'])} | {fmt(beam['CIDEr-D'])} | "
                     f"{greedy['distinct_candidates']} |")
    return "\n".join(lines) + "\n"


def differences(main: dict, other: dict, limit: int = 6) -> str:
    """The config keys in which an ablation run differs from the main run (locations left out)."""
    name = "rl" if "rl" in main else "mllm"  # both at the file's defaults for keys added since either was written
    diff = {k: v for k, v in config_diff(with_added_keys(main, name)[0], with_added_keys(other, name)[0]).items()
            if k not in WHERE_KEYS and k != "preset" and not k.startswith("types.")}
    if not diff:
        return "(same config)"
    text = ", ".join(f"{k}={json.dumps(v[1])}" for k, v in list(diff.items())[:limit])
    return text + (f", ... ({len(diff)} keys)" if len(diff) > limit else "")


def seed_table_lines(runs: Path, preset: str) -> list[str]:
    """SCST runs over seeds, where a seed table was left beside the runs (<runs>/rl-<preset>-seeds.md, written by
    `scripts/scst_seeds.sh` or `scripts/seed_table.py`)."""
    table = runs / f"rl-{preset}-seeds.md"
    if not table.is_file():
        return []
    return ["### Across seeds\n",
            f"SCST settings trained with several seeds, one group of runs per setting (`{table.name}`, from "
            f"`scripts/seed_table.py`): mean and standard deviation over the seeds of the best dev CIDEr-D and of "
            f"the test metrics.\n",
            table.read_text().strip(), ""]
