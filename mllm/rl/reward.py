"""The SCST reward: CIDEr-D of a caption against its image's references, with document frequencies (and the
references' n-gram vectors) from the training captions, computed once when the reward is built."""

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
