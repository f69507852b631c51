"""The SCST reward: CIDEr-D of a caption against its image's references, with document frequencies (and the
references' n-gram vectors) from the training captions, computed once when the reward is built; and a variety
term, the n-gram novelty of each sample among its image's other samples (`rl.diversity_bonus`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mllm.evaluation.cider import CiderD
from mllm.evaluation.tokenize import simple_tokenize


class CiderReward:
    """reward(captions, images) -> CIDEr-D [N] of each caption (text) against the references of its image.

    `references[i]` are image i's reference captions (text), for every image the reward may be asked about;
    document frequencies come from the reference sets of `corpus` (image indices, e.g. the training split).
    """

    def __init__(self, references: Sequence[Sequence[str]], corpus: Sequence[int]):
        self.refs = [[simple_tokenize(c).split() for c in refs] for refs in references]
        self.cider = CiderD([self.refs[int(i)] for i in corpus])

    def __call__(self, captions: Sequence[str], images: Sequence[int]) -> np.ndarray:
        if len(captions) != len(images):
            raise ValueError(f"{len(captions)} captions but {len(images)} image indices; give one image per caption")
        tokens = [simple_tokenize(c).split() for c in captions]
        return self.cider.score(tokens, [self.refs[int(i)] for i in images])[1]


def ngram_novelty(captions: Sequence[str], group: int, max_n: int = 2) -> np.ndarray:
    """Variety among each image's samples: captions [B*group] (image-major, `group` per image) -> novelty [B*group]
    in [0, 1], the share of a caption's distinct 1..max_n-grams that none of its image's other samples contains
    (1: it shares no n-gram with them, 0: each of its n-grams is in another sample, or it is empty)."""
    if group < 2 or len(captions) % group:
        raise ValueError(f"{len(captions)} captions cannot be split into images of {group} samples (group >= 2 needed)")
    grams = []
    for caption in captions:
        words = simple_tokenize(caption).split()
        grams.append({tuple(words[i : i + k]) for k in range(1, max_n + 1) for i in range(len(words) - k + 1)})
    out = np.zeros(len(captions))
    for start in range(0, len(captions), group):
        for i in range(start, start + group):
            others = set().union(*(grams[j] for j in range(start, start + group) if j != i))
            out[i] = len(grams[i] - others) / len(grams[i]) if grams[i] else 0.0
    return out
