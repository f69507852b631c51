"""What the web demo serves: the supervised and the SCST captioner side by side and the char GPT, each loaded with
the project's own loaders (a missing checkpoint is an error naming the command that trains it)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .captioning import Captioning, caption_all
from .images import read_upload
from .limits import InputError, Limits, too_large
from .text import TextModel

# the command that trains each model, named when its checkpoint is missing
TRAIN_COMMANDS = {"mllm": "python main.py train-mllm --preset cpu",
                  "rl": "python main.py train-rl --preset cpu",
                  "gpt": "python main.py train-llm --preset cpu"}
TRAINED_FIRST = {"mllm": "python main.py train-vit --preset cpu", "rl": TRAIN_COMMANDS["mllm"]}
CAPTIONERS = {"supervised": "mllm", "scst": "rl"}  # page and API name -> option name


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


class DemoModels:
    """The three models of the demo, loaded once; `caption` and `text` are what requests call."""

    def __init__(self, mllm: str | Path, rl: str | Path, gpt: str | Path, device: str = "cpu",
                 limits: Limits | None = None):
        paths = {"mllm": Path(mllm), "rl": Path(rl), "gpt": Path(gpt)}
        missing = missing_checkpoints(paths)
        if missing:
            raise FileNotFoundError("the demo needs three trained models:\n  " + "\n  ".join(missing))
        self.limits = limits or Limits()
        self.device = device
        self.captioners = {name: Captioning(paths[key], device) for name, key in CAPTIONERS.items()}
        self.text = TextModel(paths["gpt"], device, self.limits)
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
        gpt = self.text.gpt
        return {"models": self.paths, "image_size": self.image_size, "device": self.device,
                "decoding": {name: c.model.decoding for name, c in self.captioners.items()},
                "same_vit": self.same_vit,  # SCST left the ViT as it was: one attention map for both
                "gpt_context": gpt.cfg.context, "gpt_characters": self.text.known,
                "limits": {**asdict(self.limits), "max_json_bytes": self.limits.max_json_bytes}}

    def read_image(self, data: bytes, filename: str) -> Any:
        """Uploaded bytes -> uint8 [S, S, 3] as the captioners see it, or an InputError naming the fix."""
        if len(data) > self.limits.max_upload_bytes:
            raise InputError(413, too_large(len(data), self.limits.max_upload_bytes))
        return read_upload(data, filename, self.image_size, self.limits.max_pixels)

    def caption(self, data: bytes, filename: str = "upload") -> dict[str, Any]:
        """An uploaded image -> both captioners' captions, the image as they see it, their ViTs' attention."""
        start = time.perf_counter()
        result = caption_all(self.captioners, self.read_image(data, filename), self.device)
        result["image_size"] = self.image_size
        result["seconds"] = round(time.perf_counter() - start, 4)
        return result
