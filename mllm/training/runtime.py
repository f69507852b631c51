"""Where a run executes: device choice, torchrun/DDP setup, RNG states and a description of the machine."""

from __future__ import annotations

import os
import platform
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor


def pick_device(name: str = "auto") -> torch.device:
    """'auto' takes cuda, then mps, then cpu; anything else is passed to torch.device after a check."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return device


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the torchrun process group if WORLD_SIZE > 1 (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank), device


def exit_process(code: int | None) -> None:
    """End the process with `code` (None: 0). A torchrun worker skips the interpreter's teardown: gloo's
    worker threads outlive the process group (DDP keeps it referenced), and one still releasing a finished
    collective's tensors while Python finalises aborts the process ('terminate called without an active
    exception', exit -6) after a successful run. stdout and stderr are flushed first; files are closed by then."""
    code = 0 if code is None else code
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not isinstance(code, int):
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # no stream, a closed one, or a reader that went away
            pass
    os._exit(code)


@contextmanager
def main_process_first(ranks: Dist) -> Iterator[None]:
    """Rank 0 runs the block first (downloads, prepares caches) while the others wait; then they run it."""
    if ranks.enabled and not ranks.main:
        dist.barrier()
    yield
    if ranks.enabled and ranks.main:
        dist.barrier()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_generator(seed: int, step: int, micro: int = 0) -> torch.Generator:
    """A generator fixed by (seed, step, micro): batches do not depend on the global RNG, so resume is exact."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 131 + micro)


def epoch_indices(n: int, batch_size: int, k: int, seed: int) -> Tensor:
    """Indices of the k-th batch (0-based) when each epoch is a fresh permutation, the last partial batch dropped."""
    per_epoch = n // batch_size
    epoch, within = divmod(k, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return perm[within * batch_size : (within + 1) * batch_size]


def bucketed_indices(lengths: Tensor, batch_size: int, k: int, seed: int, pool: int) -> Tensor:
    """Indices of the k-th batch (0-based) of batches of similar length: each epoch is the permutation of
    `epoch_indices`, cut into pools of `pool` batches; a pool is sorted by `lengths` [N] (stable) and cut into
    batches, taken in a random order. Every item is used once per epoch as before, but a batch padded to its
    longest item wastes less. pool 1 is `epoch_indices` itself."""
    n = len(lengths)
    per_epoch = n // batch_size
    epoch, within = divmod(k, per_epoch)
    if pool <= 1:
        return epoch_indices(n, batch_size, k, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))[: per_epoch * batch_size]
    p, j = divmod(within, pool)
    chunk = perm[p * pool * batch_size : (p + 1) * pool * batch_size]
    batches = chunk[lengths[chunk].argsort(stable=True)].view(-1, batch_size)
    order = torch.randperm(len(batches), generator=torch.Generator().manual_seed((seed * 7919 + epoch) * 1009 + p))
    return batches[order[j]]


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"device": str(device), "cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
