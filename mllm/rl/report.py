"""SCST before/after on the Flickr8k test split: the supervised and the SCST model, greedy and beam, scored the
same way, each with its grounding and variety diagnostics (object hallucination, distinct captions, the most
common caption's share, words used, bad endings: `mllm.multimodal.report.diagnose`); the share of test captions
that changed; a gallery with both models' captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mllm.checkpoint import load_weights
from mllm.data.flickr8k import read_photos
from mllm.evaluation.metrics import caption_metrics, meteor_session
from mllm.io import atomic_write, atomic_write_json
from mllm.multimodal.mllm import Captioner, CaptionerConfig
from mllm.multimodal.report import METRICS, diagnose, diagnostics_table, gallery_figure, markdown_table


def write_rl_report(task, model, run_dir: Path, log) -> dict[str, Any]:
    """Write metrics.json/.md, captions_test.json and gallery.png (both models) under run_dir."""
    data, test, beam_size = task.data, task.captioning.test_images, task.cfg.eval.beam_size
    names = [str(data.names[i]) for i in test]
    refs = {n: data.captions_of(int(i)) for n, i in zip(names, test, strict=True)}
    device = next(model.parameters()).device
    supervised = Captioner(CaptionerConfig(**task.supervised["extra"]["model_config"]))
    load_weights(supervised, task.supervised["model"], task.supervised["path"])
    supervised = supervised.to(device).eval()
    captions = {}
    for who, m in (("supervised", supervised), ("SCST", model)):
        for strategy in ("greedy", "beam"):
            captions[(who, strategy)] = task.captions_for(m, test, strategy)
    rows = {}
    train_captions = [str(c) for c in data.captions[task.train_caps]]
    with meteor_session():  # one METEOR process for every row
        for (who, strategy), texts in captions.items():
            name = f"{who}, {'greedy' if strategy == 'greedy' else f'beam {beam_size}'}"
            rows[name] = caption_metrics(dict(zip(names, texts, strict=True)), refs)
            rows[name].update(diagnose(texts, [refs[n] for n in names], train_captions))
            log(f"test {name}: " + "  ".join(f"{k} {rows[name][k]:.3f}" for k in METRICS if rows[name][k] is not None)
                + f"  distinct {rows[name]['distinct']}  top share {rows[name]['top_share']:.3f}"
                + f"  hallucination/caption {rows[name]['hallucination_per_caption']:.3f}")
    changed = {s: float(np.mean([a != b for a, b in zip(captions[("supervised", s)], captions[("SCST", s)],
                                                        strict=True)])) for s in ("greedy", "beam")}
    before, after = rows[f"supervised, beam {beam_size}"], rows[f"SCST, beam {beam_size}"]
    relative = {k: after[k] / before[k] - 1 for k in ("CIDEr-D", "BLEU-4") if before[k]}
    summary = {"test": rows, "changed": changed, "relative_change_beam": relative}
    atomic_write_json(run_dir / "metrics.json", summary)
    note = next(iter(rows.values()))["note"]
    text = (f"# SCST before/after, Flickr8k test split ({len(names)} images, 5 references each)\n\n"
            f"{markdown_table(rows)}\n"
            f"Test captions that changed: {changed['greedy']:.1%} greedy, {changed['beam']:.1%} beam {beam_size}. "
            f"Beam {beam_size}, SCST vs supervised: " + ", ".join(f"{k} {v:+.1%}" for k, v in relative.items())
            + f".\n\n{note}\n\n## Grounding and variety\n\n{diagnostics_table(rows)}")
    atomic_write(run_dir / "metrics.md", lambda f: f.write(text.encode()))
    atomic_write_json(run_dir / "captions_test.json", {
        n: {"supervised": {s: captions[("supervised", s)][i] for s in ("greedy", "beam")},
            "SCST": {s: captions[("SCST", s)][i] for s in ("greedy", "beam")}, "references": refs[n]}
        for i, n in enumerate(names)})
    show = np.linspace(0, len(test) - 1, task.cfg.eval.gallery).astype(int)
    photos = read_photos([names[i] for i in show], task.cfg.data.root,
                         Path(task.cfg.data.mirror) if task.cfg.data.mirror else None)
    gallery_figure(photos, data.images[test[show]], {"supervised": [captions[("supervised", "beam")][i] for i in show],
                                                     "SCST": [captions[("SCST", "beam")][i] for i in show],
                                                     "ref": [refs[names[i]][0] for i in show]}, run_dir / "gallery.png")
    return summary
