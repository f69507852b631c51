"""Caption tokenisers: word-level (vocabulary from the training captions) and character-level (the Tiny
Shakespeare GPT's characters, extended with the captions'), behind one interface.

Both lower-case a caption and keep its words (`caption_words`); `encode` gives ids without begin/end tokens,
`decode` stops at the end token. They are saved in checkpoints as plain dicts (`state_dict`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from torch import Tensor

from mllm.evaluation.tokenize import simple_tokenize
from mllm.language.tokenizer import CharTokenizer


def caption_words(caption: str) -> list[str]:
    """'A dog in a T-shirt runs .' -> ['a', 'dog', 'in', 'a', 't-shirt', 'runs']: the tokens the caption
    metrics compare (the COCO toolkit's PTB tokenisation, lower-cased, punctuation dropped)."""
    return simple_tokenize(caption).split()


class WordTokenizer:
    """Words seen at least `min_count` times in the training captions; the rest map to <unk>."""

    kind = "word"
    SPECIALS = ("<bos>", "<eos>", "<unk>")
    banned_ids = (0, 2)  # never generated: <bos>, <unk>

    def __init__(self, words: list[str]):
        self.itos = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.bos_id, self.eos_id, self.unk_id = 0, 1, 2

    @classmethod
    def from_captions(cls, captions: Iterable[str], min_count: int = 5) -> WordTokenizer:
        counts = Counter(w for c in captions for w in caption_words(c))
        return cls(sorted(w for w, n in counts.items() if n >= min_count))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, caption: str) -> list[int]:
        return [self.stoi.get(w, self.unk_id) for w in caption_words(caption)]

    def decode(self, ids: Tensor | list[int]) -> str:
        ids = ids.tolist() if isinstance(ids, Tensor) else ids
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i != self.bos_id:
                out.append(self.itos[i])
        return " ".join(out)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "words": self.itos[len(self.SPECIALS):]}


class CaptionCharTokenizer:
    """Characters of a caption's words joined by spaces; a newline is both the begin and the end token, as
    in the Tiny Shakespeare text the char GPT learned (a line starts after one and ends with one)."""

    kind = "char"
    NEWLINE = "\n"
    banned_ids: tuple[int, ...] = ()

    def __init__(self, chars: CharTokenizer):
        if self.NEWLINE not in chars.stoi:
            chars = chars.extend(self.NEWLINE)
        self.chars = chars
        self.bos_id = self.eos_id = chars.stoi[self.NEWLINE]

    @classmethod
    def from_captions(cls, captions: Iterable[str], base: CharTokenizer | None = None) -> CaptionCharTokenizer:
        """The base's characters (e.g. the Shakespeare GPT's, ids unchanged) plus any new caption characters."""
        text = "".join(" ".join(caption_words(c)) for c in captions)
        base = base or CharTokenizer("")
        return cls(base.extend(text + cls.NEWLINE))

    @property
    def vocab_size(self) -> int:
        return self.chars.vocab_size

    def encode(self, caption: str) -> list[int]:
        """Characters outside the vocabulary (none occur in Flickr8k's training words) are dropped."""
        return [self.chars.stoi[c] for c in " ".join(caption_words(caption)) if c in self.chars.stoi]

    def decode(self, ids: Tensor | list[int]) -> str:
        ids = ids.tolist() if isinstance(ids, Tensor) else ids
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.chars.decode(ids).strip()

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars.state_dict()}


def tokenizer_from_state(state: dict[str, Any]) -> WordTokenizer | CaptionCharTokenizer:
    if state["kind"] == "word":
        return WordTokenizer(state["words"])
    if state["kind"] == "char":
        return CaptionCharTokenizer(CharTokenizer.from_state_dict(state["chars"]))
    raise ValueError(f"unknown caption tokenizer kind {state['kind']!r}; expected 'word' or 'char'")
