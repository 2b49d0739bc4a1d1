"""A hand-made minibatch for agent unit tests (by default obs dim 3, action dim 2)."""

from __future__ import annotations

import torch

from agents.buffer import Batch


def make_batch(
    b: int = 4, seed: int = 0, obs_dim: int = 3, action_dim: int = 2, bins: int = 0, **fields
) -> Batch:
    """Random fields; actions in [-1, 1], or bin indices in [0, bins) when bins > 0."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(b, obs_dim, generator=g)  # drawn first: tests hold numbers of this order
    if bins:
        actions = torch.randint(0, bins, (b, action_dim), generator=g)
    else:
        actions = torch.rand(b, action_dim, generator=g) * 2 - 1
    base = dict(
        obs=obs,
        actions=actions,
        rewards=torch.randn(b, generator=g),
        next_obs=torch.randn(b, obs_dim, generator=g),
        terminated=torch.zeros(b),
        truncated=torch.zeros(b),
        discounts=torch.full((b,), 0.99),
        extras={},
        indices=torch.arange(b),
    )
    base.update(fields)
    return Batch(**base)
