"""Self-critical sequence training (Rennie et al., 2017) as a loss: REINFORCE with a baseline.

For an image with n sampled captions w^1..w^n (each up to and including its end token):

    advantage_i = R(w^i) - b_i
    loss        = - sum_i [ advantage_i * sum_t log p(w^i_t | w^i_<t, image)  +  beta * sum_t H_t(w^i) ]

summed over the samples and returned with their number, so the loop averages it per sample (every caption
weighs the same, whatever its length). b_i is the reward of the greedy caption of the same image (the
self-critical baseline: a sample is pushed up only if it beats what the model does at test time) or the mean
reward of the image's other n - 1 samples. H_t is the entropy of the sampling distribution at step t; beta > 0
rewards keeping the captions varied. The advantage is a constant: no gradient flows through the reward.

Options (`mllm.rl.train`, configs/rl.yaml): R may add rl.diversity_bonus x the sample's n-gram novelty among its
image's other samples (`reward.ngram_novelty`); the samples may come from the top-k of the distribution
(rl.top_k; logp and H are then of that truncated, renormalised distribution, the policy that was sampled); and
rl.xe_weight adds the supervised cross-entropy of the image's reference captions (`reference_xe`). With rl.grounded,
the policy is softmax((logits + the grounding bias) / temperature), and logp and H are of that distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mllm.language.decoding import logprobs_of, real_token_mask

from .sampling import sampling_logits

BASELINES = ("greedy", "mean")


def baseline_rewards(sample_rewards: Tensor, greedy_rewards: Tensor, n: int, kind: str = "greedy") -> Tensor:
    """b [B*n] for rewards of B*n samples (image-major: n per image) given the greedy rewards [B]."""
    if kind == "greedy":
        return greedy_rewards.repeat_interleave(n)
    if kind == "mean":
        if n < 2:
            raise ValueError("the 'mean' baseline needs at least 2 samples per image (rl.samples)")
        per_image = sample_rewards.view(-1, n)
        return ((per_image.sum(1, keepdim=True) - per_image) / (n - 1)).flatten()
    raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {kind!r}")


def scst_loss(logp: Tensor, mask: Tensor, advantage: Tensor, entropy: Tensor | None = None,
              entropy_bonus: float = 0.0) -> tuple[Tensor, int]:
    """logp, mask, entropy [N, L] of N sampled captions (0 past each end), advantage [N] ->
    (summed loss over the samples, N). See the module docstring for the formula."""
    total = -(advantage.detach() * (logp * mask).sum(1)).sum()
    if entropy_bonus and entropy is not None:
        total = total - entropy_bonus * (entropy * mask).sum()
    return total, logp.shape[0]


def reference_xe(logits: Tensor, targets: Tensor, owner: Tensor, samples: int) -> tuple[Tensor, Tensor]:
    """The supervised term: logits [R, T, V] of R reference captions, targets [R, T] (-100: none), owner [R] (the
    image of each, 0..B-1) -> (summed term, mean cross-entropy per token of a reference caption).

    Each reference's mean token cross-entropy, averaged over its image's references, times `samples` per image:
    a sum over images that, divided by the B * samples of the policy term, is the mean over images. A sum over
    images, so any split of the images (micro-batches, processes) gives the same objective."""
    per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100,
                                reduction="none").view(targets.shape)
    per_caption = per_token.sum(1) / (targets != -100).sum(1).clamp_min(1)
    images = int(owner.max()) + 1
    refs_per_image = torch.zeros(images, device=owner.device).index_add_(0, owner, torch.ones_like(per_caption))
    per_image = torch.zeros(images, device=owner.device).index_add_(0, owner, per_caption) / refs_per_image
    return samples * per_image.sum(), per_image.mean().detach()


def policy_logprobs(logits: Tensor, tokens: Tensor, eos_id: int, temperature: float = 1.0, top_k: int = 0,
                    banned: tuple[int, ...] = ()) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher-forced logits [N, L, V] of sampled tokens [N, L] -> (logp [N, L], mask [N, L], entropy [N, L]) under
    the distribution they were sampled from (`logprobs_of`; with top_k > 0, the top k tokens renormalised, the
    sampled token always kept in, so a tie decided otherwise than while sampling cannot make it impossible)."""
    if top_k <= 0:
        return logprobs_of(logits, tokens, eos_id, temperature, banned)
    scaled = sampling_logits(logits, temperature, 0, banned)
    kth = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[..., -1:]
    keep = (scaled >= kth).scatter(-1, tokens[..., None], True)
    logp_all = scaled.masked_fill(~keep, float("-inf")).log_softmax(-1)
    logp = logp_all.gather(-1, tokens[..., None])[..., 0]
    entropy = -(logp_all.exp() * logp_all.nan_to_num(neginf=0.0)).sum(-1)
    mask = real_token_mask(tokens, eos_id)
    return logp.masked_fill(~mask, 0.0), mask, entropy.masked_fill(~mask, 0.0)
