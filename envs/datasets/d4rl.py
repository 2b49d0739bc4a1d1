"""D4RL's HDF5 layout: reader (default and `compat` modes), name lookup and atomic writer.

Layout (flat, one row per transition): `observations, actions, rewards, terminals, timeouts`
(required), `next_observations`, `infos/qpos`, `infos/qvel` (optional) and `metadata/*`;
ogzoo datasets made across MuJoCo levels add `infos/level` (integer level ids, envs/levels.py)
and the level spec as JSON in `metadata/levels`.
ogzoo's own files are this layout with every optional key present; `write_d4rl` stores
metadata as attributes of the `metadata` group (typed scalars and strings, invisible to tools
that load every dataset of a file as data). Real D4RL files keep metadata as small datasets
under `metadata/`; the reader takes both, keyed by their path below `metadata/`.

Two reading modes:

- default: a timeout is a truncation that still bootstraps. `next_observations` is used when
  present. Without it, next_obs[i] = obs[i+1], and transitions whose next observation is
  unknown are dropped: a timeout (obs[i+1] already starts the next episode) and the file's last
  transition, unless they are terminal (a terminal's next_obs is never bootstrapped from).
- `compat=True`: D4RL's reference `qlearning_dataset`, exactly: for i in 0..N-2, next_obs =
  obs[i+1], transitions with timeouts[i] set are dropped, terminals are kept as done, and the
  last transition is dropped; `next_observations` is ignored.

In both modes a kept transition whose successor was dropped gets timeouts=True (unless
terminal): it now ends its episode, and must, or n-step returns would run into the next one.
Its one-step target is unchanged, as a truncation still bootstraps.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.runs import fsync_dir
from envs.datasets.dataset import (
    Dataset,
    DatasetError,
    check_finite,
    check_lengths,
    split_sim_state,
)

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


def d4rl_dataset_dir() -> Path:
    """Where D4RL names are looked up: $D4RL_DATASET_DIR, else ~/.d4rl/datasets."""
    return Path(os.environ.get("D4RL_DATASET_DIR") or Path.home() / ".d4rl" / "datasets")


def resolve_d4rl(name_or_path: str | os.PathLike[str]) -> Path:
    """The file for a path, or for a name as `<name>.hdf5` in d4rl_dataset_dir()."""
    given = Path(name_or_path).expanduser()
    if given.suffix in (".hdf5", ".h5") or len(given.parts) > 1 or given.exists():
        if not given.is_file():
            raise DatasetError(given, "file not found")
        return given
    path = d4rl_dataset_dir() / f"{given}.hdf5"
    if not path.is_file():
        where = "$D4RL_DATASET_DIR or ~/.d4rl/datasets"
        raise DatasetError(path, f"file not found (dataset name '{given}' looked up in {where})")
    return path


def read_d4rl(name_or_path: str | os.PathLike[str], compat: bool = False) -> Dataset:
    """Read a D4RL-layout HDF5 file (module doc: default vs `compat` mode)."""
    path = resolve_d4rl(name_or_path)
    with open_hdf5(path) as f:
        arrays = {key: read_array(f, key, path) for key in REQUIRED_KEYS}
        if "next_observations" in f and not compat:
            arrays["next_observations"] = read_array(f, "next_observations", path)
        sim, nq = _read_sim_state(f, path) if "infos/qpos" in f or "infos/qvel" in f else (None, 0)
        if sim is not None:
            arrays["infos/qpos"] = sim
        if "infos/level" in f:  # ogzoo datasets made across levels (envs/levels.py)
            arrays["infos/level"] = read_array(f, "infos/level", path)
        metadata = _read_metadata(f)
    check_lengths(arrays, path)
    if len(arrays["observations"]) == 0:
        raise DatasetError(path, "holds no transitions")
    # Checked here, before transitions are dropped, so the row named is the file's row.
    named = {key: value for key, value in arrays.items() if key != "infos/qpos"}
    if sim is not None:
        named.update({"infos/qpos": sim[:, :nq], "infos/qvel": sim[:, nq:]})
    check_finite(named, path)

    # Popped, so the file's arrays are freed as soon as filtered copies replace them.
    obs = arrays.pop("observations")
    actions = arrays.pop("actions")
    rewards = arrays.pop("rewards").reshape(-1)
    terminals = arrays.pop("terminals").astype(bool).reshape(-1)
    timeouts = arrays.pop("timeouts").astype(bool).reshape(-1)
    next_obs = arrays.pop("next_observations", None)
    levels = arrays.pop("infos/level", None)
    if levels is not None:
        if not np.issubdtype(levels.dtype, np.integer) or levels.ndim != 1:
            raise DatasetError(path, f"infos/level must be 1-D integer level ids, got "
                               f"{levels.dtype} {levels.shape}")  # fmt: skip
    keep = None
    if next_obs is None:
        next_obs = np.empty_like(obs)
        next_obs[:-1] = obs[1:]
        next_obs[-1] = obs[-1]  # placeholder: kept only when terminal, never bootstrapped
        if compat:
            keep = ~timeouts
            keep[-1] = False
        else:
            keep = terminals | ~timeouts
            keep[-1] = terminals[-1]

    if keep is not None and not keep.all():
        if not keep.any():
            raise DatasetError(path, "no transition has a known next observation")
        # A kept transition followed by a dropped one now ends its episode (module doc).
        timeouts[:-1] |= keep[:-1] & ~keep[1:] & ~terminals[:-1]
        obs, next_obs, actions, rewards = obs[keep], next_obs[keep], actions[keep], rewards[keep]
        terminals, timeouts = terminals[keep], timeouts[keep]
        sim = None if sim is None else sim[keep]
        levels = None if levels is None else levels[keep]

    qpos, qvel = (None, None) if sim is None else split_sim_state(sim, nq)
    dataset = Dataset(
        observations=obs,
        actions=actions,
        rewards=rewards,
        next_observations=next_obs,
        terminals=terminals,
        timeouts=timeouts,
        qpos=qpos,
        qvel=qvel,
        metadata=metadata,
        levels=levels,
    )
    return dataset.check(path)


def write_d4rl(path: str | os.PathLike[str], dataset: Dataset) -> None:
    """Write `dataset` in D4RL layout atomically: no partial file is ever left under `path`."""
    path = Path(path)
    dataset.check(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so os.replace is an atomic rename; h5py creates it with the usual permissions.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with h5py.File(tmp, "w-") as f:
            f.create_dataset("observations", data=dataset.observations)
            f.create_dataset("actions", data=dataset.actions)
            f.create_dataset("rewards", data=dataset.rewards)
            f.create_dataset("next_observations", data=dataset.next_observations)
            f.create_dataset("terminals", data=dataset.terminals)
            f.create_dataset("timeouts", data=dataset.timeouts)
            if dataset.qpos is not None and dataset.qvel is not None:
                f.create_dataset("infos/qpos", data=dataset.qpos)
                f.create_dataset("infos/qvel", data=dataset.qvel)
            if dataset.levels is not None:
                f.create_dataset("infos/level", data=dataset.levels)
            _write_metadata(f.create_group("metadata"), dataset.metadata)
        with open(tmp, "rb") as fh:  # on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # and the rename on disk before this returns


def _write_metadata(group: h5py.Group, metadata: dict[str, Any]) -> None:
    for key, value in metadata.items():
        if not isinstance(value, str | bool | int | float | np.generic | np.ndarray | list | tuple):
            raise TypeError(f"metadata[{key!r}] is a {type(value).__name__}; HDF5 cannot store it")
        group.attrs[key] = value


def _read_metadata(f: h5py.File) -> dict[str, Any]:
    group = f.get("metadata")
    if not isinstance(group, h5py.Group):
        return {}
    metadata = {key: _plain(value) for key, value in group.attrs.items()}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            metadata[name] = _plain(obj[()])

    group.visititems(visit)
    return metadata


def _plain(value: Any) -> Any:
    """HDF5 scalars as Python values (bytes as str); arrays stay arrays."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _read_sim_state(f: h5py.File, path: Path) -> tuple[np.ndarray, int]:
    """infos/qpos and infos/qvel read straight into the column blocks of one float64 array."""
    qpos, qvel = (f.get(key) for key in ("infos/qpos", "infos/qvel"))
    if not isinstance(qpos, h5py.Dataset) or not isinstance(qvel, h5py.Dataset):
        raise DatasetError(path, "needs both infos/qpos and infos/qvel as arrays, or neither")
    check_numeric(qpos, path)
    check_numeric(qvel, path)
    if len(qpos.shape) != 2 or len(qvel.shape) != 2:
        raise DatasetError(path, f"infos/qpos {qpos.shape} and infos/qvel {qvel.shape} must be 2-D")
    if qpos.shape[0] != qvel.shape[0]:
        raise DatasetError(
            path, f"inconsistent lengths: infos/qpos {qpos.shape[0]}, infos/qvel {qvel.shape[0]}"
        )
    nq = qpos.shape[1]
    sim = np.empty((qpos.shape[0], nq + qvel.shape[1]), dtype=np.float64)
    if sim.size:
        qpos.read_direct(sim, dest_sel=np.s_[:, :nq])
        qvel.read_direct(sim, dest_sel=np.s_[:, nq:])
    return sim, nq


