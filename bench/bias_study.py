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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESETS = [
    "configs/td3/hopper-bias.yaml",
    "configs/td3/hopper-bias-single-critic.yaml",
    "configs/tqc/hopper-cpu-bias-drop0.yaml",
    "configs/tqc/hopper-cpu-bias-drop2.yaml",
    "configs/tqc/hopper-cpu-bias-drop5.yaml",
]


def run_dir(out: Path, preset: str, seed: int) -> Path:
    return out / f"{Path(preset).parent.name}-{Path(preset).stem}-s{seed}"


def train(preset: str, seed: int, out: Path) -> tuple[Path, int]:
    folder = run_dir(out, preset, seed)
    if (folder / "checkpoints" / "final.pt").is_file():
        return folder, 0
    if (folder / "checkpoints" / "latest.pt").is_file():
        argv = ["--resume", str(folder)]
    else:
        argv = ["--config", preset, "--seed", str(seed), "--run-dir", str(folder)]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{folder}.log", "a") as log:
        code = subprocess.call(
            [sys.executable, "train.py", *argv, "--progress", "off"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return folder, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    parser.add_argument("--out", default="bench/out/bias", help="folder of the run folders")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    out = REPO / args.out
    jobs = [(p, s) for p in PRESETS for s in args.seeds]  # cheap TD3 pairs first
    if not args.plot_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            for folder, code in pool.map(lambda job: train(*job, out), jobs):
                print(f"{folder.name}: {'done' if code == 0 else f'exit {code}'}", flush=True)
    finished = [run_dir(out, p, s) for p, s in jobs]
    finished = [f for f in finished if (f / "summary.json").is_file()]
    return subprocess.call(
        [sys.executable, "-m", "harness.plots", *map(str, finished),
         "--out", "docs/bias-hopper.png", "--table", "docs/bias-hopper.md"],
        cwd=REPO,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
