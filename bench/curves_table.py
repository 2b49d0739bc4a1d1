"""Runs' TensorBoard curves side by side as a markdown table: the mean of each tag per window of
steps, one column per run and tag (docs/procgen.md's collapse check reads its episode lengths
and returns from it).

    python bench/curves_table.py RUN... [--tags train/episode_length train/episode_return]
        [--every 50000] [--start 600000] [--end 1200000] [--count] [--outcomes 1000]

A window [a, a + every) holds the values logged at steps a <= step < a + every; "-" where a run
logged none there. --count adds, per run, how many values each window holds (for
train/episode_* tags: the episodes that ended in it). --outcomes TIMEOUT adds, per run, how
the training episodes that ended in each window ended, as fractions: with a positive return,
at the TIMEOUT length (at least) with none, or earlier with none (on coinrun, whose only
reward is the coin's 10: reached the coin, stood until the timeout, died).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import jobs  # noqa: E402

# Each read parses a run's whole event files: one read per (run, tag) for every column and
# the default --end.
scalars = functools.cache(jobs.scalars)


def windows(points: list[tuple[int, Any]], every: int, start: int, end: int) -> list[list[Any]]:
    """The values of `points` (step, value) in each window [a, a + every), a = start, start +
    every, ... below end."""
    edges = range(start, end, every)
    return [[v for s, v in points if a <= s < a + every] for a in edges]


def outcomes(run: Path, timeout: int, every: int, start: int, end: int) -> list[str]:
    """Per window, "SUCCESS / TIMEOUT / OTHER" fractions of the episodes that ended in it (the
    loops log train/episode_return and train/episode_length together, one pair an episode)."""
    returns = scalars(run, "train/episode_return")
    lengths = scalars(run, "train/episode_length")
    if [s for s, _ in returns] != [s for s, _ in lengths]:
        raise SystemExit(f"error: {run}: its episode returns and lengths do not pair up")
    episodes = [(s, (r, n)) for (s, r), (_, n) in zip(returns, lengths, strict=True)]
    cells = []
    for group in windows(episodes, every, start, end):
        if not group:
            cells.append("-")
            continue
        won = sum(r > 0 for r, _ in group)
        stood = sum(r <= 0 and n >= timeout for r, n in group)
        k = len(group)
        cells.append(f"{won / k:.2f} / {stood / k:.2f} / {(k - won - stood) / k:.2f}")
    return cells


def table(runs: list[Path], tags: list[str], every: int, start: int, end: int,
          count: bool = False, timeout: int | None = None) -> str:  # fmt: skip
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
        if timeout is not None:
            columns.append((f"{name} return > 0 / timeout / other",
                            outcomes(run, timeout, every, start, end)))  # fmt: skip
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
    p.add_argument("--outcomes", type=int, default=None, metavar="TIMEOUT")
    args = p.parse_args(argv)
    if args.every <= 0 or args.start < 0:
        raise SystemExit("error: --every must be > 0 and --start >= 0")
    if args.outcomes is not None and args.outcomes <= 0:
        raise SystemExit(f"error: --outcomes takes the episode timeout (> 0), got {args.outcomes}")
    for run in args.runs:
        if not run.is_dir() or not list(run.glob("events.out.tfevents.*")):
            raise SystemExit(f"error: {run} holds no TensorBoard events")
    end = args.end
    if end is None:
        last = max((s for run in args.runs for s, _ in scalars(run, args.tags[0])), default=0)
        end = last + 1
    if end <= args.start:
        raise SystemExit(f"error: --end {end} is not past --start {args.start}")
    print(table(args.runs, args.tags, args.every, args.start, end, args.count, args.outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
