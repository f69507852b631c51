"""The char GPT as the demo serves it: every check of a generation request (with the message the user sees) and
the stream itself, one chunk of characters per model call, its random generator on the model's device."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mllm.language.gpt import load_gpt

from .limits import MAX_SEED, InputError, Limits


class TextStream:
    """One generation in progress: `step(n)` -> the next n characters, through `GPT.generate` (the context slides
    as there). Its generator lives where the model does, so sampling works on any device."""

    def __init__(self, text: TextModel, idx: torch.Tensor, temperature: float, seed: int):
        self.text = text
        self.idx = idx
        self.temperature = temperature
        self.generator = torch.Generator(device=idx.device).manual_seed(seed)

    def step(self, n: int) -> str:
        context = self.text.gpt.cfg.context
        out = self.text.gpt.generate(self.idx[:, -context:], n, self.temperature, generator=self.generator)
        new = out[:, -n:]
        self.idx = torch.cat([self.idx, new], dim=1)[:, -context:]
        return self.text.chars.decode(new[0].cpu())


class TextModel:
    """The char GPT, its characters and the limits of what users may ask of it."""

    def __init__(self, path: Path, device: str, limits: Limits):
        self.gpt, self.chars = load_gpt(path, device)
        self.device = device
        self.limits = limits

    @property
    def known(self) -> str:
        """The characters a prompt may use."""
        return "".join(self.chars.chars)

    def check(self, prompt: str, length: int, temperature: float, seed: int) -> torch.Tensor:
        """Every field checked before any work: the prompt as token ids [1, T] on the model's device, or an
        InputError (422) naming the problem and the fix."""
        lim = self.limits
        if not prompt:
            raise InputError(422, "the prompt is empty; type a few characters to continue, e.g. 'ROMEO:'")
        if len(prompt) > lim.max_prompt_chars:
            raise InputError(422, f"the prompt is {len(prompt):,} characters long, over the limit of "
                                  f"{lim.max_prompt_chars:,}; shorten it (the model reads only its last "
                                  f"{self.gpt.cfg.context} characters anyway)")
        unknown = sorted(set(prompt) - self.chars.stoi.keys()) if not self.chars.unk else []
        if unknown:
            shown = " ".join(repr(c) for c in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            printable = "".join(c for c in self.chars.chars if c.isprintable() and c != " ")
            raise InputError(422, f"the prompt has characters the model does not know: {shown}; remove or "
                                  f"replace them (it knows {self.chars.vocab_size} characters, those of Tiny "
                                  f"Shakespeare: space, newline and {printable})")
        if not 1 <= length <= lim.max_length:
            raise InputError(422, f"length {length} is out of range; ask for 1 to {lim.max_length:,} new characters")
        if not (math.isfinite(temperature) and 0 <= temperature <= lim.max_temperature):
            raise InputError(422, f"temperature {temperature} is out of range; use 0 (greedy) to "
                                  f"{lim.max_temperature:g}")
        if not 0 <= seed <= MAX_SEED:
            raise InputError(422, f"seed {seed} is out of range; use a whole number from 0 to {MAX_SEED} (2**63 - 1)")
        return self.chars.encode_tensor(prompt)[None].to(self.device)

    def start(self, prompt: str, length: int, temperature: float, seed: int) -> TextStream:
        """A checked request -> its stream (no model call yet)."""
        return TextStream(self, self.check(prompt, length, temperature, seed), temperature, seed)
