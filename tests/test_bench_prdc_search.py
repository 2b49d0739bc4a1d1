"""bench/prdc_search.py's state-ball search returns the k-d tree's nearest distances (the
block search it also times is agents/nearest.py's, tested in tests/test_nearest.py)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("prdc_search", REPO / "bench" / "prdc_search.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_state_ball_finds_the_nearest_key():
    rng = np.random.default_rng(3)
    states = 2.0 * rng.standard_normal((2000, 5))
    keys = np.concatenate([states, rng.uniform(-1, 1, (2000, 2))], 1)
    rows = rng.integers(0, 2000, 64)
    # far actions, so that the nearest key is often not the query's own row
    queries = np.concatenate([states[rows], rng.uniform(-3, 3, (64, 2))], 1)
    exact = np.sqrt(((keys[None] - queries[:, None]) ** 2).sum(-1)).min(1)
    assert not np.allclose(exact, np.linalg.norm(queries - keys[rows], axis=1))
    found = bench.state_ball(cKDTree(states), keys, queries)
    np.testing.assert_allclose(found, exact, rtol=0, atol=1e-12)


def test_the_actor_row_comes_from_the_runs_actor_on_its_own_dataset_only(tmp_path):
    import train
    from agents import prdc
    from core.config import apply_overrides
    from core.errors import UserError
    from datagen import load_dataset
    from datagen.generate import collect, random_policy
    from envs import make_env
    from envs.datasets import write_d4rl

    paths = []
    for seed in (0, 1):  # two datasets of the same env
        data = collect("Hopper-v5", random_policy("Hopper-v5", seed), 300, seed=seed)
        data.metadata = {"env_id": "Hopper-v5", "ref_min_score": -20.0, "ref_max_score": 3000.0}
        paths.append(tmp_path / f"hopper-{seed}.hdf5")
        write_d4rl(paths[-1], data)
    run = tmp_path / "prdc"
    assert train.main(["--agent", "prdc", "--dataset", str(paths[0]), "--total-steps", "20",
                       "--eval-every", "20", "--eval-episodes", "1", "--progress", "off",
                       "--run-dir", str(run)]) == 0  # fmt: skip
    data = load_dataset(str(paths[0]))[0]
    states = data.observations[:16]
    label, actions = bench.actor_actions(str(run), data, states)
    assert label == "actor at 20 updates"
    # The expected actor, built apart from evaluate.load_agent (which actor_actions calls): the
    # finished run's final checkpoint's actor in a fresh agent, its states normalized with the
    # statistics of the dataset it trained on (PRDC normalizes as TD3+BC does).
    ckpt = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    env = make_env("Hopper-v5")
    cfg = apply_overrides(prdc.Config(), ckpt["agent_config"], "prdc")
    fresh = prdc.Agent(cfg, env.observation_space, env.action_space)
    fresh.actor.load_state_dict(ckpt["agent_state"]["actor"])
    fresh.obs_norm.fit(torch.as_tensor(data.observations))
    np.testing.assert_array_equal(actions, fresh.act(states, deterministic=True))
    assert np.abs(actions).max() > 0  # the actor's, not a placeholder
    other = load_dataset(str(paths[1]))[0]
    with pytest.raises(UserError, match="was not trained on this dataset"):
        bench.actor_actions(str(run), other, other.observations[:16])
