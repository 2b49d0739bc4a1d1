"""Gymnasium environments for the zoo: one factory, a small synchronous vector env, sim state.

- `make_env(env_id)`: any registered Gymnasium id (MuJoCo v5 included). Box actions are
  rescaled to [-1, 1], so every continuous agent acts in the same units; `bins=N` turns them
  into N evenly spread values per dimension (a MultiDiscrete space, for discrete agents).
- `VecEnv`: N copies stepped in lock-step, with automatic reset. `step` returns the true final
  observation of a finished episode as `next_obs` (to store in the replay buffer) and the reset
  observation as `obs` (to act from next), keeping `terminated` and `truncated` apart.
- `get_sim_state` / `set_sim_state`: MuJoCo's (qpos, qvel) as one flat vector, so harness code
  can restore states seen during training (bias measurement). Any other env joins by giving
  its unwrapped env `get_sim_state()` and `set_sim_state(state) -> obs` methods.

Seeding: training env i is reset with `seed + i` once, then continues its own RNG; evaluation
uses a separate env whose episode k starts from `eval_seed + k` (the same start states at every
evaluation point, so successive evaluations differ only by the policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from envs.levels import LevelEnv, LevelSpec


def check_env_id(env_id: str) -> None:
    """ValueError with a one-line message if `env_id` is not a registered Gymnasium id."""
    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"unknown environment id '{env_id}' ({exc})") from None


# Gymnasium tasks that never terminate, only hit their time limit (their step functions
# return terminated=False always): MuJoCo HalfCheetah, Swimmer, Reacher, Pusher; Pendulum.
NEVER_TERMINATE = {"HalfCheetah", "Swimmer", "Reacher", "Pusher", "Pendulum"}


def can_terminate(env_id: str) -> bool:
    """Whether episodes of `env_id` can end by termination (not only by a time limit); ids
    not known to be non-episodic count as episodic. SimBa keys its clipped double Q on this."""
    family = env_id.split("/")[-1].split("-v")[0]
    return family not in NEVER_TERMINATE


class DiscretizeActions(gym.ActionWrapper):
    """A Box action space as per-dimension bins: MultiDiscrete([bins] * dim), where index k of
    dimension j is the continuous action low_j + k (high_j - low_j) / (bins - 1) (the bins
    spread evenly over the bounds, both bounds included)."""

    def __init__(self, env: gym.Env, bins: int):
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"--bins needs a flat Box action space, got {space}")
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        self.values = np.linspace(space.low, space.high, bins, dtype=np.float64).T  # dim x bins
        self.action_space = gym.spaces.MultiDiscrete(np.full(space.shape[0], bins))

    def action(self, action: np.ndarray) -> np.ndarray:
        index = np.asarray(action, dtype=np.int64)
        chosen = self.values[np.arange(len(index)), index]
        return chosen.astype(self.env.action_space.dtype)


def make_env(
    env_id: str, seed: int | None = None, max_episode_steps: int | None = None, bins: int = 0,
    levels: LevelSpec | None = None, schedule: Sequence[int] | None = None,
) -> gym.Env:  # fmt: skip
    """A Gymnasium env with Box actions in [-1, 1], or with `bins` > 0 those actions as
    per-dimension bins (DiscretizeActions); with `seed`, its first reset and its action space
    are seeded (later resets continue the env's own RNG). `max_episode_steps` replaces the
    registered time limit. `levels`: every episode plays a level of physical parameters
    (envs/levels.py), the next of `schedule` if given, else a drawn training level."""
    check_env_id(env_id)
    env = gym.make(env_id, max_episode_steps=max_episode_steps)
    space = env.action_space
    if isinstance(space, gym.spaces.Box) and not (
        np.all(space.low == -1.0) and np.all(space.high == 1.0)
    ):
        ones = np.ones(space.shape, dtype=space.dtype)
        env = gym.wrappers.RescaleAction(env, -ones, ones)
    if bins:
        env = DiscretizeActions(env, bins)
    if levels is not None:
        env = LevelEnv(env, levels, schedule)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def get_sim_state(env: gym.Env) -> np.ndarray | None:
    """MuJoCo (qpos, qvel) concatenated (or the env's own `get_sim_state()`); None for envs
    whose state cannot be restored."""
    base = env.unwrapped
    if callable(getattr(base, "get_sim_state", None)):
        return np.asarray(base.get_sim_state(), dtype=np.float64)
    data = getattr(base, "data", None)
    if data is None or not hasattr(base, "set_state"):
        return None
    return np.concatenate([data.qpos, data.qvel]).astype(np.float64)


def set_sim_state(env: gym.Env, state: np.ndarray) -> np.ndarray:
    """Restore a state from `get_sim_state`; returns the observation of the restored state.
    The env must have been reset once (its time-limit counter restarts at that reset)."""
    base = env.unwrapped
    if callable(getattr(base, "set_sim_state", None)):
        return np.asarray(base.set_sim_state(state))
    nq = base.model.nq
    base.set_state(np.asarray(state[:nq]), np.asarray(state[nq:]))
    return base._get_obs()


def sim_state_dim(env: gym.Env) -> int:
    state = get_sim_state(env)
    return 0 if state is None else int(state.shape[0])


def random_actions(space: gym.Space, rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniform-random actions from `space`, drawn from `rng` (checkpointed with the run)."""
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(space.dtype)
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, size=(n, *space.nvec.shape))
    raise ValueError(f"no random-action rule for {space}")


@dataclass
class StepResult:
    obs: np.ndarray  # N x obs: observation to act from next (reset obs where an episode ended)
    next_obs: np.ndarray  # N x obs: the observation the action led to (final obs if ended)
    rewards: np.ndarray  # N
    terminated: np.ndarray  # N bool
    truncated: np.ndarray  # N bool
    finished: list[tuple[float, int]] = field(default_factory=list)  # (return, length) per ended


class VecEnv:
    """N environments stepped synchronously with automatic reset. With `levels` every episode
    plays a level (envs/levels.py): env i the next of `schedules[i]` when given, else a drawn
    training level; `current_levels()` and `finished_levels` (the level of each episode in the
    last step's `finished`) say which. `split` (None here) is for the caller to set to the
    training levels' `LevelSpec` where the generalization report should count them."""

    def __init__(
        self, env_id: str, num_envs: int, seed: int, bins: int = 0,
        levels: LevelSpec | None = None, schedules: Sequence[Sequence[int]] | None = None,
    ):  # fmt: skip
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        if schedules is not None and len(schedules) != num_envs:
            raise ValueError(f"{len(schedules)} level schedules for {num_envs} envs")
        self.envs = [
            make_env(env_id, bins=bins, levels=levels,
                     schedule=None if schedules is None else schedules[i])
            for i in range(num_envs)
        ]  # fmt: skip
        self.levels = levels
        self.split: LevelSpec | None = None
        self.finished_levels: list[int] | None = [] if levels is not None else None
        self.num_envs = num_envs
        self.seed = seed
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start fresh episodes in all envs; env i is seeded with seed + i."""
        seed = self.seed if seed is None else seed
        obs = []
        for i, env in enumerate(self.envs):
            o, _ = env.reset(seed=seed + i)
            obs.append(o)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return np.stack(obs)

    def current_levels(self) -> np.ndarray | None:
        """The level each env is playing (None without levels)."""
        if self.levels is None:
            return None
        return np.asarray([env.level for env in self.envs], dtype=np.int64)

    def sim_states(self) -> np.ndarray | None:
        states = [get_sim_state(env) for env in self.envs]
        return None if states[0] is None else np.stack(states)

    def step(self, actions: np.ndarray) -> StepResult:
        obs, next_obs, rewards, terms, truncs, finished = [], [], [], [], [], []
        if self.finished_levels is not None:
            self.finished_levels = []
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(actions[i])
            self._returns[i] += r
            self._lengths[i] += 1
            next_obs.append(o)
            if term or trunc:
                finished.append((float(self._returns[i]), int(self._lengths[i])))
                self._returns[i] = 0.0
                self._lengths[i] = 0
                if self.finished_levels is not None:
                    self.finished_levels.append(env.level)
                o, _ = env.reset()
            obs.append(o)
            rewards.append(r)
            terms.append(term)
            truncs.append(trunc)
        return StepResult(
            obs=np.stack(obs),
            next_obs=np.stack(next_obs),
            rewards=np.asarray(rewards, dtype=np.float32),
            terminated=np.asarray(terms, dtype=bool),
            truncated=np.asarray(truncs, dtype=bool),
            finished=finished,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
