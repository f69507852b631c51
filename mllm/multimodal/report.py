"""The captioner's test report: standard metrics (greedy and beam), two baselines that need no training,
every test caption, a gallery. Written once, at the end of a run, with the weights chosen on dev."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mllm.evaluation.cider import CiderD  # noqa: E402
from mllm.evaluation.metrics import caption_metrics  # noqa: E402
from mllm.evaluation.tokenize import simple_tokenize  # noqa: E402
from mllm.io import atomic_write, atomic_write_json  # noqa: E402

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")


def most_frequent_caption(train_captions: list[str]) -> str:
    """The training caption that occurs most often (after tokenisation)."""
    counts = Counter(simple_tokenize(c) for c in train_captions)
    return counts.most_common(1)[0][0]


def consensus_caption(captions: list[str]) -> str:
    """Of an image's captions, the one with the highest CIDEr-D against the others."""
    tokens = [simple_tokenize(c).split() for c in captions]
    others = [[t for j, t in enumerate(tokens) if j != i] for i in range(len(tokens))]
    _, scores = CiderD(others).score(tokens, others)
    return captions[int(np.argmax(scores))]


@torch.no_grad()
def nearest_neighbour_captions(task, model, batch_size: int = 500) -> list[str]:
    """For each test image, the consensus caption of the closest training image (cosine of mean ViT features)."""
    device = next(model.parameters()).device

    def embed(indices: np.ndarray) -> torch.Tensor:
        parts = [model.patch_features(task.images[torch.from_numpy(indices[i : i + batch_size]).long()].to(device))
                 .mean(1) for i in range(0, len(indices), batch_size)]
        return F.normalize(torch.cat(parts).float(), dim=-1)

    train, test = task.split["train"], task.split["test"]
    nearest = (embed(test) @ embed(train).T).argmax(1).cpu().numpy()
    return [consensus_caption(task.data.captions_of(int(train[j]))) for j in nearest]


def gallery_figure(images: np.ndarray, captions: dict[str, list[str]], path: Path) -> None:
    """uint8 [N, S, S, 3] (what the model sees), each titled with its captions: {label: one caption per image}."""
    cols = 4
    rows = -(-len(images) // cols)
    lines = len(captions)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, (3.6 + 0.6 * lines) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes.flat, images, strict=False)):
        ax.imshow(image, interpolation="nearest")
        title = "\n".join(textwrap.fill(f"{label}: {texts[i]}", 50) for label, texts in captions.items())
        ax.set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| captioner | " + " | ".join(METRICS) + " | distinct captions |",
             "|---|" + "---|" * (len(METRICS) + 1)]
    for name, m in rows.items():
        cells = ["-" if m.get(k) is None else f"{m[k]:.3f}" for k in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m.get('distinct_candidates', '-')} |")
    return "\n".join(lines) + "\n"


def write_report(task, model, run_dir: Path, log) -> dict[str, Any]:
    """Score the test split; write metrics.json/.md, captions_test.json and gallery.png under run_dir."""
    data, test = task.data, task.split["test"]
    names = [str(data.names[i]) for i in test]
    refs = {n: data.captions_of(int(i)) for n, i in zip(names, test, strict=True)}
    greedy = task.captions_for(model, test, "greedy")
    beam = task.captions_for(model, test, "beam")
    frequent = most_frequent_caption([str(c) for c in data.captions[task.train_caps]])
    nearest = nearest_neighbour_captions(task, model)
    label = "blind captioner" if task.cfg.model.blind else "captioner"
    candidates = {f"{label}, greedy": greedy, f"{label}, beam {task.cfg.eval.beam_size}": beam,
                  "baseline: most frequent training caption": [frequent] * len(names),
                  "baseline: nearest neighbour (ViT features)": nearest}
    rows = {}
    for name, captions in candidates.items():
        rows[name] = caption_metrics(dict(zip(names, captions, strict=True)), refs)
        log(f"test {name}: " + "  ".join(f"{k} {rows[name][k]:.3f}" for k in METRICS if rows[name][k] is not None))
    atomic_write_json(run_dir / "metrics.json", rows)
    note = next(iter(rows.values()))["note"]
    table = f"# Flickr8k test split ({len(names)} images, 5 references each)\n\n{markdown_table(rows)}\n{note}\n"
    atomic_write(run_dir / "metrics.md", lambda f: f.write(table.encode()))
    atomic_write_json(run_dir / "captions_test.json", {n: {"greedy": g, "beam": b, "references": refs[n]}
                                                       for n, g, b in zip(names, greedy, beam, strict=True)})
    show = np.linspace(0, len(test) - 1, task.cfg.eval.gallery).astype(int)
    gallery_figure(data.images[test[show]], {"model": [beam[i] for i in show],
                                             "ref": [refs[names[i]][0] for i in show]}, run_dir / "gallery.png")
    return {"test": rows, "most_frequent_caption": frequent}
