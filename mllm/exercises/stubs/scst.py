"""Exercise `scst`: the self-critical loss (REINFORCE with a baseline) and its two baselines.

Write `baseline_rewards` and `scst_loss` below. `python main.py exercise check scst` runs the real tests
(tests/test_rl.py): one gradient step with your loss must make a sample that beat its baseline likelier and
one below it less likely.

For an image with n sampled captions w^1..w^n:
    advantage_i = R(w^i) - b_i
    loss        = - sum_i [ advantage_i * sum_t log p(w^i_t | ...)  +  beta * sum_t H_t(w^i) ]
"""

from __future__ import annotations

from torch import Tensor

BASELINES = ("greedy", "mean")


def baseline_rewards(sample_rewards: Tensor, greedy_rewards: Tensor, n: int, kind: str = "greedy") -> Tensor:
    """b [B*n] for rewards of B*n samples (image-major: n per image) given the greedy rewards [B].

    "greedy" (self-critical, Rennie et al. 2017): each sample's baseline is its image's greedy caption's reward
    (hint: repeat_interleave). "mean" (leave-one-out, Kool et al. 2019): the mean reward of the image's
    other n - 1 samples (hint: view(-1, n), the row sum minus the sample, / (n - 1)); n < 2 is a ValueError
    ("at least 2 samples"). Any other kind: ValueError naming the choices.
    """
    raise NotImplementedError("write baseline_rewards (exercise 'scst')")


def scst_loss(logp: Tensor, mask: Tensor, advantage: Tensor, entropy: Tensor | None = None,
              entropy_bonus: float = 0.0) -> tuple[Tensor, int]:
    """logp, mask, entropy [N, L] of N sampled captions (mask 0 past each end), advantage [N] ->
    (the loss summed over the samples, N).

    No gradient may flow through the advantage (detach it). With entropy_bonus > 0 and an entropy,
    subtract entropy_bonus * the masked entropy sum.
    """
    raise NotImplementedError("write scst_loss (exercise 'scst')")
