"""The COCO caption metrics of a set of captions: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D from pycocoevalcap.

The captions are tokenised first (`ptb_tokenize`: Stanford's PTB tokenizer where `java` is on the PATH, else the
pure-Python `simple_tokenize`). METEOR runs a Java program; without java it is reported as None, and the result's
note says which tokenizer was used and why METEOR is absent.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

from .tokenize import java_available, ptb_tokenize


def check_captions(candidates: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]) -> None:
    """Raise a ValueError naming the key when a candidate is not a string or lacks a non-empty reference list."""
    if not candidates:
        raise ValueError("no candidate captions to score")
    for key, caption in candidates.items():
        if not isinstance(caption, str):
            raise ValueError(f"candidate {key!r} must be a string, got {type(caption).__name__} {caption!r}")
        if key not in references:
            raise ValueError(f"candidate {key!r} has no references (references holds no key {key!r})")
        refs = references[key]
        if isinstance(refs, str) or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{key!r}] must be a list of strings, got {refs!r}")
        if len(refs) == 0:
            raise ValueError(f"references[{key!r}] is empty: candidate {key!r} needs at least one reference")


_sessions: list = []  # the METEOR process of each open meteor_session(), innermost last


def _stop(meteor) -> None:
    """Stop a pycocoevalcap Meteor's Java process for good."""
    process = meteor.meteor_p
    for pipe in (process.stdin, process.stdout, process.stderr):
        with contextlib.suppress(OSError):
            pipe.close()
    process.kill()
    process.wait()
    # Meteor.__del__ takes this lock before killing the (now dead) process again; a fresh lock cannot be held
    # by a compute_score that raised, so garbage collection cannot hang on it
    meteor.lock = threading.Lock()


@contextlib.contextmanager
def meteor_session() -> Iterator[None]:
    """One METEOR process for every `caption_metrics` call inside the block: starting it (a JVM loading its
    paraphrase tables) costs more than scoring a thousand captions. Each call's score is its own."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor() if java_available() else None
    _sessions.append(meteor)
    try:
        yield
    finally:
        _sessions.pop()
        if meteor is not None:
            _stop(meteor)


def meteor_score(gts: dict, res: dict) -> float:
    """pycocoevalcap's METEOR: in the open `meteor_session`'s process, else a Java process started here and always
    stopped before returning."""
    from pycocoevalcap.meteor.meteor import Meteor

    if _sessions and _sessions[-1] is not None:
        return float(_sessions[-1].compute_score(gts, res)[0])
    meteor = Meteor()
    try:
        return float(meteor.compute_score(gts, res)[0])
    finally:
        _stop(meteor)


def caption_metrics(candidates: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]],
                    meteor: bool = True) -> dict[str, Any]:
    """{key: caption} scored against {key: [reference, ...]} (keys of `references` without a candidate are ignored).

    Returns BLEU-1..BLEU-4, METEOR (None without java, or when meteor=False), ROUGE-L and CIDEr-D (pycocoevalcap's
    Cider, its document frequencies from these references), the number of candidates, the number of distinct
    candidate captions (after tokenisation), the tokenizer used and a note.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    check_captions(candidates, references)
    java = java_available()
    # one tokenizer run for candidates and references (the Java one pays a JVM start per run)
    both = {("candidate", key): [caption] for key, caption in candidates.items()}
    both.update({("reference", key): list(references[key]) for key in candidates})
    tokenized = ptb_tokenize(both, use_java=java)
    res = {key: tokenized["candidate", key] for key in candidates}
    gts = {key: tokenized["reference", key] for key in candidates}

    bleu = Bleu(4).compute_score(gts, res, verbose=0)[0]
    result: dict[str, Any] = {f"BLEU-{n}": float(bleu[n - 1]) for n in range(1, 5)}
    result["METEOR"] = meteor_score(gts, res) if java and meteor else None
    result["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    result["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    result["candidates"] = len(res)
    result["distinct_candidates"] = len({caption for [caption] in res.values()})
    result["tokenizer"] = "ptb" if java else "simple"
    if java:
        result["note"] = "tokenised by the Stanford PTB tokenizer (java)" + (
            "" if meteor else "; METEOR not computed (meteor=False)")
    else:
        result["note"] = ("tokenised by simple_tokenize (pure Python): java is not on the PATH; METEOR is absent "
                          "(None) because it runs in Java")
    return result
