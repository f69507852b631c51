"""Score a trained captioner's decoding settings on the dev split, exactly as the test report scores test.

    python scripts/dev_decode.py runs/mllm-dev-px64r4-s0 --beam 1 3 --length-penalty 0 0.5 1 [--out F.json]

Every combination of beam size (1: greedy), length penalty, grounding strength and no-repeat n-gram size decodes
the first --images dev images and is scored with `caption_metrics` (PTB tokenizer, BLEU, ROUGE-L, CIDEr-D; METEOR
off for speed) and `diagnose` (variety and object hallucination). A choice of decoding is made here, on dev; the
test split is never read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mllm.checkpoint import load_checkpoint
from mllm.data import prepare_flickr8k
from mllm.evaluation.metrics import caption_metrics
from mllm.multimodal.data import CaptionData
from mllm.multimodal.mllm import load_captioner
from mllm.multimodal.report import diagnose
from mllm.multimodal.train import CaptioningTask


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a captioner run folder (its best.pt) or a .pt file")
    p.add_argument("--beam", type=int, nargs="+", default=[1, 3], help="beam sizes; 1 is greedy (default 1 3)")
    p.add_argument("--length-penalty", type=float, nargs="+", default=[0.0], help="beam length penalties")
    p.add_argument("--grounding", type=float, nargs="+", default=[0.0],
                   help="grounded-decoding strengths (the model needs its grounding head; default 0: off)")
    p.add_argument("--no-repeat", type=int, nargs="+", default=[0],
                   help="n-gram sizes a caption may not repeat (0: off; default 0)")
    p.add_argument("--images", type=int, default=1000, help="first N dev images (default 1000, the whole split)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--mirror", default=None)
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_captioner(args.run)
    size = model.vit.cfg.image_size
    data = prepare_flickr8k(args.data_root, Path(args.mirror) if args.mirror else None, image_size=size)
    max_caption_len = load_checkpoint(args.run, "captioner")["config"]["model"]["max_caption_len"]
    captioning = CaptionData(data, tokenizer, max_caption_len, args.images, 0)
    images = captioning.val_images
    names = [str(data.names[i]) for i in images]
    refs = {n: data.captions_of(int(i)) for n, i in zip(names, images, strict=True)}
    train_captions = [str(c) for c in data.captions[captioning.train_caps]]
    if model.word_head is not None and not model.cfg.aux_word_ids:  # a run from before the ids were saved
        words, _ = CaptioningTask._grounding_targets(data, model.cfg.aux_words)
        model.cfg.aux_word_ids = tuple(tokenizer.stoi.get(w, tokenizer.unk_id) for w in words)
    rows = {}
    settings = [(b, lp, g, n) for b in args.beam for lp in ([0.0] if b == 1 else args.length_penalty)
                for g in args.grounding for n in args.no_repeat]
    for beam, penalty, grounding, no_repeat in settings:
        start = time.time()
        captions = captioning.captions_for(model, images, "greedy" if beam == 1 else "beam",
                                           model.decoding["max_len"], beam, penalty, grounding=grounding,
                                           no_repeat=no_repeat)
        row = caption_metrics(dict(zip(names, captions, strict=True)), refs, meteor=False)
        row.update(diagnose(captions, [refs[n] for n in names], train_captions))
        row["mean_words"] = float(np.mean([len(c.split()) for c in captions]))
        row["seconds"] = time.time() - start
        row.update(beam=beam, length_penalty=penalty, grounding=grounding, no_repeat=no_repeat)
        name = ("greedy" if beam == 1 else f"beam {beam}, length penalty {penalty:g}") + \
            (f", grounding {grounding:g}" if grounding else "") + (f", no repeat {no_repeat}" if no_repeat else "")
        rows[name] = row
        print(f"{name:32s} CIDEr-D {row['CIDEr-D']:.4f}  BLEU-4 {row['BLEU-4']:.4f}  words {row['mean_words']:.2f}"
              f"  distinct {row['distinct_candidates']}  halluc/caption {row['hallucination_per_caption']:.3f}"
              f"  ({row['seconds']:.0f} s)", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
