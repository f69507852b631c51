"""The image-text alignment stage: its loss and retrieval metric against direct computations, its caption encoder,
`train-align` end to end on real Flickr8k data (tiny preset), and the captioner starting from its ViT."""

import json

import pytest
import torch
import torch.nn.functional as F

from mllm.cli import main
from mllm.multimodal.align import Aligner, AlignerConfig, BagOfWords, contrastive_loss, retrieval_recall
from mllm.multimodal.inits import vision_part

TINY_VIT = {"image_size": 16, "patch_size": 4, "d_model": 16, "num_layers": 1, "num_heads": 2, "mlp_ratio": 2.0}


def test_contrastive_loss_is_the_mean_of_both_directions():
    torch.manual_seed(0)
    logits = torch.randn(5, 5) * 3
    by_row = -sum(logits[i, i] - torch.logsumexp(logits[i], 0) for i in range(5)) / 5  # photo -> its caption
    by_col = -sum(logits[j, j] - torch.logsumexp(logits[:, j], 0) for j in range(5)) / 5  # caption -> its photo
    assert torch.allclose(contrastive_loss(logits), (by_row + by_col) / 2)
    assert contrastive_loss(torch.eye(4) * 50) < 1e-6  # every pair far above the rest: no loss
    assert torch.allclose(contrastive_loss(torch.zeros(4, 4)), torch.log(torch.tensor(4.0)))  # chance


def test_bag_of_words_is_the_mean_word_embedding_and_ignores_padding():
    torch.manual_seed(0)
    bag = BagOfWords(vocab_size=10, dim=8, bos_id=0, eos_id=1)
    short = torch.tensor([[0, 4, 5, 5, 1]])
    padded = torch.tensor([[0, 4, 5, 5, 1, 1, 1, 1]])
    expected = F.normalize(bag.proj(bag.norm(bag.embed.weight[[4, 5, 5]].mean(0))), dim=-1)
    assert torch.allclose(bag(short)[0], expected, atol=1e-6)
    assert torch.allclose(bag(padded), bag(short), atol=1e-6)
    assert torch.allclose(bag(torch.tensor([[5, 4, 5]])), bag(short), atol=1e-6)  # order is not seen


