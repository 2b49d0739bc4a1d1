"""The dataset command.

python -m datagen list                       # known names, present locally or not
python -m datagen make hopper-random-v5      # generate (deterministic per seed)
python -m datagen make hopper-random-v5 --size 10000 --seed 1
python -m datagen make hopper-medium-v5 --context mass,friction --train-levels 20
python -m datagen make hopper-medium-replay-v5 --replay-from RUN   # RUN trained the medium policy
python -m datagen info hopper-random-v5      # or any D4RL/Minari name or path
python -m datagen export-policy RUN/checkpoints/best.pt hopper-expert
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.errors import UserError
from datagen import generate
from datagen.policies import LEVELS, export_policy, policy_path
from envs.datasets import loading, names
from envs.datasets.scores import (
    D4RL_REF_SCORES,
    d4rl_normalized_score,
    d4rl_task,
    normalized_score,
)
from envs.levels import LevelSpec


def policy_present(name: str) -> bool:
    task = name.split("-")[0]
    return all(policy_path(task, level).is_file() for level in LEVELS)


def cmd_list(args) -> None:
    root = Path(args.root) if args.root else names.datasets_dir()
    print(f"ogzoo datasets in {root}:")
    for name in names.all_names():
        path = names.path_of(name, root)
        kind = names.parse_name(name)[1]
        if path.is_file():
            status = "present"
        elif kind in generate.POLICY_FREE or policy_present(name):
            status = "can be made"
        else:
            status = "needs its behaviour policies (datagen/policies/)"
        print(f"  {name:34s} {status}")


def cmd_make(args) -> None:
    root = Path(args.root) if args.root else None
    levels = None
    if args.context:
        try:
            levels = LevelSpec.parse(args.context, args.context_range, args.train_levels,
                                     args.start_level)  # fmt: skip
        except ValueError as exc:
            raise UserError(str(exc)) from None
    elif args.context_range or args.train_levels or args.start_level:
        raise UserError("--context-range, --train-levels and --start-level need --context")
    path = generate.make(args.name, size=args.size, seed=args.seed, root=root, levels=levels,
                         replay_from=args.replay_from)  # fmt: skip
    print(f"wrote {path}")


def cmd_export(args) -> None:
    path = export_policy(args.checkpoint, args.name, episodes=args.episodes)
    print(f"wrote {path}")


def cmd_info(args) -> None:
    """What train.py --dataset reads (an ogzoo name, a D4RL file or name, a Minari folder or
    id), without making a missing ogzoo dataset."""
    root = Path(args.root) if args.root else None
    data, source = loading.load_dataset(args.name, root=root)
    returns = data.episode_returns()
    meta = data.metadata
    print(f"{source}")
    ends = f"terminals {int(data.terminals.sum()):,}, timeouts {int(data.timeouts.sum()):,}"
    print(f"  transitions {len(data):,}, episodes {len(returns):,}, {ends}")
    print(f"  observations {data.observations.shape[1:]}, actions {data.actions.shape[1:]}, "
          f"simulator states {'yes' if data.qpos is not None else 'no'}")  # fmt: skip
    if data.levels is not None:
        print(f"  levels: {len(np.unique(data.levels))} distinct (ids {data.levels.min()} to "
              f"{data.levels.max()}), per transition")  # fmt: skip
    print(f"  episode return mean {returns.mean():.1f}, min {returns.min():.1f}, "
          f"max {returns.max():.1f}")  # fmt: skip
    try:
        env_id = loading.dataset_env_id(data, args.name)
    except UserError:
        env_id = None
    if "ref_min_score" in meta and "ref_max_score" in meta:
        score = normalized_score(returns, meta["ref_min_score"], meta["ref_max_score"])
        print(f"  normalized score {np.mean(score):.1f} (the dataset's own references "
              f"{meta['ref_min_score']:.1f} and {meta['ref_max_score']:.1f})")  # fmt: skip
    else:
        print("  normalized score n/a (the dataset has no references of its own)")
    task = d4rl_task(env_id) if env_id else None
    if task in D4RL_REF_SCORES:
        score = np.mean(d4rl_normalized_score(returns, env_id))
        print(f"  D4RL-constant score {score:.1f} (D4RL's mujoco-py references for {task}, "
              "for published tables only)")  # fmt: skip
    else:
        print(f"  D4RL-constant score n/a (no D4RL constants for {env_id or 'an unknown task'})")
    for key in sorted(meta):
        print(f"  metadata/{key}: {describe_value(meta[key])}")


def describe_value(value: object) -> str:
    """A metadata value on one line: arrays (D4RL files keep policy weights there) by shape."""
    if isinstance(value, np.ndarray) and value.size > 8:
        return f"array {value.dtype} {value.shape}"
    return " ".join(str(value).split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datagen", description=__doc__)
    parser.add_argument("--root", default=None, help="dataset folder (default: $OGZOO_DATASETS "
                        "or ~/.ogzoo/datasets)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="known dataset names and whether each is present")
    make = sub.add_parser("make", help="generate a dataset")
    make.add_argument("name")
    make.add_argument("--size", type=int, default=generate.DEFAULT_SIZE,
                      help=f"transitions (default: {generate.DEFAULT_SIZE:,})")  # fmt: skip
    make.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    make.add_argument(
        "--context",
        default="",
        help="make it across MuJoCo levels: the "
        "parameters that vary, e.g. mass,friction (envs/levels.py; default: none)",
    )
    make.add_argument(
        "--context-range", default="", help="training range of the scales (default: 0.5:2)"
    )
    make.add_argument(
        "--train-levels",
        type=int,
        default=0,
        help="training levels the episodes draw from (default: 0, a new one every episode)",
    )
    make.add_argument(
        "--start-level", type=int, default=0, help="the first training level (default: 0)"
    )
    make.add_argument("--replay-from", default=None, help="medium-replay: take the replay "
                      "buffer of this run folder, the medium policy's training run, instead of "
                      "re-running it (default: re-run)")  # fmt: skip
    export = sub.add_parser("export-policy", help="ship a run's actor as a behaviour policy")
    export.add_argument("checkpoint", help="run folder or checkpoint (e.g. checkpoints/best.pt)")
    export.add_argument("name", help="<task>-<level>, level medium or expert")
    export.add_argument("--episodes", type=int, default=100, help="episodes for its return")
    info = sub.add_parser("info", help="sizes, returns and scores of a dataset")
    info.add_argument("name", help="what train.py --dataset takes: an ogzoo name, a D4RL file "
                      "or name, a Minari folder or id")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        commands = {"list": cmd_list, "make": cmd_make, "info": cmd_info,
                    "export-policy": cmd_export}  # fmt: skip
        commands[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # files are written whole at the end, so nothing half-made stays
        print(f"interrupted: {args.command} did not finish; nothing was written",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
