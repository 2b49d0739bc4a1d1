"""The in-memory offline dataset every reader returns, and what the replay buffer is filled from.

A `Dataset` holds flat numpy arrays under D4RL's names, one row per transition, episodes laid
end to end. Episode ends are stored the D4RL way: `terminals` (a true terminal state: do not
bootstrap) and `timeouts` (a time-limit truncation or any other cut: still bootstrap). An
episode ends at a terminal or a timeout; the last transition of the dataset ends one too.

`buffer_arrays` is what the replay buffer is filled from (`ReplayBuffer.from_dataset` in
agents/buffer.py; envs/ sits below agents and imports no agent code). It makes the last transition
of every episode an episode end in the buffer (truncated=1 where it was neither terminal nor
timeout), so n-step walks never run from one episode into the next. Loading is kept cheap:
the arrays already have the buffer's dtypes, `from_arrays(copy=False)` uses them as its storage,
and qpos/qvel are passed as one `sim_state` extra without a copy when a reader stored them as
two column blocks of one array (so peak memory is the dataset plus the buffer's own storage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import UserError, clip, quote


class DatasetError(UserError):
    """A dataset file that cannot be used; the message is one line naming the file."""

    def __init__(self, source: object, problem: object) -> None:
        # One line of bounded length, whatever the cause says or however long the name given.
        self.source = clip(str(source), 250)
        self.problem = clip(str(problem), 400)
        super().__init__(self.source, self.problem)

    def __str__(self) -> str:
        return f"{self.source}: {self.problem}"


@dataclass
class Dataset:
    """Transitions under D4RL's names (N rows); arrays are converted to the dtypes below."""

    observations: np.ndarray  # N x obs float32
    actions: np.ndarray  # N x act float32
    rewards: np.ndarray  # N float32
    next_observations: np.ndarray  # N x obs float32
    terminals: np.ndarray  # N bool: true terminal state, do not bootstrap
    timeouts: np.ndarray  # N bool: episode cut (time limit), still bootstrap
    qpos: np.ndarray | None = None  # N x nq float64, MuJoCo state before the action
    qvel: np.ndarray | None = None  # N x nv float64
    metadata: dict[str, Any] = field(default_factory=dict)
    levels: np.ndarray | None = None  # N int64: the level each transition was played in

    def __post_init__(self) -> None:
        # asarray with the target dtype is free when the dtype already matches (the usual case).
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.terminals = np.asarray(self.terminals, dtype=bool)
        self.timeouts = np.asarray(self.timeouts, dtype=bool)
        if self.qpos is not None:
            self.qpos = np.asarray(self.qpos, dtype=np.float64)
        if self.qvel is not None:
            self.qvel = np.asarray(self.qvel, dtype=np.float64)
        if self.levels is not None:
            self.levels = np.asarray(self.levels, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    def check(self, source: object) -> Dataset:
        """Raise DatasetError (naming `source`) unless shapes and lengths agree; returns self."""
        arrays = {
            "observations": self.observations,
            "actions": self.actions,
            "rewards": self.rewards,
            "next_observations": self.next_observations,
            "terminals": self.terminals,
            "timeouts": self.timeouts,
        }
        if (self.qpos is None) != (self.qvel is None):
            raise DatasetError(source, "has only one of qpos and qvel")
        if self.qpos is not None:
            arrays.update(qpos=self.qpos, qvel=self.qvel)
        if self.levels is not None:
            arrays["levels"] = self.levels
        check_lengths(arrays, source)
        if len(self) == 0:
            raise DatasetError(source, "holds no transitions")
        for name in ("rewards", "terminals", "timeouts"):
            if arrays[name].ndim != 1:
                raise DatasetError(source, f"{name} must be 1-D, got shape {arrays[name].shape}")
        if self.observations.ndim < 2:
            shape = self.observations.shape
            raise DatasetError(source, f"observations must be N x obs, got {shape}")
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError(
                source,
                f"next_observations have shape {self.next_observations.shape}, "
                f"observations {self.observations.shape}",
            )
        for name in ("qpos", "qvel"):
            if name in arrays and arrays[name].ndim != 2:
                raise DatasetError(source, f"{name} must be N x dim, got {arrays[name].shape}")
        check_finite(arrays, source)
        for key in ("ref_min_score", "ref_max_score"):
            value = self.metadata.get(key)
            if value is not None and not (isinstance(value, (int, float, np.number))
                                          and np.isfinite(value)):  # fmt: skip
                raise DatasetError(source, f"metadata {key} is not a finite number: {quote(value)}")
        return self

    def episode_bounds(self) -> np.ndarray:
        """E x 2 int64 [start, stop) of each episode, in order."""
        ends = self.terminals | self.timeouts
        ends[-1] = True  # `|` made a new array, so this does not touch the flags
        stops = np.flatnonzero(ends) + 1
        starts = np.concatenate([[0], stops[:-1]])
        return np.stack([starts, stops], axis=1).astype(np.int64)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode (float64, E entries)."""
        starts = self.episode_bounds()[:, 0]
        return np.add.reduceat(self.rewards.astype(np.float64), starts)

    def buffer_arrays(self) -> dict[str, Any]:
        """The keyword arguments of `ReplayBuffer.from_arrays` for every transition (agents/
        buffer.py `ReplayBuffer.from_dataset`), episode ends marked (see module doc). The
        observation, action, reward and state arrays are this dataset's own, not copies."""
        truncated = self.timeouts.copy()
        truncated[-1] |= not self.terminals[-1]  # the dataset's end cuts its last episode
        extras = {}
        if self.qpos is not None and self.qvel is not None:
            extras["sim_state"] = sim_state(self.qpos, self.qvel)
        if self.levels is not None:  # envs/levels.py: states are restored in their level
            extras["level"] = self.levels
        return {
            "obs": self.observations,
            "actions": self.actions,
            "rewards": self.rewards,
            "next_obs": self.next_observations,
            "terminated": self.terminals,
            "truncated": truncated,
            "extras": extras or None,
        }


def check_lengths(arrays: dict[str, np.ndarray], source: object) -> None:
    """DatasetError listing every length unless all arrays have the same first dimension."""
    lengths = {name: int(a.shape[0]) if a.ndim else 0 for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise DatasetError(source, f"inconsistent lengths: {listed}")


def check_finite(arrays: dict[str, np.ndarray], source: object) -> None:
    """DatasetError naming the first array (in order) with a NaN or infinite value and the
    first row holding one; a learner fed one diverges far from where it came in."""
    for name, array in arrays.items():
        if not np.issubdtype(array.dtype, np.floating):
            continue  # flags and integers cannot be non-finite
        finite = np.isfinite(array)
        if finite.all():
            continue
        rows, finite_rows = array.reshape(len(array), -1), finite.reshape(len(array), -1)
        row = int(np.flatnonzero(~finite_rows.all(axis=1))[0])
        value = rows[row][~finite_rows[row]][0]
        raise DatasetError(source, f"{name} has a non-finite value ({value}) at row {row}")


def split_sim_state(sim: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray]:
    """qpos and qvel as views of one N x (nq + nv) array, so the buffer can take it uncopied."""
    return sim[:, :nq], sim[:, nq:]


def sim_state(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """N x (nq + nv) float64: the array both are views of when possible, else a concatenation."""
    base = qpos.base
    if isinstance(base, np.ndarray) and base is qvel.base and base.ndim == 2:
        nq = qpos.shape[1]
        if _same_view(base[:, :nq], qpos) and _same_view(base[:, nq:], qvel):
            return base
    return np.concatenate([qpos, qvel], axis=1)


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
    )


def check_against_env(
    dataset: Dataset, observation_space: Any, action_space: Any, source: object
) -> None:
    """DatasetError naming `source` if observation or action shapes differ from the env's."""
    pairs = (
        ("observations", dataset.observations.shape[1:], observation_space),
        ("actions", dataset.actions.shape[1:], action_space),
    )
    for name, shape, space in pairs:
        want = tuple(space.shape or ())
        if tuple(shape) != want:
            raise DatasetError(
                source,
                f"{name} have shape {tuple(shape)} but the env's {name[:-1]} space has {want}",
            )
