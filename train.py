"""Train any agent of the zoo: one loop, online (environment) or offline (dataset) data.

    python train.py --agent td3 --env Pendulum-v1 --seed 0 --total-steps 20000 \
        --set learning_starts=1000                   # TD3's paper warm-up is 25k steps
    python train.py --agent td3_bc --dataset hopper-medium-v5 --total-steps 300000
    python train.py --config configs/td3/hopper.yaml --run-dir runs/hopper-s0
    python train.py --config configs/td3/hopper.yaml --set actor_lr=1e-4 --set policy_delay=3
    python train.py --resume runs/hopper-s0            # continue a killed or interrupted run
    python train.py --agent td3 --show-config          # every hyperparameter, default and meaning
    python train.py --config configs/td3/hopper.yaml --seeds 0 1 2 3 4 --threads 2 \
        --run-dir runs/hopper                          # 5 seeds in one process: runs/hopper/s0..s4

Precedence: dataclass defaults < --config preset < command-line flags and --set overrides.
This file is the command line only: it parses the flags, hands them to training/launch.py
(config resolved and checked; the run folder new, resumed, or restarted when it holds no
checkpoint yet) and trains what comes back in a loop of training/: online off-policy,
on-policy, or offline (--dataset: the dataset fills the buffer, the loop's clock is the
gradient update, and the env is used only to evaluate). Errors are one line and an exit code.
"""

from __future__ import annotations

import argparse
import signal
import sys

from core import config as cfglib
from core.errors import UserError
from training import DIVERGED_EXIT, Diverged
from training.launch import RUN_FLAGS, Finished, launch, show_config
from training.seeds import SeedGroup


def build_parser() -> argparse.ArgumentParser:
    defaults = cfglib.RunConfig()
    docs = cfglib.field_docs(cfglib.RunConfig)
    parser = argparse.ArgumentParser(
        description="Train an ogzoo agent. Flags override the --config preset, which "
        "overrides the dataclass defaults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Agent hyperparameters: --set KEY=VALUE (repeatable, YAML values, e.g. "
        "--set critic_hidden=[400,300]); list them with --show-config.",
    )
    for name in RUN_FLAGS:
        default = getattr(defaults, name)
        flag, help_text = "--" + name.replace("_", "-"), f"{docs[name]} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_const", const=True, help=help_text)
            continue
        kind = {int: int, float: float, str: str}[type(default)]
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    parser.add_argument("--config", default=None, help="YAML preset (default: none)")
    parser.add_argument(
        "--arch",
        default=None,
        help="network architecture, mlp or simba; the agent's defaults for that architecture "
        "apply (same as --set arch=NAME; default: the agent's own)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an agent hyperparameter (repeatable; default: none)",
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        help="run folder to create (default: runs/<agent>-<env>-s<seed>-<time>); "
        "must not already hold a run",
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint; only --total-steps, "
        "--device, --threads and --set compile=true|false may be given with it (default: none)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="S",
        help="train these seeds in one process, in lockstep, their updates batched "
        "(training/seeds.py); seed S's run folder is RUN_DIR/s<S> (default: one run, --seed)",
    )
    parser.add_argument(
        "--num-seeds",
        type=int,
        default=None,
        metavar="K",
        help="the same as --seeds SEED .. SEED+K-1 (default: one run)",
    )
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print the agent's hyperparameters with defaults and exit (default: off)",
    )
    parser.add_argument(
        "--progress",
        choices=["auto", "on", "off"],
        default="auto",
        help="progress bar: auto shows it on a terminal (default: auto)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (e.g. a job scheduler) is handled like Ctrl-C: save, then exit.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.show_config:
            run_cfg, agent_cfg = show_config(args)
            print(f"{run_cfg.agent} hyperparameters (override with --set KEY=VALUE):")
            print(cfglib.describe(agent_cfg))
            return 0
        trainer = launch(args)
        trainer.train()
    except Finished as exc:
        print(exc)
        return 0
    except Diverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return DIVERGED_EXIT
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before training started; no checkpoint was written",
              file=sys.stderr)  # fmt: skip
        return 130
    runs = trainer.members if isinstance(trainer, SeedGroup) else [trainer]
    for run in runs:
        summary = run.summary()
        print(
            f"{run.label}done: {summary['env_steps']} env steps, {summary['gradient_updates']} "
            f"updates, last eval {summary['eval_return_mean']:.1f}, best "
            f"{summary['best_eval_return_mean']:.1f}, {summary['wall_time_s']:.0f}s"
        )
    print(f"run folder{'s' if len(runs) > 1 else ''}: "
          f"{', '.join(str(run.run_dir) for run in runs)}")  # fmt: skip
    print(f"watch it:   tensorboard --logdir {runs[0].run_dir.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
