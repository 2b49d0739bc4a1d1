"""ogzoo's D4RL-style datasets for Gymnasium MuJoCo v5, generated locally and reproducibly.

Names follow D4RL with the Gymnasium version: `<task>-<kind>-v5`, e.g. `hopper-random-v5`,
`halfcheetah-random-expert-5-v5`. A dataset is a sequence of whole episodes of one behaviour
policy, collected in `Task-v5` (1000-step time limit) from seeded resets, written in the D4RL
layout (envs/datasets/d4rl.py) with qpos/qvel before every action and metadata recording how
it was made. The same name, size and seed always give the same file, byte for byte.

Kinds: `random` (uniform-random actions); `medium`, `expert`, `medium-expert` and
`random-expert-P` need the shipped behaviour policies (envs/datasets/policies.py);
`medium-replay` (the replay buffer of the run that trained the medium policy) is not built yet.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import envs
from core.errors import UserError
from envs.datasets.d4rl import write_d4rl
from envs.datasets.dataset import Dataset
from envs.datasets.policies import (
    REFERENCE_EPISODES,
    acting_function,
    episode_returns,
    load_policy,
)

TASKS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
KINDS = ["random", "medium", "expert", "medium-replay", "medium-expert",
         "random-expert-1", "random-expert-5", "random-expert-10"]  # fmt: skip
POLICY_FREE = {"random"}  # kinds that need no shipped policy
NOT_YET = {"medium-replay"}  # kinds make() cannot produce yet
NAME = re.compile(r"^(?P<task>[a-z0-9]+)-(?P<kind>[a-z0-9-]+?)-v5$")
DEFAULT_SIZE = 1_000_000


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
    env_id: str, policy: Callable[[np.ndarray], np.ndarray], size: int, seed: int,
    whole: bool = False,
) -> Dataset:  # fmt: skip
    """`size` transitions of episodes from seeded resets (episode k: seed + k). The episode
    running when the size is reached is cut there and marked as a timeout, or, with `whole`,
    played to its end (the dataset then holds up to one episode more than `size`)."""
    env = envs.make_env(env_id)
    arrays: dict[str, list] = {k: [] for k in
        ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts")}  # fmt: skip
    sim = []
    episode = 0
    while len(arrays["obs"]) < size:
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done and (whole or len(arrays["obs"]) < size):
            action = policy(obs)
            sim.append(envs.get_sim_state(env))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            cut = not whole and len(arrays["obs"]) + 1 == size
            for key, value in zip(arrays, (obs, action, reward, next_obs, terminated,
                                           (truncated or cut) and not terminated)):  # fmt: skip
                arrays[key].append(value)
            obs, done = next_obs, terminated or truncated
        episode += 1
    nq = env.unwrapped.model.nq
    sim = np.asarray(sim, dtype=np.float64)
    return Dataset(
        observations=np.asarray(arrays["obs"]),
        actions=np.asarray(arrays["actions"]),
        rewards=np.asarray(arrays["rewards"]),
        next_observations=np.asarray(arrays["next_obs"]),
        terminals=np.asarray(arrays["terminals"]),
        timeouts=np.asarray(arrays["timeouts"]),
        qpos=sim[:, :nq],
        qvel=sim[:, nq:],
    )


def random_policy(env_id: str, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    env = envs.make_env(env_id)
    rng = np.random.default_rng(seed)
    return lambda obs: envs.random_actions(env.action_space, rng, 1)[0]


def concat(*parts: Dataset) -> Dataset:
    """Datasets one after the other (each part ends with an episode end)."""
    fields = ("observations", "actions", "rewards", "next_observations", "terminals",
              "timeouts", "qpos", "qvel")  # fmt: skip
    return Dataset(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields})


def make(
    name: str, size: int = DEFAULT_SIZE, seed: int = 0, root: Path | None = None,
    policies: Path | None = None,
) -> Path:  # fmt: skip
    """Generate dataset `name` and write it (atomically) under `root`; returns its path.

    random: uniform-random actions. medium / expert: the shipped policy of that level, acting
    as it explores. medium-expert: `size` medium then `size` expert transitions (D4RL's 2x).
    random-expert-P: whole expert episodes until they hold P% of `size`, then random ones.
    References, each a mean over 100 episodes on the same env version: ref_min = the random
    policy's return, ref_max = the expert policy's (measured when it was exported).
    """
    env_id, kind = parse_name(name)
    task = name.split("-")[0]
    if size < 1:
        raise UserError(f"dataset size must be >= 1, got {size}")
    if kind in NOT_YET:
        raise UserError(f"'{name}' (the medium run's replay buffer) cannot be generated yet")
    expert, expert_info = (
        (None, None) if kind in POLICY_FREE else load_policy(task, "expert", policies)
    )
    random_ref = episode_returns(env_id, random_policy(env_id, seed + 1), REFERENCE_EPISODES,
                                 seed + 1_000_000)  # fmt: skip
    meta = {"name": name, "env_id": env_id, "kind": kind, "seed": seed, "size": size,
            "ogzoo_version": _version(), "ref_min_score": float(random_ref.mean()),
            "ref_episodes": REFERENCE_EPISODES}  # fmt: skip
    random_act = random_policy(env_id, seed)
    with torch.random.fork_rng():  # the policies' exploration noise, seeded per dataset
        torch.manual_seed(seed)
        if kind == "random":
            data = collect(env_id, random_act, size, seed)
            meta["policy"] = "uniform random"
        else:
            meta["ref_max_score"] = float(expert_info["metadata"]["return_mean"])
            meta["expert_policy"] = describe(expert_info)
            data, extra = _policy_kind(env_id, task, kind, size, seed, expert, random_act,
                                       policies)  # fmt: skip
            meta.update(extra)
    data.metadata = meta
    path = path_of(name, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_d4rl(path, data)
    return path


def describe(info: dict) -> str:
    meta = info["metadata"]
    return (f"{info['agent']} on {info['env']} at {meta['source_env_steps']} env steps, "
            f"return {meta['return_mean']:.1f} +- {meta['return_std']:.1f}")  # fmt: skip


def _policy_kind(env_id, task, kind, size, seed, expert, random_act, policies):
    """(dataset, extra metadata) of a kind that uses the shipped policies."""
    expert_act = acting_function(expert)
    if kind == "expert":
        return collect(env_id, expert_act, size, seed), {}
    if kind.startswith("random-expert-"):
        percent = int(kind.rsplit("-", 1)[1])
        expert_part = collect(env_id, expert_act, -(-size * percent // 100), seed, whole=True)
        rest = max(size - len(expert_part), 1)
        random_part = collect(env_id, random_act, rest, seed + 1_000_003)
        return concat(expert_part, random_part), {"expert_transitions": len(expert_part)}
    medium, medium_info = load_policy(task, "medium", policies)
    extra = {"medium_policy": describe(medium_info)}
    medium_part = collect(env_id, acting_function(medium), size, seed)
    if kind == "medium":
        return medium_part, extra
    expert_part = collect(env_id, expert_act, size, seed + 1_000_003)  # medium-expert
    return concat(medium_part, expert_part), extra


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ogzoo")
    except PackageNotFoundError:
        return "unknown"
