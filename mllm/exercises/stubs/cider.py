"""Exercise `cider`: CIDEr-D, the captioning metric that SCST optimises.

Write `CiderD.score` below; `CiderD.__init__` is the project's own. It reads a corpus of reference sets
(one list of tokenised captions per image) and keeps:
  self.n = 4 (n-gram orders 1..n), self.sigma = 6.0, self.log_n_docs = log N (N reference sets),
  self.ids: {n-gram tuple: index}, self.idf[index] = log N - log max(1, df), df = the number of reference
  sets in which some caption holds the n-gram; an n-gram outside the corpus has idf log N.
`ngrams(tokens, n)` (imported below) counts the n-grams of orders 1..n of one caption.

For a candidate c with references r_1..r_m:
    g(x)[w]    = tf_x(w) * idf(w)                                  tf: count of w in caption x
    sim_n(c,r) = sum_w min(g(c)[w], g(r)[w]) * g(r)[w] / (|g_n(c)| |g_n(r)|)   (0 if a norm is 0)
                 * exp(-(l_c - l_r)^2 / (2 sigma^2))               l = max(len(tokens) - 1, 0)
    CIDEr-D    = 10 / m * sum_j mean_n sim_n(c, r_j)
g_n is the part of g over n-grams of order n. A loop over candidates and references is fine: the project's
own version is vectorised with numpy, yours need not be. `python main.py exercise check cider` compares yours
with pycocoevalcap's Cider on small corpora and runs the real error tests (tests/test_metrics.py).
"""

from __future__ import annotations

import math  # noqa: F401  (you will need these)
from collections.abc import Sequence

import numpy as np

from mllm.evaluation.cider import _check_tokens, ngrams  # noqa: F401

Tokens = Sequence[str]


class CiderD:
    """CIDEr-D scorer whose document frequencies come from the corpus given to __init__."""

    def score(self, candidates: Sequence[Tokens], refs: Sequence[Sequence[Tokens]]) -> tuple[float, np.ndarray]:
        """CIDEr-D of each candidate (a list of tokens) against its references: (mean, per-candidate array).

        1. refuse bad input with ValueError: len(candidates) != len(refs) ("2 candidates but 1 reference sets"),
           a caption given as a string (_check_tokens(c, f"candidate {i}")), an empty reference set
           (f"refs[{i}] must be a non-empty list of tokenised references");
        2. no candidates: return 0.0, np.zeros(0);
        3. per candidate and reference: the tf-idf vectors per order n, the clipped cosine sim_n, the length
           penalty, the mean over orders; 10 times the mean over the references.
        """
        raise NotImplementedError("write CiderD.score (exercise 'cider')")
