"""The captioner's test report: standard metrics (greedy and beam), two baselines that need no training,
every test caption, a gallery. Written once, at the end of a run, with the weights chosen on dev."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mllm.data.flickr8k import read_photos
from mllm.evaluation.cider import CiderD
from mllm.evaluation.diagnostics import caption_diagnostics, hallucination, human_hallucination
from mllm.evaluation.metrics import caption_metrics, meteor_session
from mllm.evaluation.tokenize import simple_tokenize
from mllm.io import atomic_write, atomic_write_json

from .figures import attention_figure, gallery_figure

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
HUMAN = "human: first reference vs the other four"
DIAGNOSTICS = {"hallucination_per_caption": "object hallucination, per caption",
               "hallucination_per_mention": "per mention", "distinct": "distinct captions",
               "top_share": "most common caption (share)", "vocabulary": "words used",
               "copied": "copied from training (share)", "bad_endings": "bad endings (share)"}


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

    train, test = task.split["train"], task.captioning.test_images
    nearest = (embed(test) @ embed(train).T).argmax(1).cpu().numpy()
    return [consensus_caption(task.data.captions_of(int(train[j]))) for j in nearest]


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| captioner | " + " | ".join(METRICS) + " | distinct captions |",
             "|---|" + "---|" * (len(METRICS) + 1)]
    for name, m in rows.items():
        cells = ["-" if m.get(k) is None else f"{m[k]:.3f}" for k in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {m.get('distinct_candidates', '-')} |")
    return "\n".join(lines) + "\n"


def diagnose(captions: list[str], refs: list[list[str]], train_captions: list[str]) -> dict:
    """Grounding and variety of one caption per image (`mllm.evaluation.diagnostics`), flat for metrics.json."""
    h = hallucination(captions, refs)
    return {"hallucination_per_caption": h["per_caption"], "hallucination_per_mention": h["per_mention"],
            "most_hallucinated": h["most_hallucinated"], **caption_diagnostics(captions, train_captions)}


def diagnostics_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| captions | " + " | ".join(DIAGNOSTICS.values()) + " |", "|---|" + "---|" * len(DIAGNOSTICS)]
    for name, m in rows.items():
        cells = [("-" if m.get(k) is None else f"{m[k]:.3f}" if isinstance(m[k], float) else str(m[k]))
                 for k in DIAGNOSTICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def attention_figures(task, model, image_indices: np.ndarray, photos: list[np.ndarray], run_dir: Path) -> list[str]:
    """attention_{k}.png: per-word attention maps of the greedy caption of each given dataset image, decoded as the
    report's greedy captions are (the run's eval.grounding and eval.no_repeat)."""
    if task.cfg.model.blind:
        return []
    device, out, settings = next(model.parameters()).device, [], task.decoding(model)
    for k, (index, photo) in enumerate(zip(image_indices.tolist(), photos, strict=True)):
        ids, att = model.generate(task.images[index][None].to(device), attention=True, **settings)
        words = task.tokenizer.decode(ids[0].cpu()).split()
        n = min(len(words) + 1, ids.shape[1])  # the words and the end token, if it came
        attention_figure(photo, task.data.images[index], (words + ["<end>"])[:n], att.maps[0, :, :n].cpu(),
                         run_dir / f"attention_{k}.png", f"{task.data.names[index]} (greedy): where each word looked")
        out.append(f"attention_{k}.png")
    return out


def write_report(task, model, run_dir: Path, log) -> dict[str, Any]:
    """Score the test split; write metrics.json/.md, captions_test.json, gallery.png and attention_*.png."""
    data, test = task.data, task.captioning.test_images
    names = [str(data.names[i]) for i in test]
    refs = {n: data.captions_of(int(i)) for n, i in zip(names, test, strict=True)}
    greedy = task.captions_for(model, test, "greedy")
    beam = task.captions_for(model, test, "beam")
    train_captions = [str(c) for c in data.captions[task.train_caps]]
    frequent = most_frequent_caption(train_captions)
    nearest = nearest_neighbour_captions(task, model)
    label = "blind captioner" if task.cfg.model.blind else "captioner"
    candidates = {f"{label}, greedy": greedy, f"{label}, beam {task.cfg.eval.beam_size}": beam,
                  "baseline: most frequent training caption": [frequent] * len(names),
                  "baseline: nearest neighbour (ViT features)": nearest}
    rows = {}
    with meteor_session():  # one METEOR process for every row
        for name, captions in candidates.items():
            rows[name] = caption_metrics(dict(zip(names, captions, strict=True)), refs)
            rows[name].update(diagnose(captions, [refs[n] for n in names], train_captions))
            log(f"test {name}: " + "  ".join(f"{k} {rows[name][k]:.3f}" for k in METRICS if rows[name][k] is not None)
                + f"  hallucination/caption {rows[name]['hallucination_per_caption']:.3f}")
        first = [refs[n][0] for n in names]  # people, as the model is judged: a caption against references
        rows[HUMAN] = caption_metrics(dict(zip(names, first, strict=True)), {n: refs[n][1:] for n in names})
        rows[HUMAN].update(diagnose(first, [refs[n][1:] for n in names], train_captions))
    human_all = human_hallucination([refs[n] for n in names])
    atomic_write_json(run_dir / "metrics.json", rows)
    note = next(iter(rows.values()))["note"]
    table = (f"# Flickr8k test split ({len(names)} images, 5 references each)\n\n{markdown_table(rows)}\n{note}\n\n"
             f"## Grounding and variety\n\n{diagnostics_table(rows)}\nObject hallucination of every reference "
             f"judged against its image's other four: {human_all['per_caption']:.3f} per caption, "
             f"{human_all['per_mention']:.3f} per mention.\n")
    atomic_write(run_dir / "metrics.md", lambda f: f.write(table.encode()))
    atomic_write_json(run_dir / "captions_test.json", {n: {"greedy": g, "beam": b, "references": refs[n]}
                                                       for n, g, b in zip(names, greedy, beam, strict=True)})
    show = np.linspace(0, len(test) - 1, task.cfg.eval.gallery).astype(int)
    photos = read_photos([names[i] for i in show], task.cfg.data.root,
                         Path(task.cfg.data.mirror) if task.cfg.data.mirror else None)
    gallery_figure(photos, data.images[test[show]], {"greedy": [greedy[i] for i in show],
                                                    f"beam {task.cfg.eval.beam_size}": [beam[i] for i in show],
                                                    "a reference": [refs[names[i]][0] for i in show]},
                   run_dir / "gallery.png")
    spread = np.linspace(0, len(show) - 1, min(4, len(show))).astype(int)
    maps = attention_figures(task, model, test[show[spread]], [photos[j] for j in spread], run_dir)
    return {"test": rows, "most_frequent_caption": frequent, "human_hallucination": human_all,
            "attention_figures": maps}
