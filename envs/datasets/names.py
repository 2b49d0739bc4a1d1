"""ogzoo's dataset names and where their files live (reading needs these; making them is
datagen's job, above agents and harness).

Names follow D4RL with the Gymnasium version: `<task>-<kind>-v5`, e.g. `hopper-random-v5`,
`halfcheetah-random-expert-5-v5`; the file is `<name>.hdf5` in $OGZOO_DATASETS (default
~/.ogzoo/datasets).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import UserError

TASKS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
KINDS = ["random", "medium", "expert", "medium-replay", "medium-expert",
         "random-expert-1", "random-expert-5", "random-expert-10"]  # fmt: skip
NAME = re.compile(r"^(?P<task>[a-z0-9]+)-(?P<kind>[a-z0-9-]+?)-v5$")


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


def is_ogzoo_name(name: str) -> bool:
    try:
        parse_name(name)
    except UserError:
        return False
    return True


def all_names() -> list[str]:
    return [f"{task}-{kind}-v5" for task in TASKS for kind in KINDS]


def path_of(name: str, root: Path | None = None) -> Path:
    return (root or datasets_dir()) / f"{name}.hdf5"