@contextmanager
def open_hdf5(path: Path) -> Iterator[h5py.File]:
    """h5py.File for reading; unreadable, truncated or corrupt files raise DatasetError."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(path, f"not a readable HDF5 file ({err})") from None
    try:
        with f:
            yield f
    except (OSError, RuntimeError) as err:  # h5py's errors on damaged data blocks
        raise DatasetError(path, f"damaged HDF5 data ({err})") from None


def read_array(group: h5py.Group, key: str, path: Path) -> np.ndarray:
    """The dataset `key` of `group` as a numpy array; DatasetError if missing or a group."""
    obj = group.get(key)
    if obj is None:
        raise DatasetError(path, f"missing required key '{_full(group, key)}'")
    if not isinstance(obj, h5py.Dataset) or obj.shape in (None, ()):
        raise DatasetError(path, f"'{_full(group, key)}' is not an array")
    check_numeric(obj, path)
    return np.asarray(obj[()])


# What a dtype kind other than bool, integer or float holds, for the error message.
NON_NUMERIC = {
    "S": "byte strings",
    "U": "strings",
    "O": "objects, e.g. variable-length strings",
    "c": "complex numbers",
    "V": "raw records",
    "M": "dates",
    "m": "time spans",
}


def check_numeric(array: h5py.Dataset, path: Path) -> None:
    """DatasetError naming the array and its dtype unless it holds numbers (bool, integers or
    floats), checked before anything is read."""
    kind = array.dtype.kind
    if kind not in "biuf":
        what = NON_NUMERIC.get(kind, "not numbers")
        name = array.name.lstrip("/")
        raise DatasetError(path, f"'{name}' has dtype {array.dtype.str} ({what}); expected numbers")


def _full(group: h5py.Group, key: str) -> str:
    return f"{group.name.rstrip('/')}/{key}".lstrip("/")
