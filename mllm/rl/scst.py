"""Self-critical sequence training (Rennie et al., 2017) as a loss: REINFORCE with a baseline.

For an image with n sampled captions w^1..w^n (each up to and including its end token):

    advantage_i = R(w^i) - b_i
    loss        = - sum_i [ advantage_i * sum_t log p(w^i_t | w^i_<t, image)  +  beta * sum_t H_t(w^i) ]

summed over the samples and returned with their number, so the loop averages it per sample (every caption
weighs the same, whatever its length). b_i is the reward of the greedy caption of the same image (the
self-critical baseline: a sample is pushed up only if it beats what the model does at test time) or the mean
reward of the image's other n - 1 samples. H_t is the entropy of the sampling distribution at step t; beta > 0
rewards keeping the captions varied. The advantage is a constant: no gradient flows through the reward.
"""

from __future__ import annotations

from torch import Tensor

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
