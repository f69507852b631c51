"""What the web demo serves: the supervised and the SCST captioner side by side, and the char GPT, each loaded
with the project's own loaders; every check of a user's input lives here, with the message the user sees."""

from __future__ import annotations

import base64
import copy
import io
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from mllm.data.images import load_image
from mllm.language.gpt import load_gpt
from mllm.multimodal.mllm import load_captioner
from mllm.vision.analysis import attention_rollout, attention_weights

from .limits import Limits, too_large

# the command that trains each model, named when its checkpoint is missing
TRAIN_COMMANDS = {"mllm": "python main.py train-mllm --preset cpu",
                  "rl": "python main.py train-rl --preset cpu",
                  "gpt": "python main.py train-llm --preset cpu"}
TRAINED_FIRST = {"mllm": "python main.py train-vit --preset cpu", "rl": TRAIN_COMMANDS["mllm"]}
CAPTIONERS = {"supervised": "mllm", "scst": "rl"}  # page and API name -> option name


class InputError(ValueError):
    """A user's input the demo refuses: `status` is the HTTP status, the message says what is wrong and the fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def missing_checkpoints(paths: dict[str, Path]) -> list[str]:
    """One line per model whose checkpoint (a run folder's best.pt, or a .pt file) is missing, naming the command
    that trains it and the option that points elsewhere."""
    lines = []
    for key, path in paths.items():
        file = path / "best.pt" if path.is_dir() or not path.suffix else path
        if not file.is_file():
            after = f" (after `{TRAINED_FIRST[key]}`)" if key in TRAINED_FIRST else ""
            lines.append(f"no checkpoint at {file}: train it with `{TRAIN_COMMANDS[key]}`{after} or pass "
                         f"--{key} RUN_FOLDER_OR_PT")
    return lines


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 [H, W, 3 or 4] -> a data: URL of a PNG (the page shows it without another request)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Captioning:
    """One trained captioner: its captions (greedy and beam, with the run's own decoding settings) and the
    attention rollout of its ViT (computed on a private copy, as collecting the weights hooks the modules)."""

    def __init__(self, path: Path, device: str):
        self.path = path
        self.model, self.tokenizer = load_captioner(path, device)
        self._vit = copy.deepcopy(self.model.vit)
        self._vit_lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.model.vit.cfg.image_size

    @torch.no_grad()
    def captions(self, images: torch.Tensor) -> dict[str, str]:
        """uint8 [1, S, S, 3] -> {"greedy": ..., "beam": ...}."""
        out = {}
        for strategy in ("greedy", "beam"):
            ids = self.model.generate(images, strategy=strategy, **self.model.decoding)
            out[strategy] = self.tokenizer.decode(ids[0].cpu())
        return out

    @torch.no_grad()
    def attention(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [1, S, S, 3] -> the class token's attention rollout over the patch grid [g, g] (sums to <= 1)."""
        with self._vit_lock:
            rollout = attention_rollout(attention_weights(self._vit, self._vit.normalize(images)))[0]
        g = self._vit.grid
        return rollout.view(g, g).cpu().numpy()


def attention_png(grid: np.ndarray) -> str:
    """A [g, g] attention map stretched to its range and coloured (inferno), as a g x g PNG the page enlarges."""
    scaled = (grid - grid.min()) / max(float(grid.max() - grid.min()), 1e-12)
    return png_data_url((colormaps["inferno"](scaled)[..., :3] * 255).astype(np.uint8))


class DemoModels:
    """The three models of the demo and the checks of what users send them."""

    def __init__(self, mllm: str | Path, rl: str | Path, gpt: str | Path, device: str = "cpu",
                 limits: Limits | None = None):
        paths = {"mllm": Path(mllm), "rl": Path(rl), "gpt": Path(gpt)}
        missing = missing_checkpoints(paths)
        if missing:
            raise FileNotFoundError("the demo needs three trained models:\n  " + "\n  ".join(missing))
        self.limits = limits or Limits()
        self.device = device
        self.captioners = {name: Captioning(paths[key], device) for name, key in CAPTIONERS.items()}
        self.gpt, self.chars = load_gpt(paths["gpt"], device)
        self.paths = {k: str(v) for k, v in paths.items()}
        sizes = {c.image_size for c in self.captioners.values()}
        if len(sizes) != 1:
            raise ValueError(f"the two captioners take different image sizes ({sorted(sizes)}); pass runs of the "
                             f"same recipe (the SCST run fine-tunes the supervised one)")
        self.image_size = sizes.pop()
        vits = [c.model.vit.state_dict() for c in self.captioners.values()]
        self.same_vit = vits[0].keys() == vits[1].keys() and all(torch.equal(vits[0][k], vits[1][k]) for k in vits[0])

    def info(self) -> dict[str, Any]:
        """What the page and API users need to know: models, decoding settings, limits, the GPT's characters."""
        return {"models": self.paths, "image_size": self.image_size,
                "decoding": {name: c.model.decoding for name, c in self.captioners.items()},
                "same_vit": self.same_vit,  # SCST left the ViT as it was: one attention map for both
                "gpt_context": self.gpt.cfg.context, "gpt_characters": self.chars.chars,
                "limits": asdict(self.limits)}

    # ---- captions -------------------------------------------------------------------------------------------

    def read_image(self, data: bytes, filename: str) -> np.ndarray:
        """Uploaded bytes -> uint8 [S, S, 3] as the captioners see it, through the project's image reader."""
        if not data:
            raise InputError(422, f"the upload {filename!r} is empty; choose an image file (PNG, JPEG, ...)")
        if len(data) > self.limits.max_upload_bytes:
            raise InputError(413, too_large(len(data), self.limits.max_upload_bytes))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(data)
            try:
                return load_image(path, self.image_size, self.limits.max_pixels)
            except ValueError as e:
                if "cannot read" in str(e):
                    raise InputError(415, f"the upload {filename!r} is not an image the server can read; upload "
                                          f"a PNG, JPEG, GIF, BMP, WebP or TIFF file") from e
                # too many pixels: load_image names the size and the fix
                raise InputError(413, str(e).replace(str(path), f"the upload {filename!r}")) from e

    def caption(self, data: bytes, filename: str = "upload") -> dict[str, Any]:
        """An uploaded image -> both captioners' captions, the image as they see it, their ViTs' attention."""
        start = time.perf_counter()
        pixels = self.read_image(data, filename)
        images = torch.from_numpy(pixels.copy())[None].to(self.device)
        result: dict[str, Any] = {"captions": {}, "attention": {}, "attention_png": {}}
        for name, captioner in self.captioners.items():
            result["captions"][name] = captioner.captions(images)
            grid = captioner.attention(images)
            result["attention"][name] = grid.astype(float).round(5).tolist()
            result["attention_png"][name] = attention_png(grid)
        result["model_input_png"] = png_data_url(pixels)
        result["image_size"] = self.image_size
        result["seconds"] = round(time.perf_counter() - start, 4)
        return result

    # ---- text -----------------------------------------------------------------------------------------------

    def check_generation(self, prompt: str, length: int, temperature: float) -> torch.Tensor:
        """The prompt as token ids [1, T], or an InputError naming the problem and the fix."""
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
            known = "".join(c for c in self.chars.chars if c.isprintable() and c != " ")
            raise InputError(422, f"the prompt has characters the model does not know: {shown}; remove or "
                                  f"replace them (it knows {self.chars.vocab_size} characters, those of Tiny "
                                  f"Shakespeare: space, newline and {known})")
        if not 1 <= length <= lim.max_length:
            raise InputError(422, f"length {length} is out of range; ask for 1 to {lim.max_length:,} new characters")
        if not 0 <= temperature <= lim.max_temperature:
            raise InputError(422, f"temperature {temperature} is out of range; use 0 (greedy) to "
                                  f"{lim.max_temperature:g}")
        return self.chars.encode_tensor(prompt)[None].to(self.device)

    def stream(self, idx: torch.Tensor, length: int, temperature: float, seed: int = 0,
               chunk: int = 16) -> Iterator[str]:
        """Yield the new text `chunk` characters at a time, through GPT.generate (the context slides as there)."""
        generator = torch.Generator(device=idx.device).manual_seed(seed)
        context = self.gpt.cfg.context
        done = 0
        while done < length:
            n = min(chunk, length - done)
            out = self.gpt.generate(idx[:, -context:], n, temperature, generator=generator)
            new = out[:, -n:]
            idx = torch.cat([idx, new], dim=1)[:, -context:]
            done += n
            yield self.chars.decode(new[0].cpu())

