"""Train the char-level GPT on Tiny Shakespeare with the shared loop; evaluate on the whole val split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mllm.data import Shakespeare
from mllm.io import atomic_write, atomic_write_json
from mllm.training.config import Config
from mllm.training.loop import Task
from mllm.training.runtime import step_generator

from .gpt import GPT, GPTConfig
from .style import comparison_markdown, source_excerpts, vocabulary
from .tokenizer import CharTokenizer


def windows(ids: Tensor, context: int) -> tuple[Tensor, Tensor]:
    """Cut ids [N] into consecutive windows: inputs [W, context] and next-char targets [W, context].

    The last, shorter window is padded with target -100 so every position of the split is counted once.
    """
    n = ids.numel() - 1
    w = -(-n // context)
    x = torch.zeros(w * context, dtype=torch.long)
    y = torch.full((w * context,), -100, dtype=torch.long)
    x[:n], y[:n] = ids[:-1], ids[1:]
    return x.view(w, context), y.view(w, context)


@torch.no_grad()
def mean_loss(model: GPT, ids: Tensor, context: int, batch_size: int = 64) -> float:
    """Mean cross-entropy (nats per character) over every position of `ids`."""
    device = next(model.parameters()).device
    x, y = windows(ids, context)
    total, count = 0.0, 0
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
        logits, _ = model(xb)
        total += nn.functional.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(), ignore_index=-100,
                                             reduction="sum").item()
        count += int((yb != -100).sum())
    return total / count


class LanguageModelTask(Task):
    kind = "gpt"
    eval_metrics = ("val_loss",)

    def __init__(self, cfg: Config, data: Shakespeare):
        self.cfg, self.data = cfg, data
        self.tokenizer = CharTokenizer(data.chars)
        self.train_ids = self.tokenizer.encode_tensor(data.train)
        self.val_ids = self.tokenizer.encode_tensor(data.val)
        self.model = GPT(GPTConfig(vocab_size=self.tokenizer.vocab_size, **cfg.model))
        self.context = cfg.model.context

    def batch(self, step: int, micro: int) -> tuple[Tensor, Tensor]:
        """batch_size random windows of the training text: inputs [B, T] and targets [B, T]."""
        g = step_generator(self.cfg.train.seed, step, micro)
        starts = torch.randint(0, self.train_ids.numel() - self.context - 1, (self.cfg.train.batch_size,), generator=g)
        idx = starts[:, None] + torch.arange(self.context + 1)
        chunk = self.train_ids[idx]
        return chunk[:, :-1], chunk[:, 1:]

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        return model(batch[0], targets=batch[1])[1]

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"val_loss": mean_loss(model, self.val_ids, self.context)}

    def sample(self, model: GPT, n: int, length: int, seed: int, prompt: str = "\n") -> list[str]:
        s = self.cfg.sample
        device = next(model.parameters()).device
        idx = self.tokenizer.encode_tensor(prompt)[None].repeat(n, 1).to(device)
        g = torch.Generator().manual_seed(seed)
        out = model.generate(idx, length, s.temperature, s.top_k, s.top_p, generator=g)
        return [self.tokenizer.decode(row[len(prompt):]) for row in out]

    def on_eval(self, model: nn.Module, step: int, run_dir: Path, log) -> None:
        text = self.sample(model, 1, self.cfg.sample.eval_length, seed=step)[0]
        log(f"--- sample at step {step} ---\n{text}\n---")
        with open(run_dir / "samples_during_training.txt", "a") as f:
            f.write(f"=== step {step} ===\n{text}\n\n")

    def finish(self, model: nn.Module, run_dir: Path, log) -> dict[str, Any]:
        s = self.cfg.sample
        samples = self.sample(model, s.report_samples, s.report_length, seed=self.cfg.train.seed)
        excerpts = source_excerpts(self.data.train, s.report_samples, s.report_length, seed=self.cfg.train.seed)
        report, stats = comparison_markdown(samples, excerpts, vocabulary(self.data.train))
        atomic_write(run_dir / "samples.md", lambda f: f.write(report.encode()))
        atomic_write_json(run_dir / "style.json", stats)
        val = mean_loss(model, self.val_ids, self.context)
        log(f"final val_loss {val:.4f} (whole val split, windows of {self.context}); samples in {run_dir}/samples.md")
        return {"val_loss": val, "style": stats}

    def extra_state(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.state_dict(), "model_config": self.model.config_dict()}

