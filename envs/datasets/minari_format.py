"""Minari datasets on disk, read with h5py alone (the `minari` package stays optional).

A dataset lives in `<root>/<dataset id>/data/`, root = $MINARI_DATASETS_PATH or
~/.minari/datasets, the id being `<namespace>/<name>-v<N>`. The folder holds `metadata.json`
(dataset id, `env_spec` as a JSON string, optional `ref_min_score` / `ref_max_score`) and
`main_data.hdf5` with one group per episode, `episode_<id>`: `observations` (T+1 rows, the
final observation included), `actions`, `rewards`, `terminations`, `truncations` (T rows
each) and optional `infos/` (per-step arrays; Minari stores T+1 rows, the reset's info first).

Episodes are concatenated in id order: next_obs = observations[1:], and qpos/qvel come from
`infos/` (their first T rows: the state each observation was taken in). Each group is one
episode, so an episode that ends with neither flag set (cut by the writer) gets timeouts=True
on its last transition; the last episode of the file keeps its flags, as the end of the data
ends it anyway (the same as a D4RL file whose last episode was cut).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from envs.datasets.d4rl import open_hdf5, read_array
from envs.datasets.dataset import (
    Dataset,
    DatasetError,
    check_finite,
    check_lengths,
    split_sim_state,
)

_FIELDS = ("observations", "actions", "rewards", "terminations", "truncations")


def minari_root() -> Path:
    """Where Minari ids are looked up: $MINARI_DATASETS_PATH, else ~/.minari/datasets."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def resolve_minari(name_or_path: str | os.PathLike[str]) -> Path:
    """The `data/` folder of a dataset given by id, by its folder, or by its data folder."""
    given = Path(name_or_path).expanduser()
    candidates = [given / "data", given] if given.is_dir() else []
    candidates.append(minari_root() / given / "data")
    for folder in candidates:
        if (folder / "main_data.hdf5").is_file():
            return folder
    raise DatasetError(
        candidates[0] if given.is_dir() else given,
        f"no Minari dataset here or under $MINARI_DATASETS_PATH / ~/.minari/datasets "
        f"(looked for {candidates[-1] / 'main_data.hdf5'})",
    )


def read_minari(name_or_path: str | os.PathLike[str]) -> Dataset:
    """Read a Minari dataset (module doc) into a flat Dataset."""
    folder = resolve_minari(name_or_path)
    metadata = _read_metadata(folder / "metadata.json")
    path = folder / "main_data.hdf5"
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*_FIELDS, "next_obs", "sim")}
    nq = 0
    with open_hdf5(path) as f:
        names = [k for k in f if k.startswith("episode_") and k[8:].isdigit()]
        if not names:
            raise DatasetError(path, "holds no episode_<id> groups")
        for name in sorted(names, key=lambda k: int(k[8:])):
            episode, nq = _read_episode(f[name], path)
            for key, value in episode.items():
                parts[key].append(value)

    if 0 < len(parts["sim"]) < len(names):
        raise DatasetError(path, "only some episodes have infos/qpos and infos/qvel")
    for flags, others in zip(parts["truncations"][:-1], parts["terminations"][:-1]):
        if not (flags[-1] or others[-1]):
            flags[-1] = True  # a cut episode (module doc); flags is our own bool copy
    sim = _concat(parts["sim"], "infos/qpos+qvel", path) if parts["sim"] else None
    qpos, qvel = (None, None) if sim is None else split_sim_state(sim, nq)
    dataset = Dataset(
        observations=_concat(parts["observations"], "observations", path),
        actions=_concat(parts["actions"], "actions", path),
        rewards=_concat(parts["rewards"], "rewards", path),
        next_observations=_concat(parts["next_obs"], "observations", path),
        terminals=_concat(parts["terminations"], "terminations", path),
        timeouts=_concat(parts["truncations"], "truncations", path),
        qpos=qpos,
        qvel=qvel,
        metadata=metadata,
    )
    return dataset.check(path)


def _concat(arrays: list[np.ndarray], name: str, path: Path) -> np.ndarray:
    try:
        return np.concatenate(arrays)
    except ValueError:
        shapes = sorted({a.shape[1:] for a in arrays})
        raise DatasetError(path, f"episodes disagree on the shape of {name}: {shapes}") from None


def _read_episode(group: Any, path: Path) -> tuple[dict[str, np.ndarray], int]:
    """One episode's arrays (observations split into obs and next_obs) and nq (0: no states)."""
    if not isinstance(group, h5py.Group):
        raise DatasetError(path, f"'{group.name}' is not an episode group")
    where = group.name.lstrip("/")
    if isinstance(group.get("observations"), h5py.Group):
        raise DatasetError(path, f"{where}: dict or tuple observations are not supported")
    arrays = {key: read_array(group, key, path) for key in _FIELDS}
    steps = len(arrays["rewards"])
    if steps == 0:
        raise DatasetError(path, f"{where} has no steps")
    if len(arrays["observations"]) != steps + 1:
        raise DatasetError(
            path,
            f"{where}: observations have {len(arrays['observations'])} rows, "
            f"expected T+1 = {steps + 1} (T = {steps} rewards)",
        )
    check_finite(arrays, f"{path} ({where})")  # rows of the episode's own arrays
    all_obs = arrays.pop("observations")
    arrays["observations"], arrays["next_obs"] = all_obs[:-1], all_obs[1:]
    arrays["terminations"] = arrays["terminations"].astype(bool)
    arrays["truncations"] = arrays["truncations"].astype(bool)
    check_lengths(arrays, f"{path} ({where})")

    nq = 0
    infos = group.get("infos")
    if isinstance(infos, h5py.Group) and "qpos" in infos and "qvel" in infos:
        qpos, qvel = (read_array(infos, key, path) for key in ("qpos", "qvel"))
        for name, value in (("qpos", qpos), ("qvel", qvel)):
            if value.ndim != 2 or len(value) not in (steps, steps + 1):
                raise DatasetError(
                    path, f"{where}: infos/{name} has shape {value.shape}, expected T or T+1 rows"
                )
        check_finite({"infos/qpos": qpos[:steps], "infos/qvel": qvel[:steps]}, f"{path} ({where})")
        nq = qpos.shape[1]
        arrays["sim"] = np.concatenate([qpos[:steps], qvel[:steps]], axis=1).astype(np.float64)
    return arrays, nq


def _read_metadata(path: Path) -> dict[str, Any]:
    """The reference scores, dataset id and env id from metadata.json."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(path, "file not found") from None
    except (OSError, ValueError) as err:
        raise DatasetError(path, f"unreadable JSON ({err})") from None
    if not isinstance(raw, dict):
        raise DatasetError(path, "is not a JSON object")
    metadata = {k: raw[k] for k in ("dataset_id", "ref_min_score", "ref_max_score") if k in raw}
    try:
        spec = raw.get("env_spec")
        env_id = (json.loads(spec) if isinstance(spec, str) else spec or {}).get("id")
    except (ValueError, AttributeError):
        env_id = None  # an odd env_spec only loses the env id, not the data
    if env_id:
        metadata["env_id"] = env_id
    return metadata
