"""Generated datasets: names, determinism, episode structure and restorable states."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from envs import make_env, set_sim_state
from envs.datasets import generate, read_d4rl
from envs.datasets.__main__ import main as dataset_cli


def test_names_parse_and_unknown_names_are_user_errors():
    assert generate.parse_name("halfcheetah-random-expert-5-v5") == (
        "HalfCheetah-v5",
        "random-expert-5",
    )
    assert generate.parse_name("hopper-medium-replay-v5") == ("Hopper-v5", "medium-replay")
    for bad in ("hopper-random-v2", "ant-random-v5", "hopper-noisy-v5", "hopper"):
        with pytest.raises(UserError, match="unknown dataset"):
            generate.parse_name(bad)


def test_make_is_deterministic_byte_for_byte(tmp_path):
    a = generate.make("hopper-random-v5", size=400, seed=3, root=tmp_path / "a")
    b = generate.make("hopper-random-v5", size=400, seed=3, root=tmp_path / "b")
    c = generate.make("hopper-random-v5", size=400, seed=4, root=tmp_path / "c")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_random_dataset_is_whole_episodes_with_restorable_states(tmp_path):
    data = read_d4rl(generate.make("hopper-random-v5", size=300, seed=0, root=tmp_path))
    assert len(data) == 300 and data.metadata["kind"] == "random"
    assert data.metadata["env_id"] == "Hopper-v5" and data.metadata["seed"] == 0
    # Every episode but the last ends by termination; the last is cut at the size limit.
    ends = np.flatnonzero(data.terminals | data.timeouts)
    assert ends[-1] == 299 and data.timeouts[299] and data.timeouts.sum() == 1
    # Within an episode, next_obs[i] == obs[i+1]; restoring qpos/qvel gives obs back.
    inside = np.setdiff1d(np.arange(299), ends)
    np.testing.assert_array_equal(data.next_observations[inside], data.observations[inside + 1])
    env = make_env("Hopper-v5")
    env.reset(seed=0)
    for i in (0, 57, 298):
        obs = set_sim_state(env, np.concatenate([data.qpos[i], data.qvel[i]]))
        np.testing.assert_allclose(obs, data.observations[i], rtol=1e-6, atol=1e-6)
    assert data.metadata["ref_min_score"] < 100  # a uniform-random Hopper falls fast


def test_cli_reports_missing_and_policy_kinds_in_one_line(tmp_path, capsys):
    root = ["--root", str(tmp_path)]
    assert dataset_cli([*root, "info", "hopper-random-v5"]) == 2
    assert "make it with" in capsys.readouterr().err
    assert dataset_cli([*root, "make", "walker2d-expert-v5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "behaviour policy" in err
    assert not any(tmp_path.iterdir())  # nothing written by failed commands
