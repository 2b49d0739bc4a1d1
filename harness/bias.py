"""Overestimation bias: each critic's estimate against the Monte-Carlo truth.

Method (TD3 paper, Fujimoto et al. 2018; normalization from REDQ, Chen et al. 2021):
1. Take K states s_i with their observations, from the replay buffer (or a dataset) where the
   simulator state was stored with each transition (MuJoCo: qpos, qvel).
2. Restore each in its own copy of the environment and act with the agent's deterministic
   policy, a_i = pi(s_i), then follow pi until termination or a horizon H with
   gamma^H <= `tol` (gamma 0.99, tol 1e-3 -> H = 688). The discounted return G_i, averaged
   over `rollouts` copies (more than one only matters for stochastic dynamics), is the true
   Q^pi(s_i, a_i) up to gamma^H.
3. Bias_i = Q(s_i, a_i) - G_i with the estimate the agent's policy maximises (`q_value`);
   normalized bias_i = Bias_i / |mean_i G_i|. Report the mean and std of both, plus mean Q
   and mean G, and the same for every variant in `q_estimates` (e.g. TD3's min, TQC's
   truncated mean).

Where the environment's state cannot be restored, the states are fresh episode starts
(env.reset(seed + i)) and the result says so: `restored_states` is false.

The harness knows no agent: it needs `act(obs, deterministic)`, `q_value(obs, actions)` and,
optionally, `q_estimates(obs, actions)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from envs import set_sim_state


@dataclass
class States:
    """Where to measure: observations, with simulator states when they can be restored."""

    obs: np.ndarray  # K x obs_dim
    sim_states: np.ndarray | None  # K x state_dim; None = fresh episode starts
    reset_seeds: np.ndarray  # K: seed of the reset before restoring (or of the start state)
    indices: np.ndarray | None = None  # K: buffer/dataset indices the states came from


def horizon_for(gamma: float, tol: float = 1e-3) -> int:
    """Smallest H with gamma^H <= tol: rewards past H change the return by at most tol/(1-g)
    times the reward scale."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"Monte-Carlo truth needs gamma in [0, 1), got {gamma}")
    if gamma == 0.0:
        return 1
    return max(1, math.ceil(math.log(tol) / math.log(gamma)))


def states_from_buffer(buffer, k: int, seed: int) -> States:
    """K transitions drawn uniformly (own RNG) from a buffer that stores `sim_state`."""
    if len(buffer) == 0:
        raise ValueError("the replay buffer is empty: no states to measure the bias on")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(buffer), size=min(k, len(buffer)), replace=False))
    batch = buffer.transitions(idx)
    if "sim_state" not in batch.extras:
        raise ValueError("the buffer stores no simulator states to restore")
    return States(
        obs=batch.obs.numpy(),
        sim_states=batch.extras["sim_state"].numpy(),
        reset_seeds=seed + np.arange(len(idx)),
        indices=idx,
    )


def start_states(env: gym.Env, k: int, seed: int) -> States:
    """Fallback for envs without restorable states: the first observation of K episodes."""
    obs = np.stack([env.reset(seed=seed + i)[0] for i in range(k)])
    return States(obs=obs, sim_states=None, reset_seeds=seed + np.arange(k))


def rollout_returns(
    agent, envs: list[gym.Env], first_obs: np.ndarray, gamma: float, horizon: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """(G per env, first actions, number of rollouts cut by a time limit before the horizon).

    Every env is already in its start state; all are stepped together so that the policy
    acts on one batch per time step.
    """
    n = len(envs)
    obs = np.array(first_obs, dtype=np.float32, copy=True)
    returns, discount = np.zeros(n), np.ones(n)
    alive = np.ones(n, dtype=bool)
    cut = 0
    first_actions = agent.act(obs, deterministic=True)
    actions = first_actions
    for t in range(horizon):
        live = np.flatnonzero(alive)
        if live.size == 0:
            break
        if t > 0:
            actions = np.zeros_like(first_actions)
            actions[live] = agent.act(obs[live], deterministic=True)
        for i in live:
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[i])
            returns[i] += discount[i] * float(reward)
            discount[i] *= gamma
            obs[i] = next_obs
            if terminated or truncated:
                alive[i] = False
                cut += int(truncated and not terminated)
    return returns, first_actions, cut


def _stats(q: np.ndarray, g: np.ndarray) -> dict[str, float]:
    bias = q - g
    scale = abs(float(g.mean()))
    normalized = bias / scale if scale > 0 else np.full_like(bias, np.nan)
    return {
        "q_mean": float(q.mean()),
        "bias_mean": float(bias.mean()),
        "bias_std": float(bias.std()),
        "bias_normalized_mean": float(normalized.mean()),
        "bias_normalized_std": float(normalized.std()),
    }


class BiasMeter:
    """Holds the environment copies for repeated measurements (e.g. every N training steps)."""

    def __init__(
        self,
        env_fn: Callable[[int], gym.Env],
        gamma: float,
        rollouts: int = 1,
        tol: float = 1e-3,
    ):
        """`env_fn(max_episode_steps)` makes one environment copy whose time limit does not cut
        rollouts short of the horizon."""
        if rollouts < 1:
            raise ValueError(f"rollouts must be >= 1, got {rollouts}")
        self.gamma, self.rollouts = gamma, rollouts
        self.horizon = horizon_for(gamma, tol)
        self.env_fn = env_fn
        self.envs: list[gym.Env] = []

    def _copies(self, n: int) -> list[gym.Env]:
        while len(self.envs) < n:
            self.envs.append(self.env_fn(self.horizon + 1))
        return self.envs[:n]

    @torch.no_grad()
    def measure(self, agent, states: States) -> dict:
        """The bias numbers for `agent` on `states` (see the module doc for definitions)."""
        k, m = len(states.obs), self.rollouts
        envs = self._copies(k * m)
        first_obs = np.repeat(states.obs, m, axis=0)
        for j, env in enumerate(envs):
            i, r = divmod(j, m)
            if states.sim_states is not None:  # rollout r gets its own env RNG stream
                env.reset(seed=int(states.reset_seeds[i]) + 1_000_003 * r)
                first_obs[j] = set_sim_state(env, states.sim_states[i])
            else:  # the start state is the reset seed's, the same for every rollout
                first_obs[j] = env.reset(seed=int(states.reset_seeds[i]))[0]
        returns, actions, cut = rollout_returns(agent, envs, first_obs, self.gamma, self.horizon)
        g = returns.reshape(k, m).mean(axis=1)
        obs_t = torch.as_tensor(first_obs[::m], dtype=torch.float32, device=agent.device)
        act_t = torch.as_tensor(actions[::m], dtype=torch.float32, device=agent.device)
        q = agent.q_value(obs_t, act_t).double().cpu().numpy()
        result = {
            **_stats(q, g),
            "mc_return_mean": float(g.mean()),
            "n_states": k,
            "rollouts": m,
            "horizon": self.horizon,
            "gamma": self.gamma,
            "restored_states": states.sim_states is not None,
            "time_limit_cuts": cut,
        }
        if hasattr(agent, "q_estimates"):
            estimates = agent.q_estimates(obs_t, act_t)
            result["estimates"] = {
                name: _stats(v.double().cpu().numpy(), g) for name, v in estimates.items()
            }
        return result
