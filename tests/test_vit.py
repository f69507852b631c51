import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mllm.cli import main
from mllm.vision.analysis import attention_rollout, attention_weights
from mllm.vision.vit import ConvStem, PatchEmbedding, ViT, ViTConfig


def _tiny(image_size=32, **kw) -> ViT:
    torch.manual_seed(0)
    return ViT(ViTConfig(image_size=image_size, patch_size=4, d_model=32, num_layers=2, num_heads=2, **kw))


def test_patch_embedding_equals_strided_conv():
    embed = PatchEmbedding(4, 3, 16)
    conv = nn.Conv2d(3, 16, kernel_size=4, stride=4)
    with torch.no_grad():
        conv.weight.copy_(embed.proj.weight.view(16, 3, 4, 4))
        conv.bias.copy_(embed.proj.bias)
    x = torch.randn(2, 3, 32, 24)
    expected = conv(x).flatten(2).transpose(1, 2)  # [B, N, D], patches in row-major order
    torch.testing.assert_close(embed(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"multiples of the patch size 4; got shape \(2, 3, 30, 30\)"):
        embed(torch.randn(2, 3, 30, 30))


def test_conv_stem_equals_its_convolutions_by_hand():
    torch.manual_seed(0)
    stem = ConvStem(4, 3, 16).eval()  # two stride-2 3x3 convolutions (3 -> 4 -> 8 channels), then 1x1 to 16
    with torch.no_grad():  # running statistics that are not the identity, so that eval-mode batch norm matters
        for bn in (stem.convs[1], stem.convs[4]):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 2)
    x = torch.randn(2, 3, 32, 24)
    h = x
    for conv, bn in ((stem.convs[0], stem.convs[1]), (stem.convs[3], stem.convs[4])):
        h = nn.functional.conv2d(h, conv.weight, stride=2, padding=1)
        h = (h - bn.running_mean[:, None, None]) / (bn.running_var[:, None, None] + bn.eps).sqrt()
        h = (h * bn.weight[:, None, None] + bn.bias[:, None, None]).clamp(min=0)
    expected = nn.functional.conv2d(h, stem.proj.weight, stem.proj.bias).flatten(2).transpose(1, 2)
    assert stem(x).shape == (2, 8 * 6, 16)  # one token per 4x4 patch, in row-major order as PatchEmbedding's
    torch.testing.assert_close(stem(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"multiples of the patch size 4; got shape \(2, 3, 30, 30\)"):
        stem(torch.randn(2, 3, 30, 30))
    with pytest.raises(ValueError, match="power of two"):
        ConvStem(6, 3, 16)


@pytest.mark.parametrize("stem", ["patch", "conv"])
@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("size", [32, 64, 96])
def test_shapes_at_several_image_sizes(size, pool, stem):
    model = _tiny(size, pool=pool, stem=stem)
    logits, tokens = model(torch.randn(2, 3, size, size), return_tokens=True)
    assert logits.shape == (2, 10)
    assert tokens.shape == (2, 1 + (size // 4) ** 2, 32)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="pool must be 'cls' or 'mean'"):
        _tiny(pool="max")
    with pytest.raises(ValueError, match="image_size 30 is not a multiple of patch_size 4"):
        _tiny(30)
    with pytest.raises(ValueError, match="stem must be 'patch' or 'conv'"):
        _tiny(stem="resnet")
    with pytest.raises(ValueError, match="keeps its patch size 4"):
        _tiny(stem="conv").adapted(64, 8)


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_other_sizes_interpolate_on_the_fly_as_at_image_size_does(stem):
    model = _tiny(32, stem=stem).eval()
    for size in (16, 24, 48):
        x = torch.randn(2, 3, size, size)
        torch.testing.assert_close(model(x), model.at_image_size(size).eval()(x))
    with pytest.raises(ValueError, match="square images"):
        model(torch.randn(1, 3, 32, 24))


def test_positional_interpolation_keeps_the_grid_orientation():
    model = _tiny(32).eval()
    with torch.no_grad():  # patch (row r, column c), channel d: r * (d + 1); the class token's: its own values
        rows = torch.arange(8.0)[:, None, None] * torch.arange(1.0, 33.0)  # [8, 1, 32]
        model.pos.weight[1:] = rows.expand(8, 8, 32).reshape(64, 32)
        model.pos.weight[0] = torch.linspace(-5, 5, 32)
    big = model.at_image_size(64)
    assert big.pos.weight.shape == (1 + 16 * 16, 32)
    assert torch.equal(big.pos.weight[0], torch.linspace(-5, 5, 32))  # the class token's is kept
    grid = big.pos.weight[1:].detach().view(16, 16, 32)
    ramp = grid[:, :1, :1]  # [16, 1, 1]: channel 0 of column 0
    torch.testing.assert_close(grid, ramp * torch.arange(1.0, 33.0).expand(16, 16, 32))  # constant along columns
    assert (ramp.diff(dim=0) > 0.1).all(), ramp.flatten()  # rising along rows
    assert ramp[0] < 0.5 and ramp[-1] > 6.5  # spanning the old rows 0..7
    same = model.at_image_size(32)
    assert torch.equal(same.pos.weight, model.pos.weight)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(same.eval()(x), model(x))


def test_attention_rollout_is_a_distribution_over_patches():
    model = _tiny().eval()
    weights = attention_weights(model, torch.randn(2, 3, 32, 32))
    assert len(weights) == 2 and weights[0].shape == (2, 2, 65, 65)
    rollout = attention_rollout(weights)
    assert rollout.shape == (2, 64) and (rollout > 0).all() and (rollout.sum(-1) <= 1).all()


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_tiny_vit_overfits_one_batch(stem):
    model = _tiny(stem=stem)
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory, mirror, data_root):
    run = tmp_path_factory.mktemp("vit-tiny")
    assert main(["train-vit", "--preset", "tiny", "--run-dir", str(run), "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "train.device=cpu"]) == 0
    return run


def test_train_vit_tiny_writes_the_outputs(vit_run):
    for name in ("summary.json", "curves.png", "confusion.png", "attention.png", "predictions.png",
                 "per_class_accuracy.json", "best.pt"):
        assert (vit_run / name).is_file(), name


def test_predict_on_files_and_indices(vit_run, tmp_path, mirror, data_root, capsys):
    image = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8), mode="L").save(image)
    assert main(["predict", str(vit_run), "--image", str(image), "--index", "0", "7", "--top-k", "2",
                 "--data-mirror", str(mirror), "--data-root", str(data_root)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(str(image)) and "(true:" in lines[1]

    assert main(["predict", str(vit_run), "--image", str(tmp_path / "none.png")]) == 2
    assert "no image file at" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["predict", str(vit_run), "--image", str(tmp_path / "bad.png")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_load_vit_at_another_size(vit_run):
    from mllm.vision.vit import load_vit

    model, classes = load_vit(vit_run, image_size=64)
    assert model.cfg.image_size == 64 and len(classes) == 10
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_predict_refuses_a_checkpoint_of_another_kind(tmp_path, capsys):
    torch.save({"kind": "gpt", "model": {}}, tmp_path / "best.pt")
    assert main(["predict", str(tmp_path), "--index", "0"]) == 2
    assert "holds a 'gpt' model, not a 'vit' one" in capsys.readouterr().err


def test_progressive_resizing_trains_small_first_then_full_size(mirror, data_root):
    from mllm.data import prepare_cifar10
    from mllm.training.config import load_config
    from mllm.vision.train import ImageClassificationTask

    data = prepare_cifar10(data_root, mirror)
    cfg = load_config("vit", "tiny", ["train.max_steps=10", "augment.low_res_size=16", "augment.low_res_until=0.5"])
    task = ImageClassificationTask(cfg, data)
    assert [task.batch(step, 0)[0].shape[-1] for step in (1, 5, 6, 10)] == [16, 16, 32, 32]
    assert torch.isfinite(task.loss(task.model, task.batch(1, 0)))
    assert task.curve_marks() == {5: "16px before, full size after"}
    with pytest.raises(ValueError, match="low_res_size 18 must be a multiple of model.patch_size 4"):
        ImageClassificationTask(load_config("vit", "tiny", ["augment.low_res_size=18"]), data)


def test_stratified_split_is_exact_disjoint_and_fixed_by_its_seed():
    from mllm.data import DataError
    from mllm.data.split import stratified_split

    labels = np.repeat([0, 1, 2], [600, 300, 100])
    train, val = stratified_split(labels, 100, seed=3)
    assert np.bincount(labels[val]).tolist() == [60, 30, 10]
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 1000
    again, val_again = stratified_split(labels, 100, seed=3)
    assert np.array_equal(val, val_again) and not np.array_equal(val, stratified_split(labels, 100, seed=4)[1])
    assert np.bincount(labels[stratified_split(labels, 7)[1]]).sum() == 7
    with pytest.raises(DataError, match="val_size 0 must be between 1 and 999"):
        stratified_split(labels, 0)


def test_the_vit_evaluates_and_selects_on_held_out_training_images(mirror, data_root, monkeypatch):
    from mllm.data import prepare_cifar10
    from mllm.training.config import load_config
    from mllm.vision.train import ImageClassificationTask

    data = prepare_cifar10(data_root, mirror)
    task = ImageClassificationTask(load_config("vit", "tiny"), data)
    assert (len(task.x_train), len(task.x_val)) == (45000, 5000)
    assert np.bincount(task.y_val.numpy()).tolist() == [500] * 10
    train_rows = {bytes(x) for x in task.x_train[:, ::4, ::4].numpy()}  # no val image among the training ones
    assert sum(bytes(x) in train_rows for x in task.x_val[:, ::4, ::4].numpy()) < 5  # (CIFAR has few duplicates)
    seen = []
    original = task.predict
    monkeypatch.setattr(task, "predict", lambda model, images: seen.append(images) or original(model, images))
    metrics = task.evaluate(task.model.eval())
    assert set(metrics) == set(task.eval_metrics) == {"val_loss", "val_accuracy"}
    assert seen[0] is task.x_val


def test_normalize_leaves_its_input_alone():
    model = _tiny()
    images = torch.rand(2, 32, 32, 3) * 255
    before = images.clone()
    model.normalize(images)
    assert torch.equal(images, before)
