"""Caption tokenisation as the COCO caption toolkit does it: Stanford's PTB tokenizer, lowercased, punctuation dropped.

pycocoevalcap runs `edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase` (Java) over the captions and
then drops a fixed list of punctuation tokens (PUNCTUATIONS). `ptb_tokenize` does exactly that where `java` is on
the PATH; elsewhere it falls back to `simple_tokenize`, a few regular expressions that split a caption the way the
PTB tokenizer does for what occurs in captions like Flickr8k's: clitics ("dog's" -> dog 's, "don't" -> do n't),
hyphenated words kept whole (t-shirt), quotes, brackets and sentence punctuation split off and dropped.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)

# the tokens pycocoevalcap's ptbtokenizer.py drops after the PTB tokenizer (the PTB forms of quotes and brackets)
PUNCTUATIONS = frozenset({"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-",
                          "--", "...", ";"})

# What the PTB tokenizer turns a bracket or quote into, before lowercasing. pycocoevalcap's list holds the
# uppercase forms but compares them with the lowercased output, so "(" survives as "-lrb-": kept here too.
_PTB_FORM = {"(": "-LRB-", ")": "-RRB-", "{": "-LCB-", "}": "-RCB-", "[": "-LSB-", "]": "-RSB-", '"': "''"}

_CLITIC = r"'(?:s|re|ve|ll|d|m)\b"
_ABBREVIATION = r"(?:mrs?|ms|dr|jr|sr|st|mt|prof|vs|etc|inc|co|ltd|ave|[a-z])\."
_TOKEN = re.compile(rf"""
      [a-z]+(?=n't\b)                           # do|n't, ca|n't: the stem before n't
    | n't\b
    | can(?=not\b)                              # can|not
    | 'n'?(?!\w)                               # slip 'n' slide, rock 'n roll
    | {_CLITIC}                                 # 's 're 've 'll 'd 'm
    | (?:[a-z]\.){{2,}}                         # acronyms keep their periods: u.s.
    | (?-i:[A-Z]+&[A-Z]+)                       # AT&T, P&G (but at & t, b & w in lowercase)
    | \b{_ABBREVIATION}                         # so do abbreviations and initials: mr. jr. p.
    | \d+(?:[.,:]\d+)+|'\d+s\b                  # numbers: 3.5 1,000 10:30 '90s
    | \w+(?:[-/]\w+|(?:\.\w+)*\.(?:com|org|net|edu)\b|'(?!{_CLITIC[1:]})\w+)*  # 4x4 t-shirt x.com o'clock
    | \.\.\.|--                                 # ellipsis, dash
    | [^\w\s]                                   # any other symbol, one at a time
""", re.X | re.I)


def java_available() -> bool:
    """True when `java` is on the PATH: the Stanford PTB tokenizer and METEOR can run."""
    return shutil.which("java") is not None


def simple_tokenize(caption: str) -> str:
    """One caption tokenised like pycocoevalcap's PTB tokenizer, in pure Python: space-joined lowercase tokens."""
    tokens = (_PTB_FORM.get(t, t).lower() for t in _TOKEN.findall(caption))
    return " ".join(t for t in tokens if t not in PUNCTUATIONS)


def ptb_tokenize(captions: Mapping[Key, Sequence[str]], use_java: bool | None = None) -> dict[Key, list[str]]:
    """{key: [caption, ...]} -> {key: [tokenised caption, ...]} (space-joined tokens), in the same order.

    use_java: None picks the Java PTB tokenizer when `java` is on the PATH and `simple_tokenize` otherwise.
    """
    for key, caps in captions.items():
        if isinstance(caps, str) or not all(isinstance(c, str) for c in caps):
            raise ValueError(f"captions[{key!r}] must be a list of strings, got {caps!r}")
    if use_java is None:
        use_java = java_available()
    if not use_java:
        return {key: [simple_tokenize(c) for c in caps] for key, caps in captions.items()}
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # one line per caption: any line break inside a caption would split it (pycocoevalcap replaces only \n), and
    # an empty caption becomes ".", which tokenises to nothing, so that it too has its output line
    flat = {key: [{"caption": " ".join(c.split()) or "."} for c in caps] for key, caps in captions.items() if caps}
    tokenized = PTBTokenizer().tokenize(flat)
    out = {key: tokenized.get(key, []) for key in captions}
    for key, caps in captions.items():
        if len(out[key]) != len(caps):
            raise RuntimeError(f"the PTB tokenizer returned {len(out[key])} captions for {key!r}, expected "
                               f"{len(caps)}: its output lines did not line up with the input")
    return out
