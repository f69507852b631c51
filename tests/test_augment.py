"""Batch augmentation: crop and flip change each image exactly as drawn from the generator."""

import torch

from mllm.data.augment import random_crop, random_flip

# ---- batch augmentation -----------------------------------------------------------------------

def test_random_crop_takes_the_drawn_window_of_the_zero_padded_image():
    b, pad = 16, 2
    x = torch.arange(1, b * 3 * 8 * 6 + 1, dtype=torch.float32).view(b, 3, 8, 6)  # no zeros: padding shows
    out = random_crop(x, pad, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)  # the same draws: dy for every image, then dx
    dy = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=g).flatten().tolist()
    dx = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=g).flatten().tolist()
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(b):
        padded = torch.nn.functional.pad(x[i], (pad,) * 4)
        assert torch.equal(out[i], padded[:, dy[i]:dy[i] + 8, dx[i]:dx[i] + 6]), i
    offsets = set(zip(dy, dx, strict=True))
    assert len(offsets) >= 4 and len(set(dy)) >= 2 and len(set(dx)) >= 2
    assert any(d != pad for d in dy) and any(d != pad for d in dx)  # some windows really reach into the padding
    assert (out == 0).any()


def test_random_flip_mirrors_exactly_the_drawn_images_left_right():
    b = 16
    x = torch.arange(b * 3 * 5 * 7, dtype=torch.float32).view(b, 3, 5, 7)
    out = random_flip(x, torch.Generator().manual_seed(1))
    flip = (torch.rand(b, generator=torch.Generator().manual_seed(1)) < 0.5).tolist()
    assert 0 < sum(flip) < b  # both kinds occur
    for i in range(b):
        assert torch.equal(out[i], x[i].flip(-1) if flip[i] else x[i]), i
        assert flip[i] == (not torch.equal(out[i], x[i]))
    assert torch.equal(out[flip.index(True), 0, 0], x[flip.index(True), 0, 0].flip(0))  # the row, reversed


def test_crop_then_flip_share_one_generator():
    # As the ViT batch uses them: one generator, crop's draws first, then flip's.
    b, pad = 16, 3
    x = torch.randn(b, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(2)
    out = random_flip(random_crop(x, pad, g), g)
    r = torch.Generator().manual_seed(2)
    dy = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=r).flatten().tolist()
    dx = torch.randint(0, 2 * pad + 1, (b, 1, 1), generator=r).flatten().tolist()
    flip = (torch.rand(b, generator=r) < 0.5).tolist()
    assert 0 < sum(flip) < b and len(set(zip(dy, dx, strict=True))) >= 2
    for i in range(b):
        window = torch.nn.functional.pad(x[i], (pad,) * 4)[:, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        assert torch.equal(out[i], window.flip(-1) if flip[i] else window), i
