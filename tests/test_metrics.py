"""Caption evaluation: the Python tokenizer against Stanford's PTB tokenizer, our CIDEr-D against pycocoevalcap's,
and caption_metrics (BLEU, METEOR, ROUGE-L, CIDEr-D) with and without java."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from mllm.data import prepare_flickr8k
from mllm.evaluation import CiderD, caption_metrics, ptb_tokenize, simple_tokenize

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="no java: the PTB tokenizer and METEOR need it")


@pytest.fixture(scope="module")
def flickr(mirror, data_root):
    return prepare_flickr8k(data_root, mirror, image_size=32)


def split_tokens(flickr, split: str) -> list[list[list[str]]]:
    """Per image of the split, its 5 captions as token lists (simple_tokenize)."""
    by_image: dict[int, list[list[str]]] = {}
    for caption, image in zip(flickr.captions, flickr.caption_image, strict=True):
        by_image.setdefault(int(image), []).append(simple_tokenize(str(caption)).split())
    return [by_image[i] for i in flickr.split_indices(split)]


def candidates_and_refs(sets: list[list[list[str]]]) -> tuple[list[list[str]], list[list[list[str]]]]:
    """A mix pycocoevalcap must agree on: an image's own first caption, another image's caption, a one-word
    caption, an empty one, a word no reference holds; 4 references, 2 on every third image."""
    candidates, refs = [], []
    for i, captions in enumerate(sets):
        own = i % 2 == 0
        candidate = captions[0] if own else sets[(i + 1) % len(sets)][i % 5]
        if i % 7 == 0:
            candidate = candidate[:1]
        candidates.append(["zzyzx"] + candidate if i == 1 else [] if i == 3 else candidate)
        refs.append(captions[1:3] if i % 3 == 0 else captions[1:])
    return candidates, refs


def pycoco_cider(candidates: list[list[str]], refs: list[list[list[str]]]) -> tuple[float, np.ndarray]:
    gts = {i: [" ".join(r) for r in rs] for i, rs in enumerate(refs)}
    res = {i: [" ".join(c)] for i, c in enumerate(candidates)}
    score, scores = Cider().compute_score(gts, res)
    return float(score), np.asarray(scores)


# ---- CIDEr-D --------------------------------------------------------------------------------------------------

def test_cider_d_equals_pycocoevalcap_on_flickr8k(flickr):
    candidates, refs = candidates_and_refs(split_tokens(flickr, "dev"))
    expected_mean, expected = pycoco_cider(candidates, refs)
    mean, scores = CiderD(refs).score(candidates, refs)  # df from the scored set's own references, as pycocoevalcap
    assert scores.shape == (1000,)
    assert abs(mean - expected_mean) < 1e-6 and np.abs(scores - expected).max() < 1e-6
    assert scores[0::2].mean() > 3 * scores[1::2].mean() > 0  # an image's own caption scores far above another's


def test_cider_d_takes_document_frequencies_from_the_given_corpus(flickr):
    dev, train = split_tokens(flickr, "dev"), split_tokens(flickr, "train")
    candidates, refs = candidates_and_refs(dev)
    _, own = CiderD(refs).score(candidates, refs)
    _, with_train_df = CiderD(train).score(candidates, refs)
    assert np.abs(with_train_df - own).max() > 0.05
    # pycocoevalcap over the dev items plus 1500 training images (empty candidates) takes df and N from all their
    # references: CiderD built on that corpus must give the same dev scores
    extra = train[:1500]
    _, expected = pycoco_cider(candidates + [[]] * len(extra), refs + extra)
    _, scores = CiderD(refs + extra).score(candidates, refs)
    assert np.abs(scores - expected[: len(refs)]).max() < 1e-6


def test_cider_d_rejects_bad_input():
    scorer = CiderD([[["a", "dog"]], [["a", "cat"]]])
    with pytest.raises(ValueError, match="candidate 0 is a string"):
        scorer.score(["a dog"], [[["a", "dog"]]])
    with pytest.raises(ValueError, match=r"refs\[1\] must be a non-empty list"):
        scorer.score([["a"], ["b"]], [[["a"]], []])
    with pytest.raises(ValueError, match="2 candidates but 1 reference sets"):
        scorer.score([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match="corpus_refs is empty"):
        CiderD([])


# ---- tokenisation ---------------------------------------------------------------------------------------------

def test_simple_tokenize_splits_like_ptb():
    # brackets survive as -lrb- -rrb-: pycocoevalcap lists them uppercase but compares with the lowercased output
    assert (simple_tokenize('A dog\'s red t-shirt, (wet) isn\'t "new".')
            == "a dog 's red t-shirt -lrb- wet -rrb- is n't new")
    assert (simple_tokenize("Two men ; one can't SWIM ! Mr. Potato cannot")
            == "two men one ca n't swim mr. potato can not")


@needs_java
def test_python_tokenizer_agrees_with_ptb_on_flickr8k(flickr):
    captions = {i: [str(c) for c in flickr.captions[flickr.caption_image == i]] for i in flickr.split_indices("test")}
    java, python = ptb_tokenize(captions, use_java=True), ptb_tokenize(captions, use_java=False)
    pairs = [(j, p) for key in captions for j, p in zip(java[key], python[key], strict=True)]
    assert len(pairs) == 5000
    agree = sum(j == p for j, p in pairs) / len(pairs)
    assert agree >= 0.99, f"simple_tokenize agrees with the PTB tokenizer on only {agree:.2%} of the test captions"


# ---- caption_metrics ------------------------------------------------------------------------------------------

CANDIDATES = {"dog": "A brown dog runs on the grass.", "bikes": "Two people ride bikes down a hill."}
REFERENCES = {"dog": ["A brown dog runs on the grass .", "A dog is running through a field ."],
              "bikes": ["Two people ride bikes down a hill .", "Cyclists on a dirt road ."],
              "unused": ["Nobody scores this one ."]}


def java_children() -> list[str]:
    """The java processes this test process has started and not yet reaped."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" ", 1)
        except OSError:
            continue
        comm, fields = rest.rsplit(")", 1)
        if fields.split()[1] == str(os.getpid()) and "java" in comm:
            found.append(pid)
    return found


