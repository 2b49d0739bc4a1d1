"""Issue 7's comparison: REValueD vs DecQN on discretised Hopper-v5 and Walker2d-v5.

    python bench/revalued_study.py --seeds 0 1 --jobs 2
    python bench/revalued_study.py --seeds 0 1 --table-only

Runs every preset below for every seed (resumable, bench/jobs.py) with the bias harness every
50k steps, then writes docs/revalued.md's table: final and best eval return, the last bias
measurement (normalized), and REValueD's last spread of the members' targets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import REPO, mean_std, run_all  # noqa: E402

PRESETS = [
    "configs/revalued/hopper-cpu.yaml",
    "configs/revalued/hopper-cpu-decqn.yaml",
    "configs/revalued/walker2d-cpu.yaml",
    "configs/revalued/walker2d-cpu-decqn.yaml",
]


def run_dir(out: Path, preset: str, seed: int) -> Path:
    return out / f"{Path(preset).stem}-s{seed}"


def table(out: Path, seeds: list[int]) -> str:
    lines = ["| preset | seeds | env steps | final eval | best eval | normalized bias (last) "
             "| target std across members (last) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for preset in PRESETS:
        runs = [run_dir(out, preset, s) / "summary.json" for s in seeds]
        summaries = [json.loads(p.read_text()) for p in runs if p.is_file()]
        if not summaries:
            continue
        biases = [s["bias"][-1]["bias_normalized_mean"] for s in summaries if s["bias"]]
        spread = [s["last_update_metrics"].get("target/member_std") for s in summaries]
        spread = [v for v in spread if v is not None]
        lines.append(
            f"| {preset} | {len(summaries)} | "
            f"{', '.join(str(s['env_steps']) for s in summaries)} | "
            f"{mean_std([s['eval_return_mean'] for s in summaries])} | "
            f"{mean_std([s['best_eval_return_mean'] for s in summaries])} | "
            f"{mean_std(biases, '+.3f')} | {mean_std(spread, '.3f')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    parser.add_argument("--out", default="bench/out/revalued", help="folder of the run folders")
    parser.add_argument("--table", default="docs/revalued-table.md")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--train-args", default="", help="extra train.py arguments, one string")
    args = parser.parse_args()
    out = REPO / args.out
    if not args.table_only:
        jobs = [(run_dir(out, p, s), ["--config", p, "--seed", str(s), "--bias-every", "50000",
                                        *args.train_args.split()])
                for p in PRESETS for s in args.seeds]  # fmt: skip
        run_all(jobs, args.jobs)
    text = table(out, args.seeds)
    (REPO / args.table).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
