"""Vision Transformer (Dosovitskiy et al., 2020): patches -> tokens -> our TransformerEncoder -> class."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mllm.checkpoint import load_checkpoint, load_weights
from mllm.transformer import LearnedPositionalEncoding, TransformerEncoder

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel statistics of the CIFAR-10 training images
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class ViTConfig:
    image_size: int = 32
    patch_size: int = 4
    in_channels: int = 3
    num_classes: int = 10
    d_model: int = 192
    num_layers: int = 6
    num_heads: int = 3
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    fused: bool = True
    pool: str = "cls"  # "cls": classify from the class token; "mean": from the mean of all tokens
    stem: str = "patch"  # "patch": one linear map per patch; "conv": stride-2 3x3 convolutions (ConvStem)
    mean: tuple[float, ...] = CIFAR10_MEAN  # input normalisation, kept with the model and its checkpoints
    std: tuple[float, ...] = CIFAR10_STD


def check_patch_grid(x: Tensor, in_channels: int, p: int) -> None:
    """A clear error unless x is [B, in_channels, H, W] with H and W multiples of the patch size p."""
    b, c, h, w = x.shape
    if c != in_channels or h % p or w % p:
        raise ValueError(f"images must be [B, {in_channels}, H, W] with H and W multiples of the patch size {p}; "
                         f"got shape {tuple(x.shape)}")


class PatchEmbedding(nn.Module):
    """[B, C, H, W] -> [B, N, D]: cut into p x p patches, flatten each (C, p, p), project linearly.

    Equal to Conv2d(C, D, kernel_size=p, stride=p) with the same weights, written as reshape + matmul.
    """

    def __init__(self, patch_size: int, in_channels: int, d_model: int):
        super().__init__()
        self.patch_size, self.in_channels = patch_size, in_channels
        self.proj = nn.Linear(in_channels * patch_size * patch_size, d_model)

    def forward(self, x: Tensor) -> Tensor:  # self-contained: the `patches` exercise has the learner write it
        b, c, h, w = x.shape
        p = self.patch_size
        if c != self.in_channels or h % p or w % p:
            raise ValueError(f"images must be [B, {self.in_channels}, H, W] with H and W multiples of the patch "
                             f"size {p}; got shape {tuple(x.shape)}")
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)  # [B, H/p, W/p, C, p, p]
        return self.proj(patches.reshape(b, (h // p) * (w // p), c * p * p))


class ConvStem(nn.Module):
    """[B, C, H, W] -> [B, N, D] with N = (H/p) * (W/p), like PatchEmbedding, but through log2(p) stride-2 3x3
    convolutions (each with batch norm and ReLU, channels doubling up to D/2) and a 1x1 projection to D: the
    "early convolutions" stem of Xiao et al. (2021), which trains faster and sees local detail better than
    one linear map per patch. The patch size must be a power of two.
    """

    def __init__(self, patch_size: int, in_channels: int, d_model: int):
        super().__init__()
        steps = patch_size.bit_length() - 1
        if patch_size < 2 or patch_size != 2**steps:
            raise ValueError(f"stem 'conv' needs a patch size that is a power of two (2, 4, 8...), got {patch_size}")
        self.patch_size, self.in_channels = patch_size, in_channels
        layers: list[nn.Module] = []
        c_in = in_channels
        for i in range(steps):
            c_out = max(d_model // 2 ** (steps - i), 8)
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, d_model, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_patch_grid(x, self.in_channels, self.patch_size)
        return self.proj(self.convs(x)).flatten(2).transpose(1, 2)  # [B, D, H/p, W/p] -> [B, N, D]


class ViT(nn.Module):
    """images [B, C, S, S] -> class logits [B, num_classes] (and, on request, tokens [B, 1 + N, D])."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {cfg.pool!r}")
        if cfg.stem not in ("patch", "conv"):
            raise ValueError(f"stem must be 'patch' or 'conv', got {cfg.stem!r}")
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        self.cfg = cfg
        self.grid = cfg.image_size // cfg.patch_size
        stem = ConvStem if cfg.stem == "conv" else PatchEmbedding
        self.patch_embed = stem(cfg.patch_size, cfg.in_channels, cfg.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.pos = LearnedPositionalEncoding(cfg.d_model, 1 + self.grid**2, cfg.dropout)
        self.encoder = TransformerEncoder(cfg.num_layers, cfg.d_model, cfg.num_heads, int(cfg.mlp_ratio * cfg.d_model),
                                          cfg.dropout, fused=cfg.fused)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def config_dict(self) -> dict:
        return asdict(self.cfg)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 [B, H, W, C] -> the float [B, C, H, W] this model was trained on (scaled to 0..1, standardised)."""
        x = images.permute(0, 3, 1, 2).to(torch.float32) / 255  # a new tensor: the caller's is left as it was
        mean = torch.tensor(self.cfg.mean, device=x.device)[:, None, None]
        std = torch.tensor(self.cfg.std, device=x.device)[:, None, None]
        return (x - mean) / std

    def tokens(self, images: Tensor) -> Tensor:
        """[B, C, H, W] -> final-norm tokens [B, 1 + N, D]; index 0 is the class token, 1: the patches.

        Square images of another size (a multiple of the patch) are taken with the positional embeddings
        interpolated on the fly, as progressive-resizing training needs; at_image_size makes that permanent.
        """
        h, w = images.shape[-2:]
        if h != w:
            raise ValueError(f"this ViT takes square images, got {tuple(images.shape)}; crop or resize them first")
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if h == self.cfg.image_size:
            return self.encoder(self.pos(x))
        pos = resize_pos_embed(self.pos.weight, self.grid, h // self.cfg.patch_size)
        return self.encoder(self.pos.dropout(x + pos))

    def forward(self, images: Tensor, return_tokens: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        tokens = self.tokens(images)
        logits = self.head(tokens[:, 0] if self.cfg.pool == "cls" else tokens.mean(dim=1))
        return (logits, tokens) if return_tokens else logits

    def at_image_size(self, image_size: int) -> ViT:
        """A copy of this model for another image size, positional embeddings interpolated (2-D bicubic)."""
        return self.adapted(image_size)

    def adapted(self, image_size: int, patch_size: int | None = None) -> ViT:
        """A copy of this model for another image size and patch size.

        The positional embeddings of the patch grid are resized bicubically to the new grid; a new patch size
        resizes the patch-embedding kernel by its pseudo-inverse (`resize_patch_kernel`), so that a patch
        that is the bilinear resize of an old-size patch gets the token the old patch got. The same size and
        patch give a model equal to this one.
        """
        p = patch_size or self.cfg.patch_size
        if p != self.cfg.patch_size and self.cfg.stem != "patch":
            raise ValueError(f"a ViT with the {self.cfg.stem!r} stem keeps its patch size {self.cfg.patch_size} "
                             f"(asked for {p}); only the linear patch embedding can be resized")
        cfg = ViTConfig(**{**asdict(self.cfg), "image_size": image_size, "patch_size": p})
        model = ViT(cfg)
        state = self.state_dict()
        state["pos.weight"] = resize_pos_embed(state["pos.weight"], self.grid, model.grid)
        if p != self.cfg.patch_size:
            state["patch_embed.proj.weight"] = resize_patch_kernel(state["patch_embed.proj.weight"],
                                                                   self.cfg.patch_size, p, self.cfg.in_channels)
        model.load_state_dict(state)
        return model.train(self.training)  # in this model's mode (the conv stem's batch norm depends on it)


def resize_pos_embed(pos: Tensor, old_grid: int, new_grid: int) -> Tensor:
    """[1 + g*g, D] (class token first) -> [1 + G*G, D], the patch grid resized bicubically."""
    if old_grid == new_grid:
        return pos.clone()
    cls, grid = pos[:1], pos[1:]
    d = grid.shape[-1]
    grid = grid.reshape(1, old_grid, old_grid, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(new_grid * new_grid, d)], dim=0)


def resize_matrix(old: int, new: int) -> Tensor:
    """R [old*old, new*new]: row i is the bilinear resize to new x new of the i-th one-hot old x old patch, so
    a patch x (flattened) resizes to x @ R."""
    basis = torch.eye(old * old).reshape(old * old, 1, old, old)
    return F.interpolate(basis, size=(new, new), mode="bilinear", align_corners=False).reshape(old * old, new * new)


def resize_patch_kernel(weight: Tensor, old: int, new: int, channels: int) -> Tensor:
    """Patch-embedding weights [D, C*p*p] -> [D, C*P*P] by the pseudo-inverse resize of FlexiViT (Beyer et
    al. 2023): the new kernel w' solves R w' = w (least norm), so <x @ R, w'> = <x, w> for every old-size
    patch x: a bilinearly resized patch is embedded as the original was (exact when P >= p)."""
    d = weight.shape[0]
    r = resize_matrix(old, new).to(torch.float64)
    w = weight.reshape(d, channels, old * old).to(torch.float64) @ torch.linalg.pinv(r).T  # [D, C, P*P]
    return w.reshape(d, channels * new * new).to(weight.dtype)


def load_vit(path: str | Path, device: str | torch.device = "cpu", image_size: int | None = None
             ) -> tuple[ViT, list[str]]:
    """A trained ViT (eval mode) and its class names; at another `image_size` its positional embeddings are
    interpolated. Needs nothing from the training code: normalisation and classes travel in the checkpoint."""
    state = load_checkpoint(path, "vit", device)
    model = ViT(ViTConfig(**state["extra"]["model_config"]))
    load_weights(model, state["model"], state["path"])
    if image_size is not None and image_size != model.cfg.image_size:
        model = model.at_image_size(image_size)
    return model.to(device).eval(), state["extra"]["classes"]