def check_scores(result: dict) -> None:
    assert result["BLEU-1"] == pytest.approx(1.0, abs=1e-6)  # each candidate equals one of its references
    for name in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert 0.0 <= result[name] <= 1.0 + 1e-9, name
    assert result["CIDEr-D"] > 0 and result["candidates"] == 2 and result["distinct_candidates"] == 2


@needs_java
def test_caption_metrics_with_java_closes_meteor(monkeypatch):
    from pycocoevalcap.meteor.meteor import Meteor

    monkeypatch.setattr(Meteor, "__del__", lambda self: None)  # only caption_metrics itself may stop the process
    result = caption_metrics(CANDIDATES, REFERENCES)
    check_scores(result)
    assert 0.0 < result["METEOR"] <= 1.0
    assert result["tokenizer"] == "ptb" and "PTB" in result["note"]
    if Path("/proc/self/stat").exists():
        assert java_children() == [], "the METEOR java process is still running"


def test_one_meteor_session_scores_each_call_as_alone_and_stops_its_process(monkeypatch):
    from pycocoevalcap.meteor.meteor import Meteor

    from mllm.evaluation.metrics import meteor_session

    if shutil.which("java") is None:
        pytest.skip("METEOR needs java")
    monkeypatch.setattr(Meteor, "__del__", lambda self: None)
    other = {k: "a man rides a horse" for k in CANDIDATES}
    alone = caption_metrics(other, REFERENCES)["METEOR"]  # in its own METEOR process
    with meteor_session():  # the second call of a session is scored as if it were alone
        shared = [caption_metrics(CANDIDATES, REFERENCES)["METEOR"], caption_metrics(other, REFERENCES)["METEOR"]]
    assert shared[1] == alone and shared[0] != shared[1]
    if Path("/proc/self/stat").exists():
        assert java_children() == [], "the session's METEOR java process is still running"


def test_caption_metrics_without_java_reports_meteor_absent(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    result = caption_metrics(CANDIDATES, REFERENCES)
    check_scores(result)
    assert result["METEOR"] is None and result["tokenizer"] == "simple"
    assert "METEOR" in result["note"] and "java" in result["note"] and "simple_tokenize" in result["note"]


def test_caption_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="candidate 'cat' has no references"):
        caption_metrics({"cat": "a cat"}, REFERENCES)
    with pytest.raises(ValueError, match=r"references\['dog'\] is empty"):
        caption_metrics({"dog": "a dog"}, {"dog": []})
    with pytest.raises(ValueError, match="candidate 'dog' must be a string"):
        caption_metrics({"dog": ["a", "dog"]}, REFERENCES)
