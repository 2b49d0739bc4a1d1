"""PRDC: Policy Regularization with Dataset Constraint.

Paper: Ran, Li, Zhang, Yu, "Policy Regularization with Dataset Constraint for Offline
Reinforcement Learning", ICML 2023 (arXiv 2306.06569). Reference implementation:
github.com/LAMDA-RL/PRDC (also in d3rlpy).

TD3+BC (agents/td3_bc.py) with one change: the behaviour-cloning target is not the action
stored with s but the action of the dataset point nearest to (beta * s, pi(s)) in the space of
[beta * state, action] (paper, Eq. 5-6):
  actor:  minimise  -lambda * mean Q1(s, pi(s)) + MSE(pi(s), a_nn),
          (s_nn, a_nn) = argmin over (s', a') in D of ||(beta * s, pi(s)) - (beta * s', a')||,
          lambda = alpha / mean|Q1| (detached); alpha 2.5, beta 2 (README: halfcheetah alpha 40).
The search is exact: a k-d tree (scipy cKDTree) over the whole dataset, built once in
`fit_dataset` from normalized states, queried with the whole batch at once every actor update.
A large beta makes the nearest point share the state (TD3+BC); beta -> 0 lets the policy take
any dataset action.

Deliberate deviations from the reference code: none in the mathematics. States are normalized
on the fly as in agents/td3_bc.py; the tree's keys use the same normalized states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from scipy.spatial import cKDTree

from agents import td3_bc
from agents.buffer import Batch

OFFLINE = True


@dataclass
class Config(td3_bc.Config):
    beta: float = 2.0
    """Weight of the state in the nearest-neighbour key [beta * s, a] (paper default 2)."""


class Agent(td3_bc.Agent):
    def __init__(
        self,
        cfg: Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
    ):
        super().__init__(cfg, observation_space, action_space, device)
        if cfg.beta < 0:
            raise ValueError(f"beta must be >= 0, got {cfg.beta}")
        self.tree: cKDTree | None = None
        self.dataset_actions: torch.Tensor | None = None

    def fit_dataset(
        self, observations: np.ndarray, actions: np.ndarray, cache_dir: Path | None = None
    ) -> None:
        super().fit_dataset(observations, actions, cache_dir)
        obs = self.normalize(torch.as_tensor(observations, device=self.device))
        keys = torch.cat([self.cfg.beta * obs, torch.as_tensor(actions, device=self.device)], -1)
        # Sliding-midpoint splits (balanced_tree=False) answered these queries 1.7x faster
        # than median splits on a 1M-transition Hopper dataset; the search stays exact.
        self.tree = cKDTree(keys.cpu().numpy(), balanced_tree=False)  # N x (obs + action)
        self.dataset_actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def nearest_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """a_nn for each row: the action of the nearest dataset [beta * s', a'] (B x A).
        `obs` are normalized states, as in the tree."""
        if self.tree is None:
            raise RuntimeError("PRDC needs fit_dataset(observations, actions) before updates")
        keys = torch.cat([self.cfg.beta * obs, actions], -1).cpu().numpy()  # B x (obs + A)
        _, index = self.tree.query(keys, k=1)
        return self.dataset_actions[torch.as_tensor(index, device=self.device)]

    def regulariser(
        self, batch: Batch, actions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE(pi(s), a_nn): the dataset constraint."""
        dc = (actions - self.nearest_actions(batch.obs, actions.detach())).pow(2).mean()
        return dc, {"loss/dc": dc}
