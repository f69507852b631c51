"""Character tokenizer: one id per character, saved with every checkpoint."""

from __future__ import annotations

import torch
from torch import Tensor


class CharTokenizer:
    """Maps characters to ids 0..V-1. Unknown characters raise, or map to `<unk>` when it is enabled."""

    UNK = "\uFFFD"  # the replacement character stands for any unknown character

    def __init__(self, chars: str, unk: bool = False):
        chars = "".join(dict.fromkeys(chars))  # unique, order kept
        if unk and self.UNK not in chars:
            chars += self.UNK
        self.chars, self.unk = chars, unk
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str, unk: bool = False) -> CharTokenizer:
        return cls("".join(sorted(set(text))), unk)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def extend(self, text: str) -> CharTokenizer:
        """A tokenizer with the characters of `text` appended (existing ids unchanged)."""
        return CharTokenizer(self.chars + "".join(sorted(set(text) - set(self.chars))), self.unk)

    def encode(self, text: str) -> list[int]:
        if self.unk:
            unk_id = self.stoi[self.UNK]
            return [self.stoi.get(c, unk_id) for c in text]
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {''.join(unknown)!r} "
                             f"(the model knows {len(self.chars)} characters; remove them, or build the "
                             f"tokenizer with unk=True to map them to an unknown token)")
        return [self.stoi[c] for c in text]

    def encode_tensor(self, text: str) -> Tensor:
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids) -> str:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)

    def state_dict(self) -> dict:
        return {"chars": self.chars, "unk": self.unk}

    @classmethod
    def from_state_dict(cls, state: dict) -> CharTokenizer:
        return cls(state["chars"], state["unk"])
