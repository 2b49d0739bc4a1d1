"""ogzoo's D4RL-style datasets for Gymnasium MuJoCo v5, generated locally and reproducibly.

Names follow D4RL with the Gymnasium version: `<task>-<kind>-v5`, e.g. `hopper-random-v5`,
`halfcheetah-random-expert-5-v5`. A dataset is a sequence of whole episodes of one behaviour
policy, collected in `Task-v5` (1000-step time limit) from seeded resets, written in the D4RL
layout (envs/datasets/d4rl.py) with qpos/qvel before every action and metadata recording how
it was made. The same name, size and seed always give the same file, byte for byte.

Kinds available now: `random` (uniform-random actions). The policy kinds of issue 5 (medium,
expert, medium-replay, medium-expert, random-expert-P) need the shipped behaviour policies
and are listed as such until those exist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

import envs
from core.errors import UserError
from envs.datasets.d4rl import write_d4rl
from envs.datasets.dataset import Dataset

TASKS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
KINDS = ["random", "medium", "expert", "medium-replay", "medium-expert",
         "random-expert-1", "random-expert-5", "random-expert-10"]  # fmt: skip
GENERATED = {"random"}  # kinds make() can produce today
NAME = re.compile(r"^(?P<task>[a-z0-9]+)-(?P<kind>[a-z0-9-]+?)-v5$")
DEFAULT_SIZE = 1_000_000
REFERENCE_EPISODES = 100  # episodes behind each reference score, as Minari measures them


def datasets_dir() -> Path:
    """Where ogzoo keeps generated datasets: $OGZOO_DATASETS or ~/.ogzoo/datasets."""
    return Path(os.environ.get("OGZOO_DATASETS", Path.home() / ".ogzoo" / "datasets"))


def parse_name(name: str) -> tuple[str, str]:
    """'hopper-random-v5' -> ('Hopper-v5', 'random'); UserError naming the known ones."""
    match = NAME.match(name)
    if not match or match["task"] not in TASKS or match["kind"] not in KINDS:
        raise UserError(
            f"unknown dataset '{name}' (names are <task>-<kind>-v5 with task in "
            f"{', '.join(TASKS)} and kind in {', '.join(KINDS)})"
        )
    return TASKS[match["task"]], match["kind"]


def all_names() -> list[str]:
    return [f"{task}-{kind}-v5" for task in TASKS for kind in KINDS]


def path_of(name: str, root: Path | None = None) -> Path:
    return (root or datasets_dir()) / f"{name}.hdf5"


def collect(
    env_id: str, policy: Callable[[np.ndarray], np.ndarray], size: int, seed: int
) -> Dataset:
    """`size` transitions of whole episodes from seeded resets (episode k: seed + k); the
    episode running when the size is reached is cut there and marked as a timeout."""
    env = envs.make_env(env_id)
    arrays: dict[str, list] = {k: [] for k in
        ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts", "sim")}  # fmt: skip
    episode = 0
    while len(arrays["obs"]) < size:
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done and len(arrays["obs"]) < size:
            action = policy(obs)
            arrays["sim"].append(envs.get_sim_state(env))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            cut = len(arrays["obs"]) + 1 == size
            for key, value in zip(arrays, (obs, action, reward, next_obs, terminated,
                                           (truncated or cut) and not terminated)):  # fmt: skip
                arrays[key].append(value)
            obs, done = next_obs, terminated or truncated
        episode += 1
    base = env.unwrapped
    sim = np.asarray(arrays["sim"], dtype=np.float64)
    return Dataset(
        observations=np.asarray(arrays["obs"]),
        actions=np.asarray(arrays["actions"]),
        rewards=np.asarray(arrays["rewards"]),
        next_observations=np.asarray(arrays["next_obs"]),
        terminals=np.asarray(arrays["terminals"]),
        timeouts=np.asarray(arrays["timeouts"]),
        qpos=sim[:, : base.model.nq],
        qvel=sim[:, base.model.nq :],
    )


def random_policy(env_id: str, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    env = envs.make_env(env_id)
    rng = np.random.default_rng(seed)
    return lambda obs: envs.random_actions(env.action_space, rng, 1)[0]


def episode_returns(env_id: str, policy, episodes: int, seed: int) -> np.ndarray:
    """Undiscounted returns of `episodes` whole episodes (the reference-score measurement)."""
    env = envs.make_env(env_id)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return np.asarray(returns)


def make(name: str, size: int = DEFAULT_SIZE, seed: int = 0, root: Path | None = None) -> Path:
    """Generate dataset `name` and write it (atomically) under `root`; returns its path."""
    env_id, kind = parse_name(name)
    if size < 1:
        raise UserError(f"dataset size must be >= 1, got {size}")
    if kind not in GENERATED:
        raise UserError(f"'{name}' needs a behaviour policy that is not shipped yet")
    dataset = collect(env_id, random_policy(env_id, seed), size, seed)
    random_ref = episode_returns(env_id, random_policy(env_id, seed + 1), REFERENCE_EPISODES,
                                 seed + 1_000_000)  # fmt: skip
    dataset.metadata = {
        "name": name, "env_id": env_id, "kind": kind, "policy": "uniform random",
        "seed": seed, "size": size, "ogzoo_version": _version(),
        "ref_min_score": float(random_ref.mean()),
        "ref_min_episodes": REFERENCE_EPISODES,
    }  # fmt: skip
    path = path_of(name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_d4rl(path, dataset)
    return path


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ogzoo")
    except PackageNotFoundError:
        return "unknown"
