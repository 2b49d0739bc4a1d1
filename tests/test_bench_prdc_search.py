"""bench/prdc_search.py's state-ball search returns the k-d tree's nearest distances (the
block search it also times is agents/nearest.py's, tested in tests/test_nearest.py)."""

import importlib.util
from pathlib import Path

import numpy as np
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
