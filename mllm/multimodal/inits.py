"""Where the captioner's and the alignment stage's parts start: checked checkpoints of the earlier stages."""

from __future__ import annotations

from pathlib import Path

from mllm.checkpoint import CheckpointError, load_checkpoint, load_weights
from mllm.vision.vit import ViT, ViTConfig

VISION_KEYS = ("d_model", "num_layers", "num_heads", "mlp_ratio", "stem")  # image and patch size may differ: adapted
TEXT_KEYS = ("d_model", "num_layers", "num_heads", "mlp_ratio", "context")
HOW = {"vit": "python main.py train-vit --preset cpu writes runs/vit-cpu, the ViT on CIFAR-10",
       "align": "python main.py train-align --preset cpu writes runs/align-cpu, the CIFAR-10 ViT aligned with "
                "Flickr8k captions (it needs runs/vit-cpu first); init.vision=runs/vit-cpu takes the CIFAR-10 ViT "
                "itself",
       "gpt": "python main.py train-llm --preset cpu writes runs/gpt-cpu"}


def check_fits(part: str, path: str, saved: dict, wanted: dict, keys: tuple[str, ...]) -> None:
    """An error naming the keys where a checkpoint's model config differs from the config's model.<part>."""
    differ = {k: (saved.get(k), wanted.get(k)) for k in keys if saved.get(k) != wanted.get(k)}
    if differ:
        listing = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in differ.items())
        raise CheckpointError(f"init.{part} {path} does not fit the config ({listing}); set model.{part}.* to the "
                              f"checkpoint's values, or init.{part}=null for a random {part} model")


def init_checkpoint(part: str, path: str | None, kinds: tuple[str, ...]) -> dict | None:
    """The checkpoint a part starts from, of one of `kinds` (None: random init); a missing run says how to train
    the first kind. An align checkpoint comes back as its ViT, in a vit checkpoint's form."""
    if not path:
        return None
    if not Path(path).exists():
        raise CheckpointError(f"init.{part}={path}: no such run or file; train it first ({HOW[kinds[0]]}), or set "
                              f"init.{part}=null to start from random weights")
    state = load_checkpoint(path, kinds)
    return vision_part(state) if state["kind"] == "align" else state


def vision_part(state: dict) -> dict:
    """An align checkpoint -> its ViT as a vit checkpoint's fields ("model": the ViT's weights, "extra":
    {"model_config": the ViT's config, ...})."""
    weights = {k.removeprefix("vit."): v for k, v in state["model"].items() if k.startswith("vit.")}
    extra = {**state["extra"], "model_config": state["extra"]["model_config"]["vision"]}
    return {**state, "kind": "vit", "model": weights, "extra": extra}


def vision_config(state: dict | None, vision: dict, image_size: int) -> dict:
    """The ViT config a model builds: the checkpoint's (checked against the config's model.vision) or the
    config's own, at `image_size` and the config's patch size."""
    vision = {**vision, "image_size": image_size}
    if state is None:
        return vision
    saved = {"stem": "patch", **state["extra"]["model_config"]}  # ViTs saved before the stem key
    check_fits("vision", state["path"], saved, vision, VISION_KEYS)
    return {**saved, "image_size": image_size, "patch_size": vision["patch_size"]}


def pretrained_vit(state: dict, image_size: int, patch_size: int) -> ViT:
    """The checkpoint's ViT adapted to `image_size` and `patch_size` (`ViT.adapted`), in train mode."""
    vit = ViT(ViTConfig(**state["extra"]["model_config"]))
    load_weights(vit, state["model"], state["path"])
    return vit.adapted(image_size, patch_size).train()
