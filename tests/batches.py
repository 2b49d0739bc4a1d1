"""A hand-made minibatch for agent unit tests (obs dim 3, action dim 2)."""

from __future__ import annotations

import torch

from agents.buffer import Batch


def make_batch(b: int = 4, seed: int = 0, **fields) -> Batch:
    g = torch.Generator().manual_seed(seed)
    base = dict(
        obs=torch.randn(b, 3, generator=g),
        actions=torch.rand(b, 2, generator=g) * 2 - 1,
        rewards=torch.randn(b, generator=g),
        next_obs=torch.randn(b, 3, generator=g),
        terminated=torch.zeros(b),
        truncated=torch.zeros(b),
        discounts=torch.full((b,), 0.99),
        extras={},
        indices=torch.arange(b),
    )
    base.update(fields)
    return Batch(**base)
