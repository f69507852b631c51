"""SCST's decoding per step, timed in alternation: samples and greedy captions as rows of one batch (today) vs the
greedy captions decoded in a loop of their own before the samples (before). The cpu preset's captioner
(runs/mllm-cpu), 16 training images, 5 samples each, max_len 24; both sides checked to give the same captions.

    python results/rl-cpu-seeds/decode_bench.py [--rounds 20]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import Ratio, Side, alternate, machine, machine_text  # noqa: E402
from mllm.data import prepare_flickr8k  # noqa: E402
from mllm.language.decoding import decode  # noqa: E402
from mllm.multimodal.mllm import load_captioner  # noqa: E402
from mllm.rl.sampling import sample_per_image  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--rounds", type=int, default=20)
args = p.parse_args()
model, _ = load_captioner("runs/mllm-cpu")
data = prepare_flickr8k("data", None, image_size=model.vit.cfg.image_size)
train = torch.from_numpy(data.split_indices("train")[:16]).long()
with torch.no_grad():
    prefix = model.image_tokens(images=torch.from_numpy(data.images[train.numpy()]))
seeds, n, L = torch.arange(16) + 1009, 5, 24


@torch.no_grad()
def together():
    both = sample_per_image(model.gpt, prefix, seeds, n, model.bos_id, model.eos_id, L, banned=model.banned,
                            greedy=True)
    return both[: 16 * n], both[16 * n :]


@torch.no_grad()
def apart():
    greedy = decode(model.gpt, prefix, model.bos_id, model.eos_id, L, banned=model.banned)[0]
    return sample_per_image(model.gpt, prefix, seeds, n, model.bos_id, model.eos_id, L, banned=model.banned), greedy


(s1, g1), (s2, g2) = together(), apart()
assert torch.equal(s1[:, : s2.shape[1]], s2) and torch.equal(g1[:, : g2.shape[1]], g2), "captions differ"
a, b = Side("one batch", together, 16, "images"), Side("two loops", apart, 16, "images")
alternate([a, b], args.rounds, warmup=2)
r = Ratio("SCST decoding, 16 images x (5 samples + greedy)", a, b)
print(r.row(machine_text(machine())))
