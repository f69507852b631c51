"""One trained captioner as the demo serves it: captions (greedy and beam, with the run's own decoding settings)
with each word's attention over the image tokens, the attention rollout of its ViT, and the PNGs the page shows."""

from __future__ import annotations

import base64
import copy
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from mllm.multimodal.mllm import load_captioner
from mllm.vision.analysis import attention_rollout, attention_weights


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 [H, W, 3 or 4] -> a data: URL of a PNG (the page shows it without another request)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def attention_png(grid: np.ndarray) -> str:
    """A [g, g] attention map stretched to its range and coloured (inferno), as a g x g PNG the page enlarges."""
    scaled = (grid - grid.min()) / max(float(grid.max() - grid.min()), 1e-12)
    return png_data_url((colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8))


class Captioning:
    """One trained captioner: its captions and the attention rollout of its ViT (computed on a private copy, as
    collecting the weights hooks the modules, so concurrent requests never see each other's hooks)."""

    def __init__(self, path: Path, device: str):
        self.path = path
        self.model, self.tokenizer = load_captioner(path, device)
        self._vit = copy.deepcopy(self.model.vit)
        self._vit_lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.model.vit.cfg.image_size

    @torch.no_grad()
    def captions(self, images: torch.Tensor) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]]]:
        """uint8 [1, S, S, 3] -> ({"greedy": ..., "beam": ...}, per strategy each word's attention map).

        A word's map is where the language model looked among the image tokens when it chose that word: the
        attention of that position to the image tokens, averaged over heads and layers (`PrefixAttention`),
        a [g, g] grid in the image's layout, from the same decoding that produced the caption."""
        out, maps = {}, {}
        blind = self.model.num_image_tokens == 0
        for strategy in ("greedy", "beam"):
            result = self.model.generate(images, strategy=strategy, attention=not blind, **self.model.decoding)
            ids, att = (result, None) if blind else result
            text = self.tokenizer.decode(ids[0].cpu())
            out[strategy], maps[strategy] = text, []
            if att is not None:
                combined = att.combined[0].cpu()
                side = int(combined.shape[-1] ** 0.5)
                for word, weights in zip(text.split(), combined, strict=False):
                    grid = weights.view(side, side).numpy()
                    maps[strategy].append({"word": word, "map": grid.astype(float).round(5).tolist(),
                                           "png": attention_png(grid)})
        return out, maps

    @torch.no_grad()
    def attention(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [1, S, S, 3] -> the class token's attention rollout over the patch grid [g, g] (sums to <= 1)."""
        with self._vit_lock:
            rollout = attention_rollout(attention_weights(self._vit, self._vit.normalize(images)))[0]
        g = self._vit.grid
        return rollout.view(g, g).cpu().numpy()


def caption_all(captioners: dict[str, Captioning], pixels: np.ndarray, device: str) -> dict[str, Any]:
    """uint8 [S, S, 3] -> every captioner's captions and attention (list and PNG), and the image as they see it."""
    images = torch.from_numpy(pixels.copy())[None].to(device)
    result: dict[str, Any] = {"captions": {}, "word_attention": {}, "attention": {}, "attention_png": {}}
    for name, captioner in captioners.items():
        result["captions"][name], result["word_attention"][name] = captioner.captions(images)
        grid = captioner.attention(images)
        result["attention"][name] = grid.astype(float).round(5).tolist()
        result["attention_png"][name] = attention_png(grid)
    result["model_input_png"] = png_data_url(pixels)
    return result
