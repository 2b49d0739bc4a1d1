"""Dataset generation: ogzoo's D4RL-style datasets, made by rolling out behaviour policies.

This sits above agents/ and harness/ (it builds agents from the shipped policy files and
measures their returns with the harness), so envs/, which both of those import, only reads
datasets (envs/datasets/). Entry points:

- `python -m datagen list|make|info|export-policy` (datagen/__main__.py);
- `load_dataset`: envs.datasets' loader, plus making a missing ogzoo dataset on first use
  (train.py --dataset NAME).
"""

from __future__ import annotations

from pathlib import Path

from datagen import generate
from envs.datasets import loading
from envs.datasets.dataset import Dataset
from envs.datasets.names import is_ogzoo_name, path_of

__all__ = ["load_dataset"]


def load_dataset(
    name_or_path: str, compat: bool = False, root: Path | None = None
) -> tuple[Dataset, Path]:
    """envs.datasets.loading.load_dataset, except that a missing ogzoo dataset (a name like
    `hopper-medium-v5` with no file under `root`) is generated first (seed 0, default size)."""
    if is_ogzoo_name(name_or_path):
        path = path_of(name_or_path, root)
        if not path.is_file():
            print(f"dataset {name_or_path} is not present; generating it once: {path}",
                  flush=True)  # fmt: skip
            generate.make(name_or_path, root=root)
    return loading.load_dataset(name_or_path, compat=compat, root=root)
