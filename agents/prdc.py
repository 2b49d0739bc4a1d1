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
The search is exact, over the whole dataset, built once in `fit_dataset` from normalized
states and queried with the whole batch at once every actor update (agents/nearest.py). A k-d
tree answers in about a millisecond when pi(s) is near the data but takes over a second on
23-dimensional keys when it is far (an untrained actor, or a weak constraint such as
halfcheetah's alpha 40); blocks of keys searched with matrix products take 0.1-0.6 s
whatever the query. `search: auto` (the default) times both and sends each batch to the one
that was faster; both return the same nearest point (distinct keys at exactly the same
distance aside, which continuous data do not produce), so the choice does not change the run.
A large beta makes the nearest point share the state (TD3+BC); beta -> 0 lets the policy take
any dataset action.

Deliberate deviations from the reference code: none in the mathematics. States are normalized
on the fly as in agents/td3_bc.py; the search's keys use the same normalized states.

Speed: pi(s) does not change during the critic step that precedes each actor step, so
`update` computes the query keys first and runs the search in a worker thread while the
critic step runs (scipy and torch both release the GIL); the actor step then takes the
result. With a second core (or a GPU doing the critic step) the search is hidden behind the
critic step; the answer is the same as a search made in place (`overlap_search=False`),
which the tests check bit for bit.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents import td3_bc
from agents.buffer import Batch
from agents.nearest import SEARCHES, make_search

OFFLINE = True


@dataclass
class Config(td3_bc.Config):
    beta: float = 2.0
    """Weight of the state in the nearest-neighbour key [beta * s, a] (paper default 2)."""
    overlap_search: bool = True
    """Search in a worker thread during the critic step (same result, module doc)."""
    search: str = "auto"
    """Exact nearest-neighbour search: kdtree, blocks, or auto (the faster of the two,
    re-timed as the actor moves; agents/nearest.py). All three give the same answers."""


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
        if cfg.search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)}; got {cfg.search!r}")
        self.search = None  # built by fit_dataset
        self.search_stats: tuple[float, float] | None = None  # (ms, blocks share), _search
        self.dataset_actions: torch.Tensor | None = None
        self._worker = ThreadPoolExecutor(1, "prdc-search") if cfg.overlap_search else None
        self._pending: tuple[torch.Tensor, Future] | None = None  # (pi(s), search of it)

    def fit_dataset(
        self, observations: np.ndarray, actions: np.ndarray, cache_dir: Path | None = None
    ) -> None:
        super().fit_dataset(observations, actions, cache_dir)
        obs = self.normalize(torch.as_tensor(observations, device=self.device))
        keys = torch.cat([self.cfg.beta * obs, torch.as_tensor(actions, device=self.device)], -1)
        self.search = make_search(keys.cpu().numpy(), self.cfg.search)  # N x (obs + action)
        self.dataset_actions = torch.as_tensor(actions, dtype=torch.float32, device=self.device)

    def _keys(self, obs: torch.Tensor, actions: torch.Tensor) -> np.ndarray:
        if self.search is None:
            raise RuntimeError("PRDC needs fit_dataset(observations, actions) before updates")
        return torch.cat([self.cfg.beta * obs, actions], -1).float().cpu().numpy()  # B x (S+A)

    def _search(self, keys: np.ndarray) -> np.ndarray:
        """The nearest keys' rows, timed: `search/ms` and `search/blocks_share` (TensorBoard)
        are moving averages over about the last 100 searches (weight 0.01 each; the first
        search sets them) of the milliseconds per batch and of the share the block search
        answered."""
        start = time.perf_counter()
        index = self.search(keys)
        sample = (1000 * (time.perf_counter() - start), float(self.search.last.name == "blocks"))
        if self.search_stats is None:
            self.search_stats = sample
        else:
            old = self.search_stats
            self.search_stats = tuple(0.99 * o + 0.01 * x for o, x in zip(old, sample))
        return index

    @torch.no_grad()
    def nearest_actions(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """a_nn for each row: the action of the nearest dataset [beta * s', a'] (B x A).
        `obs` are normalized states, as in the tree."""
        pending, self._pending = self._pending, None
        if pending is not None and torch.equal(pending[0], actions):
            index = pending[1].result()  # searched during the critic step
        else:
            index = self._search(self._keys(obs, actions))
        return self.dataset_actions[torch.as_tensor(index, device=self.device)]

    # The nearest-neighbour search runs on the CPU (numpy, scipy) inside the actor's loss, so
    # PRDC's update cannot be captured as a CUDA graph (agents/graphs.py).
    graph_capturable = False

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """TD3+BC's update; before an actor step, the search for pi(s) starts first."""
        if self._worker is not None and (self.updates + 1) % self.cfg.policy_delay == 0:
            with torch.no_grad():
                obs = self.normalize(batch.obs)
                actions = self.actor(obs)
            self._pending = (actions, self._worker.submit(self._search, self._keys(obs, actions)))
        return super().update(batch)

    def regulariser(
        self, batch: Batch, actions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE(pi(s), a_nn): the dataset constraint."""
        dc = (actions - self.nearest_actions(batch.obs, actions.detach())).pow(2).mean()
        ms, blocks_share = self.search_stats
        return dc, {"loss/dc": dc, "search/ms": torch.tensor(ms),
                    "search/blocks_share": torch.tensor(blocks_share)}  # fmt: skip
