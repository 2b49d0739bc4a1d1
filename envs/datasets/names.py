"""ogzoo's dataset names and where their files live (reading needs these; making them is
datagen's job, above agents and harness).

Names follow D4RL with the Gymnasium version: `<task>-<kind>-v5`, e.g. `hopper-random-v5`,
`halfcheetah-random-expert-5-v5`; the file is `<name>.hdf5` in $OGZOO_DATASETS (default
~/.ogzoo/datasets). A dataset made across MuJoCo levels (envs/levels.py) adds its levels' tag:
`hopper-medium-v5-levels20-mass-friction` = 20 training levels from 0, mass and friction in
the default range; `-from<S>` and `-range<lo>:<hi>_<lo>:<hi>` (one per parameter) follow
when they are not the defaults; `levelsall` is a new level every episode.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import UserError
from envs.levels import DEFAULT_RANGE, LevelSpec

TASKS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
KINDS = ["random", "medium", "expert", "medium-replay", "medium-expert",
         "random-expert-1", "random-expert-5", "random-expert-10"]  # fmt: skip
NAME = re.compile(r"^(?P<task>[a-z0-9]+)-(?P<kind>[a-z0-9-]+?)-v5$")
LEVEL_TAG = re.compile(r"^levels(?P<n>\d+|all)-(?P<context>[a-z]+(?:-[a-z]+)*?)"
                       r"(?:-from(?P<start>\d+))?(?:-range(?P<ranges>[0-9.e+:_-]+))?$")  # fmt: skip


def level_tag(spec: LevelSpec) -> str:
    """A level spec's part of a dataset name, e.g. levels20-mass-friction (module doc)."""
    tag = f"levels{spec.train_levels or 'all'}-{'-'.join(spec.context)}"
    if spec.start_level:
        tag += f"-from{spec.start_level}"
    if any(r != DEFAULT_RANGE for r in spec.ranges):
        tag += "-range" + "_".join(f"{low:g}:{high:g}" for low, high in spec.ranges)
    return tag


def split_levels(name: str) -> tuple[str, LevelSpec | None]:
    """'hopper-medium-v5-levels20-mass-friction' -> ('hopper-medium-v5', its LevelSpec); a name
    without a tag -> (name, None); UserError for a tag that is not one."""
    base, sep, tag = name.partition("-v5-")
    if not sep:
        return name, None
    match = LEVEL_TAG.match(tag)
    if not match:
        raise UserError(f"dataset name {name!r}: {tag!r} is not a levels tag (e.g. "
                        "levels20-mass-friction)")  # fmt: skip
    context = match["context"].split("-")
    ranges = ""
    if match["ranges"]:
        ranges = ",".join(f"{p}={r}" for p, r in zip(context, match["ranges"].split("_")))
    try:
        spec = LevelSpec.parse(",".join(context), ranges,
                               0 if match["n"] == "all" else int(match["n"]),
                               int(match["start"] or 0))  # fmt: skip
    except ValueError as exc:
        raise UserError(f"dataset name {name!r}: {exc}") from None
    return f"{base}-v5", spec


def datasets_dir() -> Path:
    """Where ogzoo keeps generated datasets: $OGZOO_DATASETS or ~/.ogzoo/datasets."""
    return Path(os.environ.get("OGZOO_DATASETS", Path.home() / ".ogzoo" / "datasets"))


def parse_name(name: str) -> tuple[str, str]:
    """'hopper-random-v5' -> ('Hopper-v5', 'random'); UserError naming the known ones. A
    levels tag (module doc) is checked and left out."""
    name, _ = split_levels(name)
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
