"""Runs' TensorBoard curves side by side as a markdown table: the mean of each tag per window of
steps, one column per run and tag (docs/procgen.md's collapse check reads its episode lengths
and returns from it).

    python bench/curves_table.py RUN... [--tags train/episode_length train/episode_return]
        [--every 50000] [--start 600000] [--end 1200000] [--count]

A window [a, a + every) holds the values logged at steps a <= step < a + every; "-" where a run
logged none there. --count adds, per run, how many values each window holds (for
train/episode_* tags: the episodes that ended in it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.jobs import scalars  # noqa: E402


def windows(points: list[tuple[int, float]], every: int, start: int, end: int) -> list[list[float]]:
    """The values of `points` (step, value) in each window [a, a + every), a = start, start +
    every, ... below end."""
    edges = range(start, end, every)
    return [[v for s, v in points if a <= s < a + every] for a in edges]


def table(runs: list[Path], tags: list[str], every: int, start: int, end: int,
          count: bool = False) -> str:  # fmt: skip
    columns = []  # (header, cells)
    for run in runs:
        name = run.name
        for tag in tags:
            groups = windows(scalars(run, tag), every, start, end)
            cells = [f"{statistics.fmean(g):.3g}" if g else "-" for g in groups]
            columns.append((f"{name} {tag}", cells))
        if count:
            groups = windows(scalars(run, tags[0]), every, start, end)
            columns.append((f"{name} n", [str(len(g)) for g in groups]))
    lines = ["| steps | " + " | ".join(h for h, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]  # fmt: skip
    for i, a in enumerate(range(start, end, every)):
        lines.append(f"| {a:,}-{a + every:,} | " + " | ".join(c[i] for _, c in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--tags", nargs="+", default=["train/episode_length", "train/episode_return"])
    p.add_argument("--every", type=int, default=50_000)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--end", type=int, default=None, help="default: past the last step logged")
    p.add_argument("--count", action="store_true")
    args = p.parse_args(argv)
    if args.every <= 0 or args.start < 0:
        raise SystemExit("error: --every must be > 0 and --start >= 0")
    for run in args.runs:
        if not run.is_dir() or not list(run.glob("events.out.tfevents.*")):
            raise SystemExit(f"error: {run} holds no TensorBoard events")
    end = args.end
    if end is None:
        last = max((s for run in args.runs for s, _ in scalars(run, args.tags[0])), default=0)
        end = last + 1
    if end <= args.start:
        raise SystemExit(f"error: --end {end} is not past --start {args.start}")
    print(table(args.runs, args.tags, args.every, args.start, end, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
