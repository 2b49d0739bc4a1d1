"""bench/procgen_level_sets.py: the returns of the first episodes to end, on a scripted vector
env, and its block argument."""

import argparse
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("levelsets", REPO / "bench" / "procgen_level_sets.py")
levelsets = importlib.util.module_from_spec(spec)
spec.loader.exec_module(levelsets)


class Scripted:
    """Two envs: env 0 ends an episode every 2 steps with rewards 0 then 10; env 1 every 3 steps
    with 1 per step. Records the actions it was given."""

    num_envs = 2
    action_space = SimpleNamespace(n=15)

    def __init__(self):
        self.t, self.actions = 0, []

    def step(self, actions):
        self.actions.append(actions.copy())
        self.t += 1
        rewards = np.array([10.0 if self.t % 2 == 0 else 0.0, 1.0])
        ends = np.array([self.t % 2 == 0, self.t % 3 == 0])
        return SimpleNamespace(rewards=rewards, terminated=ends, truncated=np.zeros(2, bool))


def test_the_first_episodes_to_end_with_their_returns():
    env = Scripted()
    # t=2: env 0 ends (10); t=3: env 1 ends (3); t=4: env 0 (10); t=6: env 0 (10) and env 1 (3)
    assert levelsets.random_returns(env, 5, seed=0) == [10.0, 3.0, 10.0, 10.0, 3.0]
    assert env.t == 6
    # Each step draws one of the 15 buttons per env, uniformly, from numpy's generator seeded
    # with the seed: the same draws replayed here.
    rng = np.random.default_rng(0)
    drawn = [rng.integers(0, 15, 2) for _ in range(6)]
    np.testing.assert_array_equal(np.stack(env.actions), np.stack(drawn))


def test_blocks_are_start_and_count():
    assert levelsets.block("1000000:10") == (1_000_000, 10)
    for bad in ("10", "a:b", "-1:10", "0:0"):
        with pytest.raises(argparse.ArgumentTypeError):
            levelsets.block(bad)
