"""Simple style statistics to compare generated text with the source."""

from __future__ import annotations

import random
import re

SPEAKER = re.compile(r"^[A-Z][A-Za-z' ]*:$")  # "First Citizen:" alone on its line
WORD = re.compile(r"[A-Za-z']+")


def style_stats(text: str, known_words: set[str]) -> dict[str, float]:
    """Share of lines that are a speaker name and a colon, mean line length, share of known words."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    words = [w.lower() for w in WORD.findall(text)]
    return {
        "speaker_line_share": sum(bool(SPEAKER.match(ln.strip())) for ln in lines) / max(1, len(lines)),
        "mean_line_length": sum(len(ln) for ln in lines) / max(1, len(lines)),
        "known_word_share": sum(w in known_words for w in words) / max(1, len(words)),
    }


def vocabulary(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


def source_excerpts(text: str, n: int, length: int, seed: int = 0) -> list[str]:
    """n random excerpts of `length` characters, each starting at a line start."""
    rng = random.Random(seed)
    starts = [m.end() for m in re.finditer("\n", text[: len(text) - length])]
    return [text[s : s + length] for s in rng.sample(starts, n)]


def comparison_markdown(samples: list[str], excerpts: list[str], known: set[str]) -> tuple[str, dict]:
    """A side-by-side report of generated samples and source excerpts with their style statistics."""
    gen, src = style_stats("\n".join(samples), known), style_stats("\n".join(excerpts), known)
    rows = "\n".join(f"| {k} | {gen[k]:.3f} | {src[k]:.3f} |" for k in gen)
    parts = ["## Style statistics\n", "| statistic | generated | source |", "|---|---|---|", rows, ""]
    for i, (g, s) in enumerate(zip(samples, excerpts, strict=False), 1):
        parts += [f"## Sample {i}\n", "Generated:\n", "```", g, "```", "", "Source excerpt:\n", "```", s, "```", ""]
    return "\n".join(parts), {"generated": gen, "source": src}
