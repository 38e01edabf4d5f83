"""Step-wise GRPO arithmetic (SPEC §6): group advantages and the per-token loss.

Kept free of models and I/O so every number can be checked by hand (tests/test_grpo.py).

- Advantage: ``A = (r - mean_group) / (std_group + eps)`` with the unbiased std
  (n - 1), one value per trajectory, broadcast unchanged to every step of it, in
  all three stages. A group whose rewards are all equal carries no signal and is
  skipped (``None``), as is a group of one.
- Loss per completion token: the PPO clipped-ratio objective plus β times the k3
  estimate of KL(π_θ ‖ π_ref) (``exp(ref - logp) - (ref - logp) - 1``, always ≥ 0,
  unbiased; the estimator GRPO papers use). Tokens outside the mask (the prompt,
  tool results, text the runtime wrote) contribute nothing. A sample's loss is the
  mean over its masked tokens and the batch loss the mean over samples (GRPO's
  original sequence-level averaging), so a long think does not outweigh a short
  tool call of the same trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


def group_advantages(rewards: Sequence[float], eps: float = 1e-4, min_std: float = 0.0) -> list[float] | None:
    """Terminal advantages of one group of K rollouts of the same task; None = skip the group.

    ``min_std`` > 0 also skips groups whose rewards differ only by noise (e.g. a few
    context tokens in R_compression): normalising by a tiny std would turn that
    noise into full-size advantages. SPEC §6 skips only exact ties (0)."""
    n = len(rewards)
    if n < 2:
        return None
    mean = sum(rewards) / n
    var = sum((r - mean) ** 2 for r in rewards) / (n - 1)
    std = math.sqrt(var)
    if std <= 1e-12 or max(rewards) - min(rewards) <= 1e-9 or std < min_std:
        return None
    return [(r - mean) / (std + eps) for r in rewards]


@dataclass
class LossStats:
    """What one loss evaluation reports (floats, for logs)."""

    loss: float
    policy_loss: float
    kl: float
    clip_frac: float
    tokens: int


def token_losses(logp, old_logp, ref_logp, advantage: float, *, clip_eps: float = 0.2, beta: float = 0.1):
    """Per-token loss terms (torch tensors of one sample's completion tokens).

    Returns (loss, policy_term, kl, clipped) tensors of the same shape as ``logp``.
    ``ref_logp`` may be None (β = 0 or no reference): the KL term is then zero."""
    import torch

    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantage
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantage
    policy = -torch.minimum(unclipped, clipped)
    if ref_logp is None or beta == 0:
        kl = torch.zeros_like(logp)
    else:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1.0
    is_clipped = (clipped < unclipped).float()   # the min picked the clipped term: no gradient
    return policy + beta * kl, policy, kl, is_clipped


def sample_loss(logp, old_logp, ref_logp, mask, advantage: float, *, clip_eps: float = 0.2,
                beta: float = 0.1):
    """Mean per-token loss of one sample over its masked tokens, and its stats.

    ``mask`` (bool/0-1 tensor) marks the tokens the policy generated; a sample with
    no such token returns a zero loss that still carries the graph."""
    import torch

    loss, policy, kl, clipped = token_losses(logp, old_logp, ref_logp, advantage, clip_eps=clip_eps, beta=beta)
    m = mask.to(loss.dtype)
    n = m.sum()
    denom = torch.clamp(n, min=1.0)
    mean = (loss * m).sum() / denom
    stats = LossStats(loss=float(mean.detach()), policy_loss=float(((policy * m).sum() / denom).detach()),
                      kl=float(((kl * m).sum() / denom).detach()),
                      clip_frac=float(((clipped * m).sum() / denom).detach()), tokens=int(n.item()))
    return mean, stats


__all__ = ["group_advantages", "token_losses", "sample_loss", "LossStats"]
