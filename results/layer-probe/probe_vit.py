"""The retrieval probe of probe.py for a ViT checkpoint that no captioner has read yet.

    PYTHONPATH=results/layer-probe python results/layer-probe/probe_vit.py runs/vit-conv [MIRROR] > OUT.md

The ViT is adapted to 64x64 as the cpu captioner adapts it; the tokenizer (needed only to build the dev scorer) is
the kept cpu captioner's, runs/mllm-cpu.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from probe import probe

from mllm.data import prepare_flickr8k
from mllm.multimodal.data import CaptionData
from mllm.multimodal.mllm import load_captioner
from mllm.vision.vit import load_vit


def main() -> None:
    start = time.time()
    vit, _ = load_vit(sys.argv[1], image_size=64)
    _, tokenizer = load_captioner("runs/mllm-cpu")
    data = prepare_flickr8k("data", Path(sys.argv[2]) if len(sys.argv) > 2 else None, image_size=64)
    probe(vit, data, CaptionData(data, tokenizer, 24, 1000, 0))
    print(f"\n{time.time() - start:.0f} s on {torch.get_num_threads()} threads, ViT {sys.argv[1]}")


if __name__ == "__main__":
    main()
