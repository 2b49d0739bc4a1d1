"""One entry point for offline training: a dataset name or path -> (Dataset, env id, file).

Looked up in this order:
1. an ogzoo name (`hopper-medium-v5`): the file in $OGZOO_DATASETS (or ~/.ogzoo/datasets);
   a missing one is an error here: generating it rolls out behaviour policies, which sits
   above envs/ (`datagen.load_dataset`, what train.py uses, makes it on first use);
2. a path to a D4RL-layout HDF5 file (ogzoo's own files are such files), or a Minari dataset
   folder;
3. a D4RL name (`hopper-medium-v2`) in $D4RL_DATASET_DIR or ~/.d4rl/datasets, then a Minari
   id in $MINARI_DATASETS_PATH or ~/.minari/datasets.

The environment to evaluate in comes from the file's metadata (`env_id`: ogzoo's files, and
Minari's `env_spec` as the reader keeps it), else from the name's task (`hopper` ->
Hopper-v5: D4RL's mujoco-py v2 tasks have the same observation and action spaces as
Gymnasium's v5), else it must be given with --env.
"""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import UserError
from envs.datasets.d4rl import read_d4rl, resolve_d4rl
from envs.datasets.dataset import Dataset, DatasetError
from envs.datasets.minari_format import read_minari, resolve_minari
from envs.datasets.names import is_ogzoo_name, path_of

TASK_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5",
             "walker2d": "Walker2d-v5", "ant": "Ant-v5"}  # fmt: skip


def load_dataset(
    name_or_path: str, compat: bool = False, root: Path | None = None
) -> tuple[Dataset, Path]:
    """(dataset, the file or folder it was read from); DatasetError/UserError otherwise. This
    only reads: datagen.load_dataset makes a missing ogzoo dataset first."""
    try:
        return _load(name_or_path, compat, root)
    except OSError as exc:  # e.g. a name too long for the file system, a folder not readable
        raise DatasetError(name_or_path, f"cannot be read ({exc.strerror or exc})") from None


def _load(name_or_path: str, compat: bool, root: Path | None) -> tuple[Dataset, Path]:
    if is_ogzoo_name(name_or_path):
        path = path_of(name_or_path, root)
        if not path.is_file():
            raise UserError(f"dataset {name_or_path} is not present ({path}); make it with: "
                            f"python -m datagen make {name_or_path}")  # fmt: skip
        return read_d4rl(path, compat=compat), path
    given = Path(name_or_path).expanduser()
    if given.is_dir():
        return read_minari(given), resolve_minari(given)
    try:
        path = resolve_d4rl(name_or_path)
    except DatasetError as d4rl_error:
        try:
            folder = resolve_minari(name_or_path)
        except DatasetError:
            raise d4rl_error from None
        return read_minari(folder), folder
    return read_d4rl(path, compat=compat), path


def dataset_env_id(data: Dataset, name_or_path: str) -> str:
    """The environment a dataset belongs to (module doc); UserError when it cannot be told."""
    env_id = data.metadata.get("env_id")
    if isinstance(env_id, str) and env_id:
        return env_id
    match = re.match(r"^([a-z0-9]+)[-_]", Path(name_or_path).name.lower())
    if match and match[1] in TASK_ENVS:
        return TASK_ENVS[match[1]]
    raise UserError(
        f"cannot tell which environment dataset {name_or_path} belongs to (no env_id in its "
        "metadata and no known task in its name); give it with --env"
    )
