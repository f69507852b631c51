"""CIDEr-D, vectorised, with document frequencies taken once from a given corpus of reference sets.

The score is pycocoevalcap's `Cider` (cider/cider_scorer.py), term for term. For a candidate c with references
r_1..r_m, and n-gram orders n = 1..4:

    g(x)[w]    = tf_x(w) * idf(w),     idf(w) = log N - log max(1, df(w))
    sim_n(c,r) = sum_w min(g(c)[w], g(r)[w]) g(r)[w] / (|g_n(c)| |g_n(r)|) * exp(-(l_c - l_r)^2 / (2 sigma^2))
    CIDEr-D    = 10 / m * sum_j mean_n sim_n(c, r_j)

tf_x(w) counts the n-gram w in caption x, g_n is the part of g over n-grams of order n (a cosine is 0 where
either norm is 0), df(w) is the number of reference sets in the corpus where some reference holds w, and N the
number of reference sets. The length l is pycocoevalcap's: it counts bigram positions, max(len(tokens) - 1, 0).

pycocoevalcap takes df from the references of the set being scored; `CiderD(refs).score(candidates, refs)` is
that score. For an RL reward, build `CiderD(training_refs)` once and score sampled captions against their
images' training references: those references' n-gram vectors are computed once, in the constructor.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import chain

import numpy as np

Tokens = Sequence[str]


def ngrams(tokens: Tokens, n: int = 4) -> Counter:
    """Counts of the n-grams of orders 1..n of one caption, each a tuple of tokens."""
    return Counter(chain.from_iterable(zip(*(tokens[i:] for i in range(k)), strict=False) for k in range(1, n + 1)))


def _check_tokens(tokens: Tokens, what: str) -> None:
    if isinstance(tokens, str):
        raise ValueError(f"{what} is a string ({tokens[:40]!r}); pass its tokens, e.g. caption.split()")


class CiderD:
    """CIDEr-D scorer whose document frequencies come from `corpus_refs`: one list of tokenised references
    (each a list of tokens) per image, e.g. the training captions."""

    def __init__(self, corpus_refs: Sequence[Sequence[Tokens]], n: int = 4, sigma: float = 6.0):
        if len(corpus_refs) == 0:
            raise ValueError("corpus_refs is empty: document frequencies need at least one reference set")
        self.n, self.sigma = n, sigma
        self.log_n_docs = math.log(len(corpus_refs))  # log N
        self.ids: dict[tuple[str, ...], int] = {}  # every n-gram of the corpus -> its index into df and idf
        df: list[int] = []
        corpus_counts = []
        for i, refs in enumerate(corpus_refs):
            if len(refs) == 0:
                raise ValueError(f"corpus_refs[{i}] is an empty reference set")
            counts = []
            for j, ref in enumerate(refs):
                _check_tokens(ref, f"corpus_refs[{i}][{j}]")
                counts.append(ngrams(ref, n))
            for gram in set().union(*counts):
                index = self.ids.setdefault(gram, len(df))
                if index == len(df):
                    df.append(0)
                df[index] += 1
            corpus_counts += zip(refs, counts, strict=True)
        self.df = np.array(df, dtype=np.float64)
        self.idf = self.log_n_docs - np.log(np.maximum(1.0, self.df))
        # the corpus captions' n-gram vectors, ready for scoring against them (an RL reward's references)
        self._cache = {tuple(ref): self._vector(ref, counts, {}) for ref, counts in corpus_counts}

    def _vector(self, tokens: Tokens, counts: Counter, unseen: dict) -> tuple[np.ndarray, ...]:
        """(n-gram indices, term frequencies, orders - 1, length) of one caption. N-grams outside the corpus get
        indices from len(self.ids) on, shared through `unseen` within one `score` call."""
        ids = [self.ids.get(gram) for gram in counts]
        if None in ids:
            ids = [unseen.setdefault(gram, len(self.ids) + len(unseen)) if i is None else i
                   for gram, i in zip(counts, ids, strict=True)]
        order = [len(gram) - 1 for gram in counts]
        # pycocoevalcap's length counts bigrams (none at all when n = 1); between two non-empty captions the
        # difference is that of their lengths, and an empty caption scores 0 whatever its length
        length = max(len(tokens) - 1, 0) if self.n >= 2 else 0
        return (np.array(ids, dtype=np.int64), np.fromiter(counts.values(), np.float64, len(counts)),
                np.array(order, dtype=np.int64), length)

    def _vectors(self, captions: list[Tokens], unseen: dict) -> tuple[np.ndarray, ...]:
        """The vectors of many captions, concatenated: (caption index per entry, ids, tf, order, lengths)."""
        parts = [self._cache.get(tuple(c)) or self._vector(c, ngrams(c, self.n), unseen) for c in captions]
        sizes = [len(p[0]) for p in parts]
        owner = np.repeat(np.arange(len(parts)), sizes)
        ids, tf, order = (np.concatenate([p[k] for p in parts]) for k in range(3))
        return owner, ids, tf, order, np.array([p[3] for p in parts], dtype=np.int64)

    def score(self, candidates: Sequence[Tokens], refs: Sequence[Sequence[Tokens]]) -> tuple[float, np.ndarray]:
        """CIDEr-D of each candidate (a list of tokens) against its references: (mean, per-candidate array)."""
        if len(candidates) != len(refs):
            raise ValueError(f"{len(candidates)} candidates but {len(refs)} reference sets; give one set per candidate")
        for i, (cand, rs) in enumerate(zip(candidates, refs, strict=True)):
            _check_tokens(cand, f"candidate {i}")
            if isinstance(rs, str) or len(rs) == 0:
                raise ValueError(f"refs[{i}] must be a non-empty list of tokenised references, got {rs!r}")
            for j, ref in enumerate(rs):
                _check_tokens(ref, f"refs[{i}][{j}]")
        n_items, n = len(candidates), self.n
        if n_items == 0:
            return 0.0, np.zeros(0)
        n_refs = np.array([len(rs) for rs in refs])
        ref_item = np.repeat(np.arange(n_items), n_refs)  # the candidate each reference belongs to
        unseen: dict[tuple[str, ...], int] = {}
        c_owner, c_ids, c_tf, c_order, c_len = self._vectors(list(candidates), unseen)
        r_owner, r_ids, r_tf, r_order, r_len = self._vectors([r for rs in refs for r in rs], unseen)
        idf = np.concatenate([self.idf, np.full(len(unseen), self.log_n_docs)])  # df 0 counts as 1: idf log N
        c_weight, r_weight = c_tf * idf[c_ids], r_tf * idf[r_ids]

        def norms(owner: np.ndarray, order: np.ndarray, weight: np.ndarray, rows: int) -> np.ndarray:
            return np.sqrt(np.bincount(owner * n + order, weight**2, rows * n)).reshape(rows, n)

        c_norm, r_norm = norms(c_owner, c_order, c_weight, n_items), norms(r_owner, r_order, r_weight, len(ref_item))
        # each reference entry meets its candidate's weight for the same n-gram (0 where the candidate lacks it)
        vocab = len(idf)
        c_key = c_owner * vocab + c_ids
        order_by_key = np.argsort(c_key)
        c_key, c_weight_sorted = c_key[order_by_key], c_weight[order_by_key]
        r_key = ref_item[r_owner] * vocab + r_ids
        at = np.minimum(np.searchsorted(c_key, r_key), max(len(c_key) - 1, 0))
        c_weight_at = np.where(c_key[at] == r_key, c_weight_sorted[at], 0.0) if len(c_key) else np.zeros(len(r_key))
        dot = np.bincount(r_owner * n + r_order, np.minimum(c_weight_at, r_weight) * r_weight, len(ref_item) * n)
        dot = dot.reshape(len(ref_item), n)
        norm_product = c_norm[ref_item] * r_norm
        cosine = np.divide(dot, norm_product, out=np.zeros_like(dot), where=norm_product != 0)
        delta = (c_len[ref_item] - r_len).astype(np.float64)
        per_ref = cosine.mean(axis=1) * np.exp(-(delta**2) / (2 * self.sigma**2))
        per_item = 10.0 * np.bincount(ref_item, per_ref, n_items) / n_refs
        return float(per_item.mean()), per_item
