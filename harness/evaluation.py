"""Deterministic policy evaluation: the one function used during training and on checkpoints."""

from __future__ import annotations

from typing import Protocol

import gymnasium as gym
import numpy as np

from core import stop


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
