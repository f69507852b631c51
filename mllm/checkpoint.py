"""The one checkpoint reader: training resume and inference both load through it, with the same errors.

A checkpoint is a dict written by the Trainer: `kind` ("vit", "gpt", ...), `model` (a state dict),
`config`, `extra` (what inference needs: model config, tokenizer, class names, normalisation) and,
for resuming, optimizer, scheduler, step and RNG states.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of another kind or of another shape; the message says what to do."""


def load_checkpoint(path: str | Path, kind: str | tuple[str, ...] | None = None, device: str | torch.device = "cpu",
                    default_name: str = "best.pt") -> dict[str, Any]:
    """Read a checkpoint (a `.pt` file, or a run folder: its `default_name`) and check it holds a `kind` model
    (or one of several kinds).

    `kind=None` skips the kind check (the caller checks later). Raises CheckpointError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one first or pass the run folder / .pt file")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:200]}); it is "
                              f"corrupt or cut short: replace it with another checkpoint of the run (best.pt or "
                              f"last.pt) or delete the run folder and train again") from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by this project (no 'model' entry); pass a "
                              f"run folder or a best.pt / last.pt file")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and state.get("kind") not in kinds:
        wanted = f"a {kinds[0]!r} one" if len(kinds) == 1 else f"one of {', '.join(repr(k) for k in kinds)}"
        raise CheckpointError(f"{path} holds a {state.get('kind')!r} model, not {wanted}; pass a checkpoint of the "
                              f"right kind")
    state["path"] = str(path)
    return state


def shape_mismatches(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between a model's state dict and `weights`: missing, unexpected, resized keys."""
    own = model.state_dict()
    problems = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(v.shape)}"
                for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    problems += [f"{k}: missing from the checkpoint" for k in own if k not in weights]
    problems += [f"{k}: not in the model" for k in weights if k not in own]
    return problems


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> None:
    """`model.load_state_dict(weights)`, but a model of another shape is a CheckpointError naming the keys."""
    problems = shape_mismatches(model, weights)
    if problems:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CheckpointError(f"{source} does not fit the model built from the config ({shown}). The config's "
                              f"model settings must match the checkpoint's: resume without changing model.* keys, "
                              f"or start a new run")
    model.load_state_dict(weights)
