"""Normalized scores: 100 * (R - ref_min) / (ref_max - ref_min).

ogzoo's own references are measured returns (a uniform-random policy and the expert, on the
same env version) stored in each dataset's metadata, as Minari does. The D4RL constants below
are D4RL's published references for its own (mujoco-py era) envs; scores computed with them are
labelled "D4RL constants" and are only for comparison with published tables.
"""

from __future__ import annotations

import numpy as np

from core.errors import UserError

# D4RL constants: (random, expert) reference returns per MuJoCo task (see REFERENCES.md).
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}


def normalized_score(
    returns: float | np.ndarray, ref_min: float, ref_max: float
) -> float | np.ndarray:
    """100 * (returns - ref_min) / (ref_max - ref_min); a float for a scalar, else an array."""
    if ref_max == ref_min:
        raise ValueError(f"reference scores are equal ({ref_min}): cannot normalize")
    score = 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)
    return float(score) if score.ndim == 0 else score


def d4rl_task(env_id: str) -> str:
    """The D4RL task of an env id or dataset name: Hopper-v5 or hopper-medium-v2 -> hopper."""
    return env_id.split("/")[-1].split("-")[0].lower()


def d4rl_ref_scores(env_id: str) -> tuple[float, float]:
    """D4RL constants (random, expert) for an env id; UserError for tasks D4RL has none for."""
    task = d4rl_task(env_id)
    if task not in D4RL_REF_SCORES:
        known = ", ".join(sorted(D4RL_REF_SCORES))
        raise UserError(f"no D4RL constants for '{env_id}' (D4RL has them for {known})")
    return D4RL_REF_SCORES[task]


def d4rl_normalized_score(returns: float | np.ndarray, env_id: str) -> float | np.ndarray:
    """Normalized score with the D4RL constants for env_id's task (for published tables)."""
    return normalized_score(returns, *d4rl_ref_scores(env_id))
