"""The overestimation study of issue 4: bias of each critic design on Hopper-v5.

    python bench/bias_study.py --seeds 0 1 --jobs 2          # runs, then plot + table
    python bench/bias_study.py --seeds 0 1 --plot-only       # just redraw from finished runs

Runs every preset below for every seed (train.py, one process each, `--jobs` at a time),
skipping runs that finished and resuming runs that were interrupted, then draws
docs/bias-hopper.png and writes docs/bias-hopper.md with harness/plots.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import REPO, run_all  # noqa: E402

PRESETS = [  # the soft agents first: issue 18 re-measures them
    "configs/tqc/hopper-cpu-bias-drop0.yaml",
    "configs/tqc/hopper-cpu-bias-drop2.yaml",
    "configs/tqc/hopper-cpu-bias-drop5.yaml",
    "configs/sac/hopper-cpu-bias.yaml",
    "configs/td3/hopper-bias.yaml",
    "configs/td3/hopper-bias-single-critic.yaml",
]


def run_dir(out: Path, preset: str, seed: int) -> Path:
    return out / f"{Path(preset).parent.name}-{Path(preset).stem}-s{seed}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    parser.add_argument("--out", default="bench/out/bias", help="folder of the run folders")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    out = REPO / args.out
    jobs = [(p, s) for p in PRESETS for s in args.seeds]
    if not args.plot_only:
        run_all([(run_dir(out, p, s), ["--config", p, "--seed", str(s)]) for p, s in jobs],
                args.jobs)  # fmt: skip
    finished = [run_dir(out, p, s) for p, s in jobs]
    finished = [f for f in finished if (f / "summary.json").is_file()]
    return subprocess.call(
        [sys.executable, "-m", "harness.plots", *map(str, finished),
         "--out", "docs/bias-hopper.png", "--table", "docs/bias-hopper.md"],
        cwd=REPO,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
