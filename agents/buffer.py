"""The replay buffer shared by every agent, online and offline.

Storage is preallocated CPU tensors laid out ``T x N x ...`` where ``N`` is the number of vector
envs and ``T = ceil(capacity / N)`` rows. One ``add`` call writes one row (one step of all envs),
so each env's transitions are contiguous in time along ``T``; n-step returns walk down that axis.
When all rows are used the buffer is a ring: the next ``add`` overwrites the oldest row. A
transition is addressed by its flat storage index ``t * N + e`` (row ``t``, env ``e``); sampling
weights and ``Batch.indices`` use that order.

Episode ends come in two kinds, kept apart so bootstrapping is right (Pardo et al. 2018,
"Time Limits in Reinforcement Learning"):

- ``terminated``: a true terminal state was reached; its value is zero, so the target must NOT
  bootstrap from ``next_obs``.
- ``truncated``: the episode was cut (time limit, resumed run); the state still has a value, so
  the target bootstraps from ``next_obs`` as usual.

Both end an episode for n-step purposes. An n-step sample starting at ``(t, e)`` sums
``sum_{k<m} gamma^k r_{t+k}`` along env ``e``'s timeline, where ``m <= n_step`` stops early
after the first terminated or truncated transition and never walks past the newest written row.
It returns the ``next_obs`` and flags of transition ``t + m - 1`` and ``discounts = gamma ** m``,
so every agent's target is ``rewards + discounts * (1 - terminated) * Q(next_obs, .)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.errors import UserError, clip
from core.runs import atomic_write, torch_load

ArrayLike = np.ndarray | torch.Tensor

# Fields every buffer stores, in the order `add` takes them.
_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")


@dataclass
class Batch:
    """A sampled minibatch; every tensor has leading dim B (batch size)."""

    obs: torch.Tensor  # B x *obs_shape, stored dtype (float32, or uint8 for pixels)
    actions: torch.Tensor  # B x *action_shape, stored dtype (float32 continuous, int64 discrete)
    rewards: torch.Tensor  # B float32; for n-step, sum_{k<m} gamma^k r_{t+k}
    next_obs: torch.Tensor  # B x *obs_shape: the observation to bootstrap from (after m steps)
    terminated: torch.Tensor  # B float32, 1.0 = true terminal state reached, do NOT bootstrap
    truncated: torch.Tensor  # B float32, 1.0 = episode cut by time limit (still bootstrap)
    discounts: torch.Tensor  # B float32, gamma ** m, m = number of rewards summed
    extras: dict[str, torch.Tensor]  # per-transition extra fields of the FIRST transition
    indices: torch.Tensor  # B int64 flat storage indices (t * num_envs + e)


class ReplayBuffer:
    """Preallocated ring buffer of vector-env transitions with n-step and weighted sampling."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        *,
        num_envs: int = 1,
        obs_dtype: torch.dtype = torch.float32,
        action_dtype: torch.dtype = torch.float32,
        extras: dict[str, tuple[tuple[int, ...], torch.dtype]] | None = None,
        seed: int = 0,
    ) -> None:
        if capacity < 1 or num_envs < 1:
            raise ValueError(f"capacity ({capacity}) and num_envs ({num_envs}) must be >= 1")
        self._num_envs = num_envs
        self._rows = -(-capacity // num_envs)  # ceil: capacity is rounded up to whole rows
        self._obs_shape = tuple(obs_shape)
        self._action_shape = tuple(action_shape)
        self._obs_dtype = obs_dtype
        self._action_dtype = action_dtype
        self._extra_specs = {k: (tuple(s), d) for k, (s, d) in (extras or {}).items()}
        self._seed = seed
        T, N = self._rows, num_envs

        self._obs = torch.zeros((T, N, *self._obs_shape), dtype=obs_dtype)  # T x N x obs
        self._next_obs = torch.zeros_like(self._obs)  # T x N x obs
        self._actions = torch.zeros((T, N, *self._action_shape), dtype=action_dtype)  # T x N x act
        # Flags are stored as float32 so sampling returns them without a conversion.
        self._rewards = torch.zeros((T, N), dtype=torch.float32)  # T x N
        self._terminated = torch.zeros((T, N), dtype=torch.float32)  # T x N
        self._truncated = torch.zeros((T, N), dtype=torch.float32)  # T x N
        self._extras = {
            k: torch.zeros((T, N, *s), dtype=d) for k, (s, d) in self._extra_specs.items()
        }
        # Flat (T*N) views share memory with the storage; the one-step path gathers from them.
        self._flat = {name: t.view(T * N, *t.shape[2:]) for name, t in self._storage().items()}

        self._pos = 0  # next row to write
        self._full = False
        self._rng = np.random.default_rng(seed)
        # Bumped on every add, so weights set for older contents can be detected as stale.
        self._version = 0
        self._weights: np.ndarray | None = None  # flat weights as given (float64)
        self._cdf: np.ndarray | None = None  # cumulative sum of _weights
        self._last_positive = 0  # largest index with positive weight (guards float rounding)
        self._weights_version = 0

    # ------------------------------------------------------------------ basic properties

    @property
    def capacity(self) -> int:
        """Transitions the storage holds (requested capacity rounded up to whole rows)."""
        return self._rows * self._num_envs

    @property
    def num_envs(self) -> int:
        return self._num_envs

    def __len__(self) -> int:
        return self._filled_rows() * self._num_envs

    def _filled_rows(self) -> int:
        return self._rows if self._full else self._pos

    def _storage(self) -> dict[str, torch.Tensor]:
        fields = {
            "obs": self._obs,
            "actions": self._actions,
            "rewards": self._rewards,
            "next_obs": self._next_obs,
            "terminated": self._terminated,
            "truncated": self._truncated,
        }
        fields.update({f"extras/{k}": v for k, v in self._extras.items()})
        return fields

    # ------------------------------------------------------------------ writing

    def add(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        next_obs: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        extras: dict[str, ArrayLike] | None = None,
    ) -> None:
        """Store one vector-env step; every argument has leading dim num_envs."""
        extras = extras or {}
        if set(extras) != set(self._extras):
            raise ValueError(
                f"add() got extras {sorted(extras)}, buffer stores {sorted(self._extras)}"
            )
        row = self._pos
        values = (obs, actions, rewards, next_obs, terminated, truncated)
        for name, dst, value in zip(_FIELDS, self._row_views(row), values, strict=True):
            _copy_into(dst, value, name)
        for name, value in extras.items():
            _copy_into(self._extras[name][row], value, f"extras/{name}")
        self._pos = (row + 1) % self._rows
        self._full = self._full or self._pos == 0
        self._version += 1

    def _row_views(self, row: int) -> tuple[torch.Tensor, ...]:
        return (
            self._obs[row],
            self._actions[row],
            self._rewards[row],
            self._next_obs[row],
            self._terminated[row],
            self._truncated[row],
        )

    def mark_episode_ends(self) -> None:
        """End every env's open episode at its newest transition (truncated=1).

        A resumed run starts fresh episodes, so without this an n-step walk from the old data
        would run on into the first steps of an unrelated episode.
        """
        if len(self) == 0:
            return
        row = (self._pos - 1) % self._rows
        ended = (self._terminated[row] + self._truncated[row]) > 0  # N
        self._truncated[row] = torch.where(ended, self._truncated[row], 1.0)  # N

    @classmethod
    def from_dataset(cls, data: Any, seed: int = 0) -> ReplayBuffer:
        """A full buffer holding an offline dataset (envs/datasets/dataset.py `Dataset`), every
        episode's last transition an episode end. The buffer shares the dataset's observation,
        action, reward and state arrays (no second copy in memory): neither should be modified
        afterwards."""
        return cls.from_arrays(**data.buffer_arrays(), seed=seed, copy=False)

    @classmethod
    def from_arrays(
        cls,
        obs: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        next_obs: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        *,
        extras: dict[str, ArrayLike] | None = None,
        seed: int = 0,
        copy: bool = True,
    ) -> ReplayBuffer:
        """A full num_envs=1 buffer holding a whole dataset (leading dim = transitions).

        Dtypes follow the data: uint8 obs stay uint8 (other obs become float32), integer
        actions become int64 (others float32), extras keep their own dtype. With
        `copy=False`, every array that already has its storage dtype and is contiguous
        becomes the storage itself (no second copy of a 1M-transition dataset in memory);
        the caller must then not modify those arrays.
        """
        values = (obs, actions, rewards, next_obs, terminated, truncated)
        arrays = {name: torch.as_tensor(v) for name, v in zip(_FIELDS, values, strict=True)}
        extra_arrays = {k: torch.as_tensor(v) for k, v in (extras or {}).items()}
        size = arrays["obs"].shape[0]
        lengths = {k: v.shape[0] for k, v in {**arrays, **extra_arrays}.items()}
        if size == 0 or any(n != size for n in lengths.values()):
            raise ValueError(f"from_arrays needs equal, non-zero lengths, got {lengths}")
        obs_dtype = torch.uint8 if arrays["obs"].dtype == torch.uint8 else torch.float32
        is_float_action = arrays["actions"].is_floating_point()
        buffer = cls(
            1 if not copy else size,  # without copying, storage is swapped in below
            tuple(arrays["obs"].shape[1:]),
            tuple(arrays["actions"].shape[1:]),
            num_envs=1,
            obs_dtype=obs_dtype,
            action_dtype=torch.float32 if is_float_action else torch.int64,
            extras={k: (tuple(v.shape[1:]), v.dtype) for k, v in extra_arrays.items()},
            seed=seed,
        )
        if not copy:
            buffer._adopt(size, arrays, extra_arrays)
        storage = buffer._storage()
        for name, value in {
            **arrays,
            **{f"extras/{k}": v for k, v in extra_arrays.items()},
        }.items():
            if storage[name].data_ptr() != value.data_ptr():  # adopted arrays are already there
                _copy_into(storage[name][:, 0], value, name)  # T x ... <- T x ...
        buffer._full = True  # every row written, write head back at row 0
        buffer._version += 1
        return buffer

    def _adopt(self, size: int, arrays: dict, extra_arrays: dict) -> None:
        """Re-size a 1-row num_envs=1 buffer to `size` rows, using each given tensor as its
        storage where dtype and layout already match (else fresh storage to copy into)."""
        self._rows = size
        current = self._storage()

        def storage_for(name: str, value: torch.Tensor) -> torch.Tensor:
            dtype = current[name].dtype
            if value.dtype == dtype and value.is_contiguous():
                return value.unsqueeze(1)  # T x 1 x ..., shares memory
            return torch.zeros((size, 1, *current[name].shape[2:]), dtype=dtype)

        self._obs = storage_for("obs", arrays["obs"])
        self._next_obs = storage_for("next_obs", arrays["next_obs"])
        self._actions = storage_for("actions", arrays["actions"])
        self._rewards = storage_for("rewards", arrays["rewards"])
        self._terminated = storage_for("terminated", arrays["terminated"])
        self._truncated = storage_for("truncated", arrays["truncated"])
        self._extras = {k: storage_for(f"extras/{k}", v) for k, v in extra_arrays.items()}
        self._flat = {n: t.view(size, *t.shape[2:]) for n, t in self._storage().items()}

    # ------------------------------------------------------------------ weights

    def set_weights(self, weights: ArrayLike | None) -> None:
        """Sample proportionally to non-negative per-transition weights; None = uniform.

        `weights` has len(self) entries in flat storage order (t * num_envs + e), or shape
        (filled_rows, num_envs). They describe the current contents only: adding data
        afterwards makes the next sample() raise until set_weights is called again.
        """
        if weights is None:
            self._weights = self._cdf = None
            return
        w = np.asarray(weights, dtype=np.float64)
        if w.shape not in ((len(self),), (self._filled_rows(), self._num_envs)):
            raise ValueError(
                f"weights shape {w.shape} does not match the buffer: need ({len(self)},) "
                f"or ({self._filled_rows()}, {self._num_envs})"
            )
        w = w.reshape(-1)  # row-major, so position = t * N + e
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and non-negative")
        if not np.any(w > 0):
            raise ValueError("weights are all zero: nothing could be sampled")
        self._install_weights(w)
        self._weights_version = self._version

    def _install_weights(self, w: np.ndarray) -> None:
        self._weights = w
        self._cdf = np.cumsum(w)
        self._last_positive = int(np.flatnonzero(w > 0)[-1])

    def _draw(self, batch_size: int) -> np.ndarray:
        """Flat storage indices of a batch, uniform or weighted."""
        if self._cdf is None:
            return self._rng.integers(0, len(self), size=batch_size)
        if self._weights_version != self._version:
            raise ValueError(
                "sampling weights are stale (data was added after set_weights); "
                "call set_weights again or set_weights(None)"
            )
        # Inverse-CDF sampling: the first index whose cumulative weight exceeds u; zero-weight
        # items have an empty interval, so they are never hit.
        u = self._rng.random(batch_size) * self._cdf[-1]
        idx = np.searchsorted(self._cdf, u, side="right")
        # u can round up to the total; clamp onto the last item that may be drawn.
        return np.minimum(idx, self._last_positive)

    # ------------------------------------------------------------------ sampling

    def sample(
        self,
        batch_size: int,
        *,
        n_step: int = 1,
        gamma: float = 0.99,
        device: str | torch.device = "cpu",
    ) -> Batch:
        """Draw batch_size transitions (uniform, or by set_weights) as n-step samples."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        idx = torch.from_numpy(self._draw(batch_size))  # B flat indices
        if n_step == 1:
            batch = self._gather_flat(idx, gamma)
        else:
            batch = self._gather(idx // self._num_envs, idx % self._num_envs, n_step, gamma)
        if device != "cpu" and torch.device(device).type != "cpu":
            batch = _batch_to(batch, torch.device(device))
        return batch

    def transitions(self, indices: ArrayLike) -> Batch:
        """The stored one-step transitions at flat indices (any of 0 .. len-1), without drawing
        from the buffer's own RNG (the bias harness picks states without changing training)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self)):
            raise IndexError(f"transition indices must lie in [0, {len(self)})")
        return self._gather_flat(idx, gamma=1.0)

    def _gather_flat(self, idx: torch.Tensor, gamma: float) -> Batch:
        """One-step fast path: a plain gather from the flat views."""
        flat = self._flat
        return Batch(
            obs=flat["obs"].index_select(0, idx),  # B x obs
            actions=flat["actions"].index_select(0, idx),  # B x act
            rewards=flat["rewards"].index_select(0, idx),  # B
            next_obs=flat["next_obs"].index_select(0, idx),  # B x obs
            terminated=flat["terminated"].index_select(0, idx),  # B
            truncated=flat["truncated"].index_select(0, idx),  # B
            discounts=torch.full((idx.shape[0],), gamma, dtype=torch.float32),  # B
            extras={k: flat[f"extras/{k}"].index_select(0, idx) for k in self._extras},
            indices=idx,
        )

    def _gather(self, t_idx: torch.Tensor, e_idx: torch.Tensor, n_step: int, gamma: float) -> Batch:
        """n-step batch for start rows t_idx and envs e_idx (both B int64), see module doc."""
        t_idx = torch.as_tensor(t_idx, dtype=torch.int64)
        e_idx = torch.as_tensor(e_idx, dtype=torch.int64)
        T = self._rows
        # Rows written after t on this env's timeline; the walk must not pass the write head.
        rows_after = (self._pos - 1 - t_idx) % T  # B
        max_steps = torch.clamp(rows_after + 1, max=n_step)  # B
        returns = torch.zeros(t_idx.shape, dtype=torch.float32)  # B
        m = torch.zeros(t_idx.shape, dtype=torch.int64)  # B, rewards summed so far
        last = t_idx.clone()  # B, row of the last transition summed
        alive = torch.ones(t_idx.shape, dtype=torch.bool)  # B, episode not ended yet
        for k in range(n_step):
            active = alive & (k < max_steps)  # B
            if not bool(active.any()):
                break
            row = (t_idx + k) % T  # B, modulo T: the walk may cross the ring's wrap
            returns += torch.where(active, self._rewards[row, e_idx] * gamma**k, 0.0)  # B
            m += active
            last = torch.where(active, row, last)
            # Stop after the first episode end of either kind (both end the episode).
            ended = (self._terminated[row, e_idx] + self._truncated[row, e_idx]) > 0  # B
            alive = active & ~ended
        return Batch(
            obs=self._obs[t_idx, e_idx],  # B x obs
            actions=self._actions[t_idx, e_idx],  # B x act
            rewards=returns,
            next_obs=self._next_obs[last, e_idx],  # B x obs, after m steps
            terminated=self._terminated[last, e_idx],  # B
            truncated=self._truncated[last, e_idx],  # B
            discounts=torch.full(m.shape, gamma, dtype=torch.float32).pow(m),  # B, gamma^m
            extras={k: v[t_idx, e_idx] for k, v in self._extras.items()},
            indices=t_idx * self._num_envs + e_idx,
        )

    # ------------------------------------------------------------------ persistence

    def _config(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "obs_shape": self._obs_shape,
            "action_shape": self._action_shape,
            "num_envs": self._num_envs,
            "obs_dtype": self._obs_dtype,
            "action_dtype": self._action_dtype,
            "extras": self._extra_specs,
            "seed": self._seed,
        }

    def sampler_state(self) -> dict[str, Any]:
        """The sampling RNG's state alone (an offline run saves this, not the dataset)."""
        return self._rng.bit_generator.state

    def set_sampler_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state

    def state_dict(self) -> dict[str, Any]:
        """Filled storage, write position, RNG state and weights (clones, safe to keep)."""
        filled = self._filled_rows()
        weights = None if self._weights is None else torch.from_numpy(self._weights.copy())
        return {
            "config": self._config(),
            "storage": {k: v[:filled].clone() for k, v in self._storage().items()},
            "pos": self._pos,
            "full": self._full,
            "rng_state": self._rng.bit_generator.state,
            "weights": weights,
            "weights_stale": self._weights is not None and self._weights_version != self._version,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The seed may differ: the RNG state below replaces whatever it seeded.
        saved = {k: v for k, v in state["config"].items() if k != "seed"}
        mine = {k: v for k, v in self._config().items() if k != "seed"}
        if saved != mine:
            raise ValueError(f"buffer state was saved with {saved}, this buffer is {mine}")
        filled = self._rows if state["full"] else state["pos"]
        for name, dst in self._storage().items():
            src = state["storage"][name]
            if src.shape != (filled, *dst.shape[1:]):
                raise ValueError(
                    f"stored {name} has shape {tuple(src.shape)}, expected "
                    f"{(filled, *dst.shape[1:])}"
                )
            dst[:filled] = src
            dst[filled:] = 0
        self._pos = state["pos"]
        self._full = state["full"]
        self._rng.bit_generator.state = state["rng_state"]
        self._version += 1
        if state["weights"] is None:
            self._weights = self._cdf = None
        else:
            self._install_weights(state["weights"].numpy().astype(np.float64))
            # Stale weights stay stale, so the loaded buffer fails exactly where the original would.
            self._weights_version = self._version - int(state["weights_stale"])

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically and durably (core.runs.atomic_write): a crash mid-save leaves the
        previous file intact, and once this returns the file survives a crash, so a checkpoint
        written next may name it."""
        state = self.state_dict()
        atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReplayBuffer:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"replay buffer file not found: {path}")
        try:
            state = torch_load(path, "replay buffer")  # one line: what is wrong with the bytes
        except UserError as err:
            raise ValueError(str(err)) from None
        try:
            buffer = cls(**state["config"])
            buffer.load_state_dict(state)
        except Exception as err:  # readable, but not a buffer's state (or not this one's)
            reason = clip(f"{type(err).__name__}: {err}", 100)
            raise ValueError(f"cannot load replay buffer from {path}: {reason}") from err
        return buffer


def _copy_into(dst: torch.Tensor, value: ArrayLike, name: str) -> None:
    """Copy numpy/torch data into preallocated storage: one copy, dtype cast on the way."""
    src = torch.as_tensor(value)  # shares memory with a numpy array, no copy
    if src.shape != dst.shape:
        raise ValueError(f"{name} has shape {tuple(src.shape)}, expected {tuple(dst.shape)}")
    dst.copy_(src)


def _batch_to(batch: Batch, device: torch.device) -> Batch:
    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, non_blocking=True)

    return Batch(
        obs=move(batch.obs),
        actions=move(batch.actions),
        rewards=move(batch.rewards),
        next_obs=move(batch.next_obs),
        terminated=move(batch.terminated),
        truncated=move(batch.truncated),
        discounts=move(batch.discounts),
        extras={k: move(v) for k, v in batch.extras.items()},
        indices=move(batch.indices),
    )
