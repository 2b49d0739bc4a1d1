"""Issue 23, item 1: K seeds of TD3 on Hopper-v5 in one process against K single-seed processes.

    python bench/seeds_speed.py --seeds 5 --steps 4000 --out bench/out/seeds-speed \
        --json docs/seeds-speed.json

Four ways to train the same K runs (same config; `--learning-starts` env steps of warm-up,
then one update per env step), each an ordinary `train.py` command:
- sequential: K single-seed processes one after another, one torch thread each;
- pairs: the same K processes two at a time (a pool of 2: the 2 cores);
- threads: one process, `--seeds 0 .. K-1 --threads 2` (the threads engine: each seed's own
  update, the seeds spread over 2 worker threads);
- stacked: the same with `--seed-engine stacked` (one vmapped update of stacked networks).
Reported per way: the wall clock of the whole command(s) (process start-up included), the
training time (the runs' own wall_time_s: for a one-process group every run's is the
group's), and seed-updates/s on both clocks, with the ratios the issue's bars name (one
process against sequential >= 1.4x, against pairs >= 1.0x). Run it on a quiet machine: the
ways are timed one after another, and anything else running changes them unevenly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train(args: list[str]) -> None:
    cmd = [sys.executable, "train.py", *args, "--progress", "off"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="K (default: 5)")
    parser.add_argument("--steps", type=int, default=4000, help="env steps per run")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--ways", nargs="+", default=["sequential", "pairs", "threads", "stacked"])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "seeds-speed")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    common = ["--agent", "td3", "--env", args.env, "--total-steps", str(args.steps),
              "--set", f"learning_starts={args.learning_starts}", "--eval-every", str(args.steps),
              "--eval-episodes", "2", "--checkpoint-every", str(args.steps)]  # fmt: skip
    shutil.rmtree(args.out, ignore_errors=True)
    results = {}
    for way in args.ways:
        root = args.out / way
        start = time.perf_counter()
        if way in ("sequential", "pairs"):
            jobs = [[*common, "--seed", str(s), "--threads", "1", "--run-dir", str(root / f"s{s}")]
                    for s in seeds]  # fmt: skip
            with ThreadPoolExecutor(1 if way == "sequential" else 2) as pool:
                list(pool.map(train, jobs))
        else:
            train([*common, "--seeds", *map(str, seeds), "--threads", "2", "--seed-engine", way,
                   "--run-dir", str(root)])  # fmt: skip
        wall = time.perf_counter() - start
        runs = [summary(root / f"s{s}") for s in seeds]
        updates = sum(run["gradient_updates"] for run in runs)
        if way == "sequential":
            training = sum(run["wall_time_s"] for run in runs)
        elif way == "pairs":  # two at a time: the training clock is not one number; skip it
            training = None
        else:
            training = runs[0]["wall_time_s"]
        results[way] = {
            "wall_s": round(wall, 1),
            "training_s": training,
            "seed_updates": updates,
            "seed_updates_per_s_wall": round(updates / wall, 1),
            "seed_updates_per_s_training": round(updates / training, 1) if training else None,
            "final_returns": [round(run["eval_return_mean"], 1) for run in runs],
        }
        print(way, results[way], flush=True)
    for way in ("threads", "stacked"):
        if way in results:
            for base in ("sequential", "pairs"):
                if base in results:
                    ratio = results[way]["seed_updates_per_s_wall"] / results[base][
                        "seed_updates_per_s_wall"]  # fmt: skip
                    results[way][f"vs_{base}_wall"] = round(ratio, 2)
            if "sequential" in results:
                ratio = results[way]["seed_updates_per_s_training"] / results["sequential"][
                    "seed_updates_per_s_training"]  # fmt: skip
                results[way]["vs_sequential_training"] = round(ratio, 2)
            print(way, {k: v for k, v in results[way].items() if k.startswith("vs_")})
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"out": str(args.out),
                                                                "json": str(args.json)},
                                         "results": results}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
