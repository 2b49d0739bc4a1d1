"""Markdown table of finished runs, for docs/: one row per run folder.

    python bench/summarize.py bench/out/pend-s0 bench/out/pend-s1 [--bar -250]

Reads each run's summary.json and config.yaml; with --bar, adds whether the last evaluation
and the best evaluation reached it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml


def row(run: Path, bar: float | None) -> str:
    summary = json.loads((run / "summary.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cells = [
        run.name,
        cfg["agent"],
        cfg["env"],
        str(cfg["seed"]),
        f"{summary['env_steps']:,}",
        f"{summary['gradient_updates']:,}",
        f"{summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f}",
        f"{summary['best_eval_return_mean']:.1f} @ {summary['best_eval_env_steps']:,}",
        f"{summary['wall_time_s'] / 60:.1f}",
    ]
    if bar is not None:
        cells.append("yes" if summary["eval_return_mean"] >= bar else "no")
        cells.append("yes" if summary["best_eval_return_mean"] >= bar else "no")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--bar", type=float, default=None)
    args = parser.parse_args()
    head = [
        "run",
        "agent",
        "env",
        "seed",
        "env steps",
        "updates",
        "final eval",
        "best eval",
        "minutes",
    ]
    if args.bar is not None:
        head += [f"final >= {args.bar:g}", f"best >= {args.bar:g}"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for run in args.runs:
        if not (run / "summary.json").is_file():
            print(f"error: no summary.json in {run}", file=sys.stderr)
            sys.exit(2)
        print(row(run, args.bar))


if __name__ == "__main__":
    main()
