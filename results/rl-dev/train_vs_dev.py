"""Greedy captions (grounding 1, as dev and test decode) of the supervised captioner and SCST seed 0 on the first
1,000 training images and the 1,000 dev images: the share that repeat one of the image's own references word for
word, and CIDEr-D with the SCST reward (training-set document frequencies). Output: train_vs_dev.md.

    python results/rl-dev/train_vs_dev.py
"""

import numpy as np
import torch

from mllm.data import prepare_flickr8k
from mllm.evaluation.tokenize import simple_tokenize
from mllm.multimodal.data import CaptionData
from mllm.multimodal.mllm import load_captioner
from mllm.rl.reward import CiderReward

for run in ["runs/mllm-cpu", "runs/rl-cpu-xe-s0"]:
    model, tok = load_captioner(run)
    data = prepare_flickr8k("data", None, image_size=model.vit.cfg.image_size)
    cap = CaptionData(data, tok, 24, 1000, 0)
    reward = CiderReward([data.captions_of(i) for i in range(len(data.images))], data.split_indices("train"))
    train = torch.from_numpy(data.split_indices("train")[:1000]).long()
    for name, images in (("train", train), ("dev", cap.val_images)):
        captions = cap.captions_for(model, images, "greedy", 24, 1, 0.0, grounding=1.0)
        own = [simple_tokenize(c) in {simple_tokenize(r) for r in data.captions_of(int(i))}
               for c, i in zip(captions, images, strict=True)]
        score = reward(captions, np.asarray(images)).mean()
        print(run, name, "greedy = one of its own references:", np.mean(own), "CIDEr-D (train df):", score.round(3))
