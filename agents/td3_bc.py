"""TD3+BC: TD3 with a behaviour-cloning term, for offline data.

Paper: Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021
(arXiv 2106.06860). Reference implementation: github.com/sfujim/TD3_BC.

The algorithm is TD3 (agents/td3.py) with two changes (paper, Eq. 3 and Section 5):
  actor:   maximise  lambda * Q1(s, pi(s)) - (pi(s) - a)^2,   lambda = alpha / mean|Q1(s, pi(s))|
           with lambda detached (a scale, not a path for gradients), alpha = 2.5, and the
           squared error averaged over the batch and the action dimensions (F.mse_loss);
  states:  normalized with the dataset's mean and std (std + 1e-3), fixed for the whole run,
           saved with the networks and applied when acting.

Deliberate deviations from the reference code:
- States are normalized on the fly (each batch, and each observation when acting) instead of
  rewriting the dataset once; the numbers are the same and the dataset stays shared, unmodified,
  with the replay buffer.
- TD3's exploration settings are unused: offline runs never act in the environment except to
  evaluate, deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents import td3
from agents.buffer import Batch
from agents.nets import DatasetNorm

OFFLINE = True  # train.py: this agent learns from a dataset (--dataset), not from an env


@dataclass
class Config(td3.Config):
    alpha: float = 2.5
    """Weight of the Q term against behaviour cloning: lambda = alpha / mean|Q|."""
    normalize_states: bool = True
    """Normalize states with the dataset's mean and std (the paper; off for ablations)."""
    learning_starts: int = 0
    """Unused offline (updates start at once); kept so the shared loop reads one name."""


class Agent(td3.Agent):
    def __init__(
        self,
        cfg: Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
    ):
        super().__init__(cfg, observation_space, action_space, device)
        if cfg.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {cfg.alpha}")
        if cfg.normalize_states:
            # Replaces TD3's optional running statistics: TD3's update, act and q_value
            # all normalize through `obs_norm`.
            self.obs_norm = DatasetNorm(observation_space.shape[0]).to(self.device)

    def fit_dataset(
        self, observations: np.ndarray, actions: np.ndarray, cache_dir: Path | None = None
    ) -> None:
        """Called once by train.py with the whole dataset (N x obs_dim, N x action_dim) and a
        folder beside it where models fitted to the data may be cached (SPOT's VAE)."""
        if self.obs_norm is not None:
            self.obs_norm.fit(torch.as_tensor(observations, device=self.device))

    def observe(self, obs: np.ndarray) -> None:
        """Dataset statistics are fixed: environment observations do not change them."""

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-lambda * mean Q1(s, pi(s)) + regulariser, lambda = alpha / mean|Q1| (detached)."""
        actions = self.actor(batch.obs)  # B x A
        q = self.policy_q(batch.obs, actions)  # B
        lam = self.cfg.alpha / q.abs().mean().detach()
        regulariser, metrics = self.regulariser(batch, actions)
        return -lam * q.mean() + regulariser, {**metrics, "actor/lambda": lam}

    def regulariser(
        self, batch: Batch, actions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Behaviour cloning: MSE(pi(s), a) over the batch and action dimensions. PRDC swaps
        the dataset action for the nearest dataset point's."""
        bc = (actions - batch.actions).pow(2).mean()
        return bc, {"loss/bc": bc}
