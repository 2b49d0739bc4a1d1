"""The table of generated datasets for docs/datasets.md: one row per ogzoo dataset present.

    python bench/datasets_table.py                  # prints the markdown table
    python bench/datasets_table.py --out docs/datasets-table.md

Columns: transitions, episodes, episode return mean / min / max, the mean normalized score
against the dataset's own references (its random and expert returns, measured on the same env
version) and, for comparison with published tables, with D4RL's constants.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.errors import UserError  # noqa: E402
from envs.datasets import names  # noqa: E402
from envs.datasets.d4rl import read_d4rl  # noqa: E402
from envs.datasets.scores import d4rl_normalized_score, normalized_score  # noqa: E402


def table(root: Path | None = None) -> str:
    lines = ["| dataset | transitions | episodes | return mean | min | max | score | D4RL-constant "
             "score | references (random / expert) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for name in names.all_names():
        path = names.path_of(name, root)
        if not path.is_file():
            continue
        data = read_d4rl(path)
        returns, meta = data.episode_returns(), data.metadata
        lo, hi = meta.get("ref_min_score"), meta.get("ref_max_score")
        score = "n/a" if hi is None else f"{normalized_score(returns, lo, hi).mean():.1f}"
        try:
            d4rl = f"{np.mean(d4rl_normalized_score(returns, meta['env_id'])):.1f}"
        except (UserError, KeyError):
            d4rl = "n/a"
        refs = f"{lo:.1f} / {'n/a' if hi is None else f'{hi:.1f}'}"
        lines.append(
            f"| {name} | {len(data):,} | {len(returns):,} | {returns.mean():.1f} | "
            f"{returns.min():.1f} | {returns.max():.1f} | {score} | {d4rl} | {refs} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="datasets folder (default: $OGZOO_DATASETS)")
    parser.add_argument("--out", default=None, help="write the table here as well")
    args = parser.parse_args()
    text = table(Path(args.root) if args.root else None)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
