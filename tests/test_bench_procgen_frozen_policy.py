"""bench/procgen_frozen_policy.py: `play` counts finished episodes and their means by hand, and
acts with exploration (the training loop's actions, not the greedy ones)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import procgen_frozen_policy as fp  # noqa: E402


class CountingEnvs:
    """Two envs: env 0's episodes last 3 steps and return 10, env 1's last 5 and return 0."""

    num_envs = 2

    def __init__(self):
        self.t = np.zeros(2, dtype=int)

    def reset(self):
        return np.zeros((2, 1))

    def step(self, actions):
        assert actions.shape == (2,)
        self.t += 1
        finished = []
        for i, (length, ret) in enumerate([(3, 10.0), (5, 0.0)]):
            if self.t[i] % length == 0:
                finished.append((ret, length))
        return SimpleNamespace(obs=np.zeros((2, 1)), finished=finished)


class RecordingActor:
    def __init__(self):
        self.flags = []

    def act(self, obs, deterministic):
        self.flags.append(deterministic)
        return np.zeros(len(obs), dtype=int)


def test_play_counts_the_finished_episodes_and_acts_exploring():
    actor = RecordingActor()
    result = fp.play(actor, CountingEnvs(), frames=30)  # 15 steps of 2 envs
    # env 0 ends at steps 3, 6, ..., 15 (5 episodes of 10), env 1 at 5, 10, 15 (3 of 0)
    assert result == {"episodes": 8, "return_mean": 50 / 8, "length_mean": (15 + 15) / 8,
                      "action_fractions": [1.0]}  # fmt: skip
    assert actor.flags == [False] * 15


class CyclingActor:
    """Env 0 takes actions 0, 1, 2, 0, ...; env 1 always action 4."""

    def __init__(self):
        self.t = 0

    def act(self, obs, deterministic):
        self.t += 1
        return np.array([(self.t - 1) % 3, 4])


def test_play_gives_the_fraction_of_steps_that_took_each_action():
    result = fp.play(CyclingActor(), CountingEnvs(), frames=12)  # 6 steps of 2 envs
    # env 0: actions 0, 1, 2 twice each (6 of 12 steps); env 1: action 4 six times; none took 3
    assert result["action_fractions"] == [0.1667, 0.1667, 0.1667, 0.0, 0.5]


def test_play_with_no_finished_episode_says_so():
    result = fp.play(RecordingActor(), CountingEnvs(), frames=4)  # 2 steps: nothing ends
    assert result == {"episodes": 0, "return_mean": None, "length_mean": None,
                      "action_fractions": [1.0]}  # fmt: skip


class LevelEnvs(CountingEnvs):
    """CountingEnvs that name each finished episode's level, as ProcgenVecEnv does: env 0 plays
    level 7 (3 steps, return 10), env 1 level 2 (5 steps, return 0) then level 7 (5 steps)."""

    def step(self, actions):
        out = super().step(actions)
        self.finished_levels = []
        if self.t[0] % 3 == 0:
            self.finished_levels.append(7)
        if self.t[1] % 5 == 0:
            self.finished_levels.append(2 if self.t[1] == 5 else 7)
        return out


def test_play_gives_each_levels_episodes_and_means():
    result = fp.play(RecordingActor(), LevelEnvs(), frames=20)  # 10 steps of 2 envs
    # env 0 ends at steps 3, 6, 9 on level 7 (10 each); env 1 at step 5 on level 2, 10 on 7
    assert result["episodes"] == 5
    assert result["levels"] == [
        {"level": 2, "episodes": 1, "return_mean": 0.0, "length_mean": 5.0},
        {"level": 7, "episodes": 4, "return_mean": 30 / 4, "length_mean": (9 + 5) / 4},
    ]  # fmt: skip
