"""Content words for the grounding objective: which words an image's reference captions name.

A content word is a caption word that is not a function word (articles, prepositions, pronouns, auxiliaries,
conjunctions). The grounding head predicts, from the image tokens alone, which of the `size` most common content
words of the training captions occur in any of an image's references (a multi-label target, train split only).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

FUNCTION_WORDS = frozenset("""
a an the and or but nor so yet of in on at to from by with without into onto over under up down out off near
for as about around through across along behind beside between above below against toward towards while
is are was were be been being am has have had do does did will would can could may might must shall should
it its it's he she they them their his her him we us our you your i me my this that these those there here
who whom whose which what where when why how than then there's 's n't not no some any each other another
all both one two three four five several many few very too also just while""".split())


def content_vocabulary(tokenized_captions: Sequence[Sequence[str]], size: int) -> list[str]:
    """The `size` most common content words of the given captions (token lists), most common first (ties by
    word, so the list is deterministic)."""
    counts = Counter(w for tokens in tokenized_captions for w in set(tokens) if w not in FUNCTION_WORDS and
                     w.isalpha())
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


def word_targets(references: Sequence[Sequence[Sequence[str]]], vocabulary: Sequence[str]) -> Tensor:
    """Per image, its references as token lists -> targets [N, W] (1.0 where any reference names word w)."""
    index = {w: i for i, w in enumerate(vocabulary)}
    out = torch.zeros(len(references), len(vocabulary))
    for row, refs in enumerate(references):
        cols = sorted({index[w] for tokens in refs for w in tokens if w in index})
        out[row, cols] = 1.0
    return out
