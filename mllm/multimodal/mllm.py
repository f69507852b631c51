"""The captioner: a ViT sees the image, a connector turns its patch tokens into image tokens, and a GPT reads
them as a prefix before a begin token and writes the caption.

    sequence  = [image tokens (P)] [BOS] w_1 ... w_n
    predicted =                     w_1  w_2 ... EOS      (loss on caption positions only)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllm.checkpoint import load_checkpoint, load_weights
from mllm.language.beams import beam_search
from mllm.language.decoding import PrefixAttention, attention_of, decode, token_logprobs
from mllm.language.gpt import GPT, GPTConfig
from mllm.vision.vit import ViT, ViTConfig

from .connector import Connector
from .tokenizer import tokenizer_from_state

STRATEGIES = ("greedy", "sample", "beam")


def content_word_loss(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """Multi-label grounding loss: logits [B, W] of the content words, targets [B, W] in {0, 1} (1: one of the
    image's reference captions names word w) -> binary cross-entropy, the mean over words and images; with
    `weights` [B], the weighted sum over images of each image's mean over words instead."""
    per_image = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none").mean(1)
    return per_image.mean() if weights is None else (per_image * weights).sum()


def caption_token_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """logits [B, T, V], targets [B, T] (-100 = none) -> (summed cross-entropy, number of target tokens)."""
    total = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")
    return total, (targets != -100).sum()


@dataclass
class CaptionerConfig:
    vision: dict  # ViTConfig fields
    text: dict  # GPTConfig fields
    connector: str = "mlp"  # mlp or linear
    reduce: str = "pixel_shuffle"  # none, avgpool or pixel_shuffle
    bos_id: int = 0
    eos_id: int = 1
    blind: bool = False  # a baseline: no image tokens, the language model alone
    banned_ids: tuple[int, ...] = ()  # never generated (the word tokenizer's begin and unknown tokens)
    reduce_factor: int = 2  # pixel_shuffle / avgpool: f x f neighbouring patches become one image token
    aux_words: int = 0  # > 0: a head predicting which of this many content words the references name
    aux_word_ids: tuple[int, ...] = ()  # the caption token id of each content word (grounded decoding)


class Captioner(nn.Module):
    """images uint8 [B, S, S, 3] (or cached ViT patch features [B, N, Dv]) + captions -> next-token logits."""

    def __init__(self, cfg: CaptionerConfig):
        super().__init__()
        self.cfg = cfg
        self.vit = ViT(ViTConfig(**cfg.vision))
        self.gpt = GPT(GPTConfig(**cfg.text))
        self.connector = Connector(self.vit.cfg.d_model, self.gpt.cfg.d_model, cfg.connector, cfg.reduce,
                                   cfg.reduce_factor)
        # the grounding head: image tokens (mean) -> one logit per content word (`content_word_loss`)
        self.word_head = nn.Linear(self.gpt.cfg.d_model, cfg.aux_words) if cfg.aux_words else None
        self.bos_id, self.eos_id, self.banned = cfg.bos_id, cfg.eos_id, tuple(cfg.banned_ids)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.cfg)

    @property
    def num_image_tokens(self) -> int:
        return 0 if self.cfg.blind else self.connector.num_tokens(self.vit.grid**2)

    def patch_features(self, images: Tensor) -> Tensor:
        """uint8 [B, S, S, 3] -> the ViT's final patch tokens [B, N, Dv] (class token dropped)."""
        return self.vit.tokens(self.vit.normalize(images))[:, 1:]

    def image_tokens(self, images: Tensor | None = None, features: Tensor | None = None) -> Tensor:
        """Images (or their cached patch features) -> image tokens [B, P, D] in the GPT's embedding space."""
        if self.cfg.blind:  # P = 0: the caption is predicted from the begin token alone
            rows = (images if images is not None else features).shape[0]
            return self.gpt.tok_embed.weight.new_zeros(rows, 0, self.gpt.cfg.d_model)
        if features is None:
            if images is None:
                raise ValueError("pass images [B, S, S, 3] uint8 or their cached patch features [B, N, D]")
            features = self.patch_features(images)
        return self.connector(features)

    def forward(self, captions: Tensor, targets: Tensor | None = None, images: Tensor | None = None,
                features: Tensor | None = None, words: bool = False, image_of: Tensor | None = None
                ) -> tuple[Tensor, ...]:
        """captions [B, T] = BOS w_1 .. (padded), targets [B, T] = w_1 .. EOS (-100 = no loss).

        Returns logits [B, T, V] for the caption positions (the image positions carry no loss) and the mean
        cross-entropy over the target tokens if targets are given; with `words`, also the grounding head's
        content-word logits [B, aux_words] from the same image tokens. Images or features: one per caption, or
        with `image_of` [B] (the row of each caption's image) I images for B captions (SCST's samples): the ViT,
        the connector and the language model's image positions then run once per image, and its captions share
        the image positions' keys and values (causal: those never see a caption; gradients add up over the
        captions). The same numbers as one copy of the image per caption (tested), without dropout's randomness
        in the image positions differing between an image's captions.
        """
        prefix = self.image_tokens(images, features)
        if image_of is None or prefix.shape[1] == 0:
            prefix = prefix if image_of is None else prefix[image_of]
            logits, loss = self.gpt(captions, targets=targets, prefix=prefix)
        else:
            cache, _ = self.gpt.shared_prefix(prefix, image_of)  # the image positions' keys and values
            logits, loss = self.gpt(captions, targets=targets, cache=cache)
            prefix = prefix[image_of]
        return (logits, loss, self.word_logits(prefix)) if words else (logits, loss)

    def word_logits(self, image_tokens: Tensor) -> Tensor:
        """image tokens [B, P, D] -> content-word logits [B, aux_words] (the grounding head on their mean)."""
        if self.word_head is None:
            raise ValueError("this captioner has no content-word head (aux_words = 0)")
        return self.word_head(image_tokens.mean(dim=1))

    @torch.no_grad()
    def generate(self, images: Tensor | None = None, features: Tensor | None = None, max_len: int = 20,
                 strategy: str = "greedy", temperature: float = 1.0, top_k: int | None = None,
                 beam_size: int = 3, length_penalty: float = 0.0, generator: torch.Generator | None = None,
                 attention: bool = False, grounding: float = 0.0, no_repeat: int = 0
                 ) -> Tensor | tuple[Tensor, PrefixAttention]:
        """Caption token ids [B, L] (each row up to its end token, then end tokens) by greedy decoding,
        sampling (temperature, top-k) or beam search (beam size, length penalty), with the key/value cache.

        With `attention`, also where each token looked in the image (`PrefixAttention`: maps [B, layers, L, P]
        over the P image tokens): recorded in the decoding passes themselves for greedy and sampling, and for
        beam search from one teacher-forced pass over the chosen captions (the same numbers, as the key/value
        cache is exact). `grounding` > 0 (grounded decoding): every content word's score also gets `grounding`
        x the log-probability the grounding head gives it for this image (`grounding_bias`). `no_repeat` n > 0
        (greedy and beam): no caption repeats one of its own n-grams ("a red shirt and a red shirt").
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if grounding < 0:
            raise ValueError(f"grounding must be >= 0 (0: off), got {grounding}")
        if no_repeat < 0 or (no_repeat > 0 and strategy == "sample"):
            raise ValueError(f"no_repeat must be >= 0 (0: off) and is for greedy or beam decoding; got {no_repeat} "
                             f"with strategy {strategy!r}")
        prefix = self.image_tokens(images, features)
        bias = self.grounding_bias(prefix, grounding) if grounding > 0 else None
        if strategy == "beam":
            ids = beam_search(self.gpt, prefix, self.bos_id, self.eos_id, max_len, beam_size, length_penalty,
                              self.banned, bias, no_repeat)
            return (ids, attention_of(self.gpt, prefix, ids, self.bos_id)) if attention else ids
        t = temperature if strategy == "sample" else 0.0
        out = decode(self.gpt, prefix, self.bos_id, self.eos_id, max_len, t, top_k, generator=generator,
                     banned=self.banned, attention=attention, bias=bias, no_repeat=no_repeat)
        return (out[0], out[2]) if attention else out[0]

    def grounding_bias(self, image_tokens: Tensor, strength: float) -> Tensor:
        """image tokens [B, P, D] -> a decoding bias [B, V]: strength x log sigmoid(the grounding head's logit)
        at each content word's token id (how unlikely it is that the image's references name the word), 0 for
        every other token."""
        if self.word_head is None:
            raise ValueError("grounded decoding needs the grounding head: train with model.grounding_words > 0, "
                             "or decode with grounding 0")
        if len(self.cfg.aux_word_ids) != self.cfg.aux_words:
            raise ValueError("this captioner's grounding head has no word ids (a run from before grounded "
                             "decoding): retrain it, or decode with grounding 0")
        ids = torch.tensor(self.cfg.aux_word_ids, device=image_tokens.device)
        keep = ~torch.isin(ids, torch.tensor(self.banned, dtype=torch.long, device=ids.device))  # <unk>: never said
        values = strength * F.logsigmoid(self.word_logits(image_tokens).float())
        bias = torch.zeros(image_tokens.shape[0], self.gpt.cfg.vocab_size, device=image_tokens.device)
        return bias.index_copy(1, ids[keep], values[:, keep])

    @torch.no_grad()
    def sample_captions(self, images: Tensor | None = None, features: Tensor | None = None, n: int = 1,
                        max_len: int = 20, temperature: float = 1.0, generator: torch.Generator | None = None
                        ) -> tuple[Tensor, Tensor]:
        """n sampled captions per image: tokens [B*n, L] (image-major) and their log-probs [B*n, L]."""
        prefix = self.image_tokens(images, features).repeat_interleave(n, dim=0)
        return decode(self.gpt, prefix, self.bos_id, self.eos_id, max_len, temperature, generator=generator,
                      banned=self.banned)

    def caption_logprobs(self, tokens: Tensor, images: Tensor | None = None, features: Tensor | None = None,
                         temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """Per-token log-probabilities [B, L] of given captions, with gradients, and the mask [B, L] of real
        tokens (up to and including the end token). Images or features: one per row of `tokens`."""
        prefix = self.image_tokens(images, features)
        return token_logprobs(self.gpt, prefix, tokens, self.bos_id, self.eos_id, temperature, self.banned)


DECODING_DEFAULTS = {"max_len": 24, "beam_size": 3, "length_penalty": 0.0, "grounding": 0.0, "no_repeat": 0}


def load_captioner(path: str | Path, device: str | torch.device = "cpu") -> tuple[Captioner, Any]:
    """A trained captioner (eval mode) and its caption tokenizer, from a run folder or .pt file.

    `model.decoding` holds the run's own decoding settings (eval.max_len, beam_size, length_penalty, grounding,
    no_repeat)."""
    state = load_checkpoint(path, "captioner", device)
    model = Captioner(CaptionerConfig(**state["extra"]["model_config"]))
    load_weights(model, state["model"], state["path"])
    saved = state.get("config", {}).get("eval", {})
    model.decoding = {k: saved.get(k, v) for k, v in DECODING_DEFAULTS.items()}
    if model.word_head is None:  # no grounding head (e.g. the blind baseline): nothing to ground decoding in
        model.decoding["grounding"] = 0.0
    return model.to(device).eval(), tokenizer_from_state(state["extra"]["tokenizer"])
