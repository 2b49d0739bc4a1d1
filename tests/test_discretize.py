"""Discretised control: --bins turns a Box action space into per-dimension bins."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import train
from envs import DiscretizeActions, make_env, random_actions


class Recorder(gym.Env):
    """Records the action it receives; a Box(-2..2, 0..1) action space."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(
        np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    )

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.last = action
        return np.zeros(1, np.float32), 0.0, False, False, {}


def test_bins_spread_evenly_over_the_bounds_both_included():
    env = DiscretizeActions(Recorder(), bins=5)
    assert env.action_space == gym.spaces.MultiDiscrete([5, 5])
    for index, expected in [([0, 0], [-2.0, 0.0]), ([4, 4], [2.0, 1.0]), ([2, 1], [0.0, 0.25]),
                            ([1, 3], [-1.0, 0.75])]:  # fmt: skip
        env.step(np.array(index))
        np.testing.assert_allclose(env.unwrapped.last, expected)


@pytest.mark.parametrize("index, torque", [(0, -2.0), (2, 0.0), (4, 2.0)])
def test_make_env_bins_reach_the_env_bounds(index, torque):
    """Pendulum's torque is in [-2, 2]: bins of make_env (after its [-1, 1] rescale) must give
    the same dynamics as the raw torques."""
    binned, raw = make_env("Pendulum-v1", bins=5), gym.make("Pendulum-v1")
    binned.reset(seed=3)
    raw.reset(seed=3)
    a = binned.step(np.array([index]))[0]
    b = raw.step(np.array([torque], np.float32))[0]
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_random_actions_cover_every_bin():
    space = make_env("Hopper-v5", bins=3).action_space
    actions = random_actions(space, np.random.default_rng(0), 300)
    assert actions.shape == (300, 3) and set(np.unique(actions)) == {0, 1, 2}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env", "Pendulum-v1", "--bins", "1"], "bins must be 0"),
        (["--env", "CartPole-v1", "--bins", "3"], "flat Box action space"),
        (["--agent", "td3", "--env", "Pendulum-v1", "--bins", "3"], "continuous (Box)"),
    ],
)
def test_bad_bins_are_one_line_errors(argv, message, tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main([*argv, "--run-dir", str(run), "--progress", "off"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()
