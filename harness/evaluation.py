"""Policy evaluation: the functions used during training and on checkpoints.

- `evaluate_vector(agent, vec_env, K, seed)`: K episodes played together in a vector env of n
  envs, one policy batch per step (what training and evaluate.py use). Env i is reset with
  seed + i and counts its first q_i episodes, q_i = K // n plus one for the first K % n envs:
  with n = K (the loops use n = min(K, 10)) episode k starts from reset(seed + k), the start
  states of the one-env protocol below; with n < K an env's later episodes start from its own
  RNG after that reset. Which episodes count is fixed before any is played, never by how long
  they last (the first K to finish would favour short ones: early falls). The batched forward
  can round differently from a batch of one, so a chaotic task's returns may differ from
  `evaluate_policy`'s in the last digits and, through the dynamics, beyond: the same policy
  measured on the same starts, not the same numbers.
- `evaluate_policy(agent, env, K, seed)`: the one-env protocol, episode k from
  env.reset(seed + k) (dataset generation and the peer comparisons use it).
- `run_side`: the vector loop both the evaluation and the generalization report
  (harness/generalization.py) play their episodes with.

Episodes use the deterministic action (argmax, or the mean action) unless told
`deterministic=False` (`evaluation_actor` decides: PPO samples its policy, a run with
`eval_epsilon` plays epsilon-greedy). The vector functions then draw the random actions under a
torch RNG forked from the caller's and seeded with the evaluation seed, so such an evaluation
is reproducible and leaves the training run's random stream as it found it (PPO on Procgen
evaluates so: the protocol measures the sampling policy, and an argmax policy can stand still
in a level until the timeout).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from core import stop

EVAL_ENVS = 10  # envs a vector evaluation steps together (at most; fewer for fewer episodes)


class Actor(Protocol):
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray: ...


def evaluate_policy(
    agent: Actor, env: gym.Env, episodes: int, seed: int, deterministic: bool = True
) -> dict:
    """Run `episodes` episodes (deterministic actions unless told otherwise); episode k starts
    from env.reset(seed=seed + k).

    Returns {'returns', 'lengths', 'return_mean', 'return_std'} (undiscounted returns).
    """
    returns, lengths = [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        done, total, length = False, 0.0, 0
        while not done:
            stop.check()  # many or long episodes: Ctrl-C is heard between steps
            action = agent.act(obs[None], deterministic=deterministic)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
    return {
        "returns": returns,
        "lengths": lengths,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
    }


def quotas(episodes: int, num_envs: int) -> np.ndarray:
    """Episodes each env contributes: K spread over N envs, the first K % N get one more."""
    base, extra = divmod(episodes, num_envs)
    return base + (np.arange(num_envs) < extra).astype(np.int64)


def acts_deterministic(agent) -> bool:
    """Whether `agent` is evaluated with its deterministic action: yes unless its config sets
    `eval_sampled` (PPO does by default: the Procgen protocol measures the sampling policy)."""
    return not getattr(getattr(agent, "cfg", None), "eval_sampled", False)


class EpsilonGreedy:
    """Plays `agent`'s greedy action, replaced at every step and in every env with probability
    `epsilon` by a uniformly random one (each action dimension's bin drawn from [0, bins)):
    the epsilon-greedy evaluation of DQN-family agents (EDE's Procgen DQN: 0.05,
    train_rainbow.py `eval_policy`; EDE draws one coin for all envs of a step, here each env
    has its own). It draws from torch's global RNG, which the vector functions seed
    (sampling_rng) because it does not act deterministically."""

    def __init__(self, agent: Actor, epsilon: float, bins: int):
        self.agent, self.epsilon, self.bins = agent, float(epsilon), int(bins)

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        greedy = np.asarray(self.agent.act(obs, deterministic=True))  # N, or N x D bins
        if deterministic:
            return greedy
        n = len(greedy)
        explore = (torch.rand(n) < self.epsilon).numpy().reshape(n, *[1] * (greedy.ndim - 1))
        random = torch.randint(0, self.bins, greedy.shape).numpy()
        return np.where(explore, random, greedy).astype(greedy.dtype)


def evaluation_actor(agent, epsilon: float = 0.0) -> tuple[Actor, bool]:
    """(what plays an evaluation's episodes, whether it acts deterministically): the agent
    itself (acts_deterministic), or with `epsilon` > 0 EpsilonGreedy over it (the agent must
    choose among `agent.bins` per action dimension)."""
    if epsilon > 0:
        return EpsilonGreedy(agent, epsilon, agent.bins), False
    return agent, acts_deterministic(agent)


@contextlib.contextmanager
def sampling_rng(seed: int, deterministic: bool) -> Iterator[None]:
    """Nothing for deterministic episodes; else torch's RNGs (CPU and the current CUDA device)
    forked from the caller's and seeded with `seed`, restored on exit."""
    if deterministic:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def run_side(
    agent, env, episodes: int, seed: int, max_steps: int | None = None, deterministic: bool = True
) -> dict[str, Any]:
    """K episodes of the policy on `env`, reset with `seed` (module doc: env i counts its first
    q_i episodes; sampled actions when not `deterministic`). Returns the returns, lengths and
    levels (None when the env does not report them) in env order, and the vector steps taken."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    with sampling_rng(seed, deterministic):
        return _play(agent, env, episodes, seed, max_steps, deterministic)


def side_summary(out: dict) -> dict[str, float]:
    """{'return_mean', 'return_std', 'length_mean'} of run_side's episodes."""
    returns = np.asarray(out["returns"], dtype=np.float64)
    return {"return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "length_mean": float(np.mean(out["lengths"]))}  # fmt: skip


def _play(agent, env, episodes: int, seed: int, max_steps: int | None, deterministic: bool):
    n = env.num_envs
    want = quotas(episodes, n)
    got = [[] for _ in range(n)]  # env i: (return, length, level) of its counted episodes
    has_levels = getattr(env, "finished_levels", None) is not None
    start = time.perf_counter()
    obs = env.reset(seed)
    steps = 0
    while any(len(got[i]) < want[i] for i in range(n)):
        stop.check()  # K episodes of up to a level timeout each: Ctrl-C is heard here
        if max_steps is not None and steps >= max_steps:
            done = sum(map(len, got))
            raise RuntimeError(
                f"{done} of {episodes} episodes finished in {max_steps} vector steps"
            )
        result = env.step(np.asarray(agent.act(obs, deterministic=deterministic)))
        steps += 1
        obs = result.obs
        ended = np.flatnonzero(np.asarray(result.terminated) | np.asarray(result.truncated))
        if len(ended) != len(result.finished):
            raise ValueError(
                f"the vector env reported {len(result.finished)} finished episodes for "
                f"{len(ended)} ended envs"
            )
        levels = list(env.finished_levels) if has_levels else [None] * len(ended)
        for i, (ret, length), level in zip(ended, result.finished, levels):
            if len(got[i]) < want[i]:
                got[i].append((float(ret), int(length), None if level is None else int(level)))
    counted = [episode for per_env in got for episode in per_env]
    return {
        "returns": [r for r, _, _ in counted],
        "lengths": [length for _, length, _ in counted],
        "levels": [level for _, _, level in counted] if has_levels else None,
        "steps": steps,
        "seconds": time.perf_counter() - start,
    }


def evaluate_vector(
    agent: Actor, env, episodes: int, seed: int, deterministic: bool = True
) -> dict:
    """K = `episodes` episodes in the vector env `env` reset with `seed` (module doc). Returns
    {'returns', 'lengths', 'return_mean', 'return_std'} like evaluate_policy."""
    out = run_side(agent, env, episodes, seed, deterministic=deterministic)
    return {
        "returns": out["returns"],
        "lengths": out["lengths"],
        "return_mean": float(np.mean(out["returns"])),
        "return_std": float(np.std(out["returns"])),
    }
