"""Train the ViT on CIFAR-10 with the shared loop: batch-tensor augmentation, a held-out validation split.

Each epoch is evaluated on `data.val_size` training images held out (stratified); `best.pt` is chosen on
them, and the test set is scored once, at the end, with the chosen weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllm.data import Cifar10
from mllm.data.augment import random_crop, random_flip
from mllm.data.split import stratified_split
from mllm.io import atomic_write_json
from mllm.training.config import Config, ConfigError
from mllm.training.loop import Task
from mllm.training.runtime import epoch_indices, step_generator

from .analysis import attention_rollout_figure, confusion_figure, prediction_figure
from .vit import ViT, ViTConfig


class ImageClassificationTask(Task):
    kind = "vit"
    eval_metrics = ("val_loss", "val_accuracy")

    def __init__(self, cfg: Config, data: Cifar10):
        self.cfg, self.data = cfg, data
        train, val = stratified_split(data.y_train, cfg.data.val_size, cfg.data.val_seed)
        x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        self.x_train, self.y_train, self.x_val, self.y_val = x[train], y[train], x[val], y[val]
        self.x_test, self.y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
        self.model = ViT(ViTConfig(num_classes=len(data.classes), **cfg.model))
        t = cfg.train
        self.steps_per_epoch = len(self.x_train) // (t.batch_size * t.grad_accum)
        if t.epochs > 0:  # the schedule in epochs; evaluate once an epoch
            steps = t.epochs * self.steps_per_epoch
            if t.max_steps not in (0, steps) or t.eval_interval not in (0, self.steps_per_epoch):
                raise ConfigError(f"train.epochs={t.epochs} sets max_steps ({steps}) and eval_interval (one epoch, "
                                  f"{self.steps_per_epoch} steps); got train.max_steps={t.max_steps}, "
                                  f"train.eval_interval={t.eval_interval}: leave them at 0, or set train.epochs=0 "
                                  f"to give steps instead")
            t.max_steps, t.eval_interval = steps, self.steps_per_epoch
        low, m = cfg.augment.low_res_size, cfg.model
        if low and (low % m.patch_size or not 0 < low < m.image_size):
            raise ValueError(f"augment.low_res_size {low} must be a multiple of model.patch_size {m.patch_size} "
                             f"below model.image_size {m.image_size} (or 0 to train at full size throughout)")
        self.low_res_steps = int(cfg.augment.low_res_until * t.max_steps) if low else 0  # steps 1..this are small

    def batch(self, step: int, micro: int) -> tuple[Tensor, Tensor]:
        t, a = self.cfg.train, self.cfg.augment
        idx = epoch_indices(len(self.x_train), t.batch_size, (step - 1) * t.grad_accum + micro, t.seed)
        g = step_generator(t.seed, step, micro)
        x = self.model.normalize(self.x_train[idx])
        if a.crop_padding > 0:
            x = random_crop(x, a.crop_padding, g)
        if a.flip:
            x = random_flip(x, g)
        if step <= self.low_res_steps:  # progressive resizing: cheaper early steps
            x = F.interpolate(x, size=a.low_res_size, mode="bilinear", antialias=True, align_corners=False)
        y = F.one_hot(self.y_train[idx], len(self.data.classes)).float()
        if a.mixup_alpha > 0:  # mix each image with a shuffled partner, labels alike
            lam = torch.distributions.Beta(a.mixup_alpha, a.mixup_alpha).sample().item()
            perm = torch.randperm(x.shape[0], generator=g)
            x, y = lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]
        return x, y

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y, label_smoothing=self.cfg.augment.label_smoothing)

    @torch.no_grad()
    def predict(self, model: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
        """uint8 [N, H, W, C] -> logits [N, classes]"""
        device = next(model.parameters()).device
        return torch.cat([model(model.normalize(images[i : i + batch_size].to(device))).float().cpu()
                          for i in range(0, len(images), batch_size)])

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        logits = self.predict(model, self.x_val)
        return {"val_loss": F.cross_entropy(logits, self.y_val).item(),
                "val_accuracy": (logits.argmax(1) == self.y_val).float().mean().item()}

    def finish(self, model: nn.Module, run_dir: Path, log) -> dict[str, Any]:
        logits = self.predict(model, self.x_test)
        pred = logits.argmax(1)
        classes = list(self.data.classes)
        confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
        confusion.index_put_((self.y_test, pred), torch.ones_like(pred), accumulate=True)
        per_class = (confusion.diag() / confusion.sum(1)).tolist()
        accuracy = (pred == self.y_test).float().mean().item()
        confusion_figure(confusion, classes, run_dir / "confusion.png")
        sample = torch.arange(0, len(self.x_test), len(self.x_test) // 8)[:8]
        attention_rollout_figure(model, model.normalize(self.x_test[sample]), self.x_test[sample],
                                 [classes[i] for i in pred[sample]], run_dir / "attention.png")
        probs = logits[sample].softmax(-1)
        prediction_figure(self.x_test[sample], probs, self.y_test[sample], classes, run_dir / "predictions.png")
        atomic_write_json(run_dir / "per_class_accuracy.json", dict(zip(classes, per_class, strict=True)))
        log(f"test accuracy {accuracy:.4f} ({len(self.x_test)} images, scored once with the weights chosen on "
            f"{len(self.x_val)} held-out training images); per class: "
            + ", ".join(f"{c} {a:.2f}" for c, a in zip(classes, per_class, strict=True)))
        val = self.evaluate(model)
        return {**val, "test_accuracy": accuracy, "test_loss": F.cross_entropy(logits, self.y_test).item(),
                "train_images": len(self.x_train), "val_images": len(self.x_val),
                "per_class_accuracy": dict(zip(classes, per_class, strict=True))}

    def curve_marks(self) -> dict[int, str]:
        size = self.cfg.augment.low_res_size
        return {self.low_res_steps: f"{size}px before, full size after"} if self.low_res_steps else {}

    def extra_state(self) -> dict[str, Any]:
        return {"model_config": self.model.config_dict(), "classes": list(self.data.classes)}

