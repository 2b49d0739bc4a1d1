"""Trajectory reweighting of mixed datasets: which transitions an offline agent samples.

Paper: Hong, Kumar, Agrawal et al., "Harnessing Mixed Offline Reinforcement Learning Datasets
via Trajectory Weighting", ICLR 2023. Reference: github.com/Improbable-AI/harness-offline-rl.

Every transition inherits a score from its episode (trajectory) i; the sampling probability of
a transition is softmax(score / temperature) over all transitions, so an episode's share of
the samples is its length times exp(score / temperature), normalized:
- uniform: every transition equally likely (the usual sampler);
- rw (return-weighted): score_i = min-max normalized return G_i;
- aw (advantage-weighted): score_i = min-max normalized A_i = G_i - V(s0_i), with V a linear
  least-squares fit (with intercept) of the returns on the episodes' first observations, so
  an episode is rated against what its start state promised.
Temperature 0.1 is the paper's. Where every score is equal (ties everywhere, or a single
episode) min-max normalization is undefined; the distribution is uniform then.
"""

from __future__ import annotations

import numpy as np

from core.errors import UserError
from envs.datasets.dataset import Dataset

SAMPLERS = ("uniform", "rw", "aw")


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return np.zeros_like(x) if span <= 0 else (x - x.min()) / span


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def episode_scores(data: Dataset, sampler: str) -> np.ndarray:
    """Each episode's score (before min-max normalization): its return, or return - V(s0)."""
    returns = data.episode_returns()  # E
    if sampler == "rw":
        return returns
    s0 = data.observations[data.episode_bounds()[:, 0]].astype(np.float64)  # E x obs
    design = np.concatenate([s0, np.ones((len(s0), 1))], axis=1)  # linear V with intercept
    coef, *_ = np.linalg.lstsq(design, returns, rcond=None)
    return returns - design @ coef


def transition_probabilities(
    data: Dataset, sampler: str, temperature: float = 0.1
) -> np.ndarray | None:
    """Per-transition sampling probabilities (N, summing to 1); None for uniform."""
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler '{sampler}' (known: {', '.join(SAMPLERS)})")
    if sampler == "uniform":
        return None
    if not temperature > 0:
        raise UserError(f"sampler temperature must be > 0, got {temperature}")
    bounds = data.episode_bounds()
    lengths = bounds[:, 1] - bounds[:, 0]
    scores = np.repeat(_minmax(episode_scores(data, sampler)), lengths)  # N
    return _softmax(scores / temperature)


def sampling_stats(data: Dataset, probabilities: np.ndarray | None) -> dict[str, float]:
    """Effective sample sizes of the sampling distribution (1 / sum p^2), over transitions and
    over episodes (an episode's probability = the sum over its transitions), with the counts
    they compare to."""
    bounds = data.episode_bounds()
    n, e = len(data), len(bounds)
    if probabilities is None:
        lengths = (bounds[:, 1] - bounds[:, 0]).astype(np.float64)
        return {"ess_transitions": float(n), "transitions": float(n),
                "ess_episodes": float(lengths.sum() ** 2 / (lengths**2).sum()),
                "episodes": float(e)}  # fmt: skip
    per_episode = np.add.reduceat(probabilities, bounds[:, 0])
    return {"ess_transitions": float(1.0 / np.square(probabilities).sum()),
            "transitions": float(n),
            "ess_episodes": float(1.0 / np.square(per_episode).sum()),
            "episodes": float(e)}  # fmt: skip
