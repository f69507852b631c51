"""Sampling SCST's captions so that a batch split over processes samples exactly what one process would.

Each image draws its own uniforms [n, max_len] from a generator seeded by that image's seed (derived from
train.seed, the step and the image's row in the global batch), and each token is the inverse of the cumulative
sampling distribution at its uniform. A row's caption then depends only on its image, its seed and the model,
not on which process holds it or what else is in its batch: two processes with half the images each sample the
captions one process samples for all of them (tested equal; only a rounding difference of batched arithmetic at a
uniform right on a token's edge could tell them apart). The greedy captions can decode in the same batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mllm.language.decoding import filter_logits, real_token_mask


def image_uniforms(seeds: Tensor, n: int, max_len: int) -> Tensor:
    """seeds [B] -> uniforms [B*n, max_len] in (0, 1), image-major: rows b*n .. b*n + n - 1 from seeds[b]."""
    rows = [torch.rand(n, max_len, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64)
            for s in seeds.tolist()]
    return torch.cat(rows).clamp_min(1e-12)


def sampling_logits(logits: Tensor, temperature: float = 1.0, top_k: int = 0, banned: tuple[int, ...] = ()) -> Tensor:
    """logits [..., V] -> the logits of SCST's sampling distribution: the banned tokens removed, divided by the
    temperature, only the top_k most likely kept (0: all). Its log_softmax is the policy's log-probability."""
    x = logits.float()
    if banned:
        x = x.index_fill(-1, torch.tensor(banned, device=x.device), float("-inf"))
    x = x / temperature
    if top_k > 0:
        x = filter_logits(x.flatten(0, -2), top_k).view_as(x)
    return x


@torch.no_grad()
def sample_per_image(gpt, prefix: Tensor, seeds: Tensor, n: int, bos_id: int, eos_id: int, max_len: int,
                     temperature: float = 1.0, top_k: int = 0, banned: tuple[int, ...] = (),
                     bias: Tensor | None = None, greedy: bool = False) -> Tensor:
    """n captions of each of B images, tokens [B*n, L <= max_len] (image-major), each row up to its end token
    and end tokens after it. prefix [B, P, D]: the images' tokens; seeds [B]: one per image (`image_uniforms`);
    bias [B, V] or None: added to each image's logits at every step (grounded decoding's bias), before the ban, the
    temperature and top-k. With `greedy`, B more rows after those: each image's greedy caption (the most likely
    token each step, bias and ban included), decoded in the same batch (one pass a step instead of two loops); the
    samples are those drawn without them, up to the last bits of the batched arithmetic (equal in the tests; a long
    run drifts apart, as a rounding difference flips a token at a uniform on the edge now and then)."""
    if prefix.shape[1] + 1 + max_len > gpt.cfg.context:
        raise ValueError(f"prefix ({prefix.shape[1]}) + begin token + max_len ({max_len}) exceed the language "
                         f"model's context {gpt.cfg.context}; lower rl.max_len or raise model.text.context")
    device = prefix.device
    u = image_uniforms(seeds, n, max_len).to(device)
    images = torch.arange(prefix.shape[0], device=device)
    # the row's image: n sampled rows per image, then (with greedy) one greedy row per image
    rows_of = torch.cat([images.repeat_interleave(n)] + ([images] if greedy else []))
    sampled = prefix.shape[0] * n
    tokens = torch.full((len(rows_of), 1), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(len(rows_of), dtype=torch.bool, device=device)
    bias = 0.0 if bias is None else bias.float()[rows_of]
    # the image tokens and the begin token once per image, their cached keys and values then copied to its rows
    cache, logits = gpt.shared_prefix(prefix, rows_of, tokens[: prefix.shape[0]])
    for t in range(max_len):
        scores = sampling_logits(logits[:, -1] + bias, temperature, top_k, banned)
        probs = scores[:sampled].softmax(-1).double()
        cdf = probs.cumsum(-1)
        nxt = torch.searchsorted(cdf, u[:, t : t + 1] * cdf[:, -1:]).clamp_max(probs.shape[-1] - 1)
        nxt = torch.cat([nxt, scores[sampled:].argmax(-1, keepdim=True)])  # the greedy rows' most likely tokens
        nxt = torch.where(done[:, None], torch.full_like(nxt, eos_id), nxt)
        tokens = torch.cat([tokens, nxt], dim=1)
        done |= nxt[:, 0] == eos_id
        if bool(done.all()):
            break
        logits, _ = gpt(nxt, cache=cache, last_only=True)
    out = tokens[:, 1:]
    return out.masked_fill(~real_token_mask(out, eos_id), eos_id)