def test_retrieval_recall_on_a_hand_made_case():
    """Three photos, four captions (photo 0 has two). Photo 0's nearest caption is photo 1's, photo 1's and
    photo 2's are their own; caption 0 (photo 0's) is nearest to photo 1, the others to their own photo."""
    images = torch.eye(3)
    captions = torch.tensor([[0.6, 0.8, 0.0], [0.5, 0.0, 0.1], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    owner = torch.tensor([0, 0, 1, 2])
    r = retrieval_recall(images, captions, owner, ks=(1, 2))
    # photo 0's captions by score: 2 (0.9, photo 1), 0 (0.6, own) -> miss at 1, hit at 2
    assert r["i2t_r1"] == pytest.approx(2 / 3) and r["i2t_r2"] == 1.0
    # caption 0 -> photo 1 (0.8) before photo 0 (0.6); caption 1 -> photo 0; caption 2 -> photo 1; caption 3 -> 2
    assert r["t2i_r1"] == pytest.approx(3 / 4) and r["t2i_r2"] == 1.0


def test_aligner_logits_and_one_step_learns():
    torch.manual_seed(0)
    model = Aligner(AlignerConfig({**TINY_VIT}, vocab_size=12, bos_id=0, eos_id=1, dim=8))
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    captions = torch.tensor([[0, 2, 3, 1], [0, 4, 5, 1], [0, 6, 7, 1], [0, 8, 9, 1]])
    logits = model(images, captions)
    direct = (1 / 0.07) * model.embed_images(images) @ model.text(captions).T
    assert logits.shape == (4, 4) and torch.allclose(logits, direct, atol=1e-5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = contrastive_loss(model(images, captions))
    for _ in range(5):
        opt.zero_grad()
        contrastive_loss(model(images, captions)).backward()
        opt.step()
    assert contrastive_loss(model(images, captions)) < before


@pytest.fixture(scope="module")
def align_run(tmp_path_factory, mirror, data_root):
    run = tmp_path_factory.mktemp("align-tiny")
    assert main(["train-align", "--preset", "tiny", "--run-dir", str(run), "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "train.device=cpu"]) == 0
    return run


def test_train_align_tiny_end_to_end(align_run):
    summary = json.loads((align_run / "summary.json").read_text())
    recall = summary["dev_retrieval"]
    assert set(recall) == {f"{d}_r{k}" for d in ("i2t", "t2i") for k in (1, 5, 10)}
    assert all(0 <= v <= 1 for v in recall.values()) and summary["temperature"] > 0
    records = [json.loads(line) for line in (align_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_i2t_r5" in r] == [0, 3, 6]  # the start, then every 3 steps
    state = torch.load(align_run / "best.pt", weights_only=False)
    assert state["kind"] == "align" and state["extra"]["model_config"]["vision"]["image_size"] == 32
    assert (align_run / "retrieval.png").stat().st_size > 10_000 and (align_run / "curves.png").is_file()
    assert len(summary["examples"]) == 6 and all(len(e["nearest"]) == 3 for e in summary["examples"])


def test_align_batches_pair_each_photo_with_one_of_its_own_captions(mirror, data_root):
    """B different training photos, each with one of its five captions; the same step gives the same batch."""
    from mllm.data import prepare_flickr8k
    from mllm.multimodal.align import AlignTask
    from mllm.training.config import load_config

    cfg = load_config("align", "tiny")
    task = AlignTask(cfg, prepare_flickr8k(data_root, mirror, image_size=cfg.model.image_size))
    c = task.captioning
    images, captions = task.batch(1, 0)
    again, same = task.batch(1, 0)
    assert torch.equal(images, again) and torch.equal(captions, same)
    assert images.shape == (16, 32, 32, 3) and images.dtype == torch.uint8 and captions.shape == (16, 25)
    photos = c.image_batch(0, 16, cfg.train.seed)
    assert len(set(photos.tolist())) == 16 and set(c.split["train"]) >= set(photos.tolist())
    for photo, caption in zip(photos.tolist(), captions, strict=True):
        own, _ = c.reference_ids(torch.tensor([photo]))
        assert any(torch.equal(caption, c.captions[i]) for i in own.tolist())
    assert not torch.equal(task.batch(2, 0)[1], captions)


def test_captioner_starts_from_the_aligned_vit_and_the_report_says_so(align_run, tmp_path, mirror, data_root):
    """init.vision takes an align run: the captioner's ViT is the aligner's (frozen throughout: unchanged), and
    the report's captioner section gives the alignment's dev retrieval and figure."""
    import shutil

    from mllm.report import write_report

    runs = tmp_path / "runs"
    shutil.copytree(align_run, runs / "align-tiny")
    run = runs / "mllm-tiny"
    assert main(["train-mllm", "--preset", "tiny", "--run-dir", str(run), "--data-mirror", str(mirror),
                 "--data-root", str(data_root), "train.device=cpu", f"init.vision={runs / 'align-tiny'}",
                 "train.frozen_vision_until=1.0"]) == 0
    vit = vision_part(torch.load(align_run / "best.pt", weights_only=False))["model"]
    captioner = torch.load(run / "best.pt", weights_only=False)["model"]
    assert vit and all(torch.equal(captioner[f"vit.{k}"], v) for k, v in vit.items())
    recall = json.loads((align_run / "summary.json").read_text())["dev_retrieval"]
    report = write_report(runs, "tiny").read_text()
    assert f"5 nearest {recall['i2t_r5']:.3f} of the time" in report and "align-retrieval.png" in report
    assert "| ViT aligned with Flickr8k captions | dev photo -> caption R@5" in report
    (runs / "align-tiny" / "best.pt").write_bytes(b"another alignment run")  # not the one the captioner read
    assert "5 nearest" not in write_report(runs, "tiny").read_text()


def test_align_errors(tmp_path, mirror, data_root, capsys):
    torch.save({"kind": "gpt", "model": {}, "extra": {}}, tmp_path / "gpt.pt")

    def run(command: str, folder: str, *overrides: str) -> int:
        return main([command, "--preset", "tiny", "--data-mirror", str(mirror), "--data-root", str(data_root),
                     "--run-dir", str(tmp_path / folder), "train.device=cpu", *overrides])

    assert run("train-align", "a", f"init.vision={tmp_path / 'gpt.pt'}") == 2
    assert "holds a 'gpt' model, not a 'vit' one" in capsys.readouterr().err
    assert run("train-mllm", "b", f"init.vision={tmp_path / 'gpt.pt'}") == 2
    assert "holds a 'gpt' model, not one of 'align', 'vit'" in capsys.readouterr().err
    assert run("train-align", "c", "init.vision=runs/nowhere") == 2  # names the stage before it
    assert "init.vision=runs/nowhere: no such run or file; train it first (python main.py train-vit --preset cpu " \
           "writes runs/vit-cpu" in capsys.readouterr().err
    assert run("train-mllm", "d", "init.vision=runs/nowhere") == 2
    assert "train it first (python main.py train-align --preset cpu writes runs/align-cpu" in capsys.readouterr().err
    assert run("train-align", "e", "model.vision.stem=convolution") == 2
    assert "model.vision.stem must be one of patch, conv" in capsys.readouterr().err
    assert run("train-align", "f", "model.temperature=0") == 2
    assert "the temperature must be above 0" in capsys.readouterr().err
