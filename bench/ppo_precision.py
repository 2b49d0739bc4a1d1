"""Does bf16 make PPO's small-minibatch collapse on Procgen likelier? (docs/procgen.md, "The
CPU study": with 8 minibatches of 512 frames a bf16 pilot's policy entropy fell to 0 within 24k
frames on coinrun, the fp32 pilot's had not by 49k; one seed each.)

    python bench/ppo_precision.py --seeds 0 1 --jobs 2      # bf16 and fp32, 2 seeds, 60k frames
    python bench/ppo_precision.py --table-only

For every precision in --precisions and seed in --seeds: train.py --agent ppo --env
procgen:GAME --distribution-mode easy --train-levels 10 --num-envs 16 --set num_steps=256 --set
minibatches=M --precision P --total-steps F, with no evaluation (bench/jobs.py: finished runs
skipped, interrupted ones resumed). From each run's TensorBoard log: the lowest policy entropy
logged (uniform over Procgen's 15 actions is ln 15 = 2.708), the first frame at which it fell
below --collapse, the entropy at the end, and the mean training-episode return per 10k frames.
Each finished run becomes a row of docs/ppo-precision.csv as it ends (key: precision,
minibatches, seed); docs/ppo-precision.md is drawn from every row. fp32 runs anywhere; bf16
belongs on a CPU with native bf16 kernels (AVX-512 BF16 or AMX; agents.nets.native_bf16):
without them it is about 10x slower.

Cost (AVX-512 BF16, two runs side by side): about 6 min per bf16 run and 15-20 min per fp32 run
at 60k frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import REPO, RunRecord, publish, recorder, run_all, scalars, start_study  # noqa: E402

FIELDS = ["game", "precision", "minibatches", "seed", "env_steps", "min_entropy",
          "collapsed_at", "final_entropy", "returns_per_10k"]  # fmt: skip
RECORD = RunRecord(FIELDS, ("precision", "minibatches", "seed"),
                   ints=("minibatches", "seed", "env_steps", "collapsed_at"),
                   what="a PPO-precision",
                   texts=("game", "precision", "returns_per_10k"))  # fmt: skip
BIN = 10_000  # frames per bin of the training-return column


def collapse_frame(points: list[tuple[int, float]], threshold: float) -> int | None:
    """The first step whose entropy is below `threshold`, or None; points (step, entropy)."""
    return next((step for step, value in points if value < threshold), None)


def binned_means(points: list[tuple[int, float]], width: int, end: int) -> list[float | None]:
    """Mean of the values in each [k width, (k + 1) width) for the whole bins below `end`; None
    for a bin with no point."""
    out: list[float | None] = []
    for low in range(0, end - width + 1, width):
        inside = [v for step, v in points if low <= step < low + width]
        out.append(float(np.mean(inside)) if inside else None)
    return out


def run_dir(out: Path, game: str, precision: str, minibatches: int, seed: int) -> Path:
    return out / f"ppo-{game}-{precision}-mb{minibatches}-s{seed}"


def train_argv(game: str, precision: str, minibatches: int, seed: int, frames: int) -> list[str]:
    return ["--agent", "ppo", "--env", f"procgen:{game}", "--distribution-mode", "easy",
            "--train-levels", "10", "--num-envs", "16", "--set", "num_steps=256",
            "--set", f"minibatches={minibatches}", "--precision", precision, "--seed", str(seed),
            "--total-steps", str(frames), "--eval-every", str(10 * frames)]  # fmt: skip


def row_of(folder: Path, game: str, precision: str, minibatches: int, seed: int,
           threshold: float) -> dict:  # fmt: skip
    entropy = scalars(folder, "loss/entropy")
    returns = scalars(folder, "train/episode_return")
    end = entropy[-1][0] if entropy else 0
    bins = binned_means(returns, BIN, end)
    return {
        "game": game, "precision": precision, "minibatches": minibatches, "seed": seed,
        "env_steps": end, "min_entropy": min((v for _, v in entropy), default=None),
        "collapsed_at": collapse_frame(entropy, threshold),
        "final_entropy": entropy[-1][1] if entropy else None,
        "returns_per_10k": " ".join("-" if b is None else f"{b:.1f}" for b in bins),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = ["| game | precision | minibatches | seed | frames | lowest entropy | entropy < "
             "threshold at | final entropy | training return per 10k frames |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["minibatches"], r["precision"], r["seed"])):
        at = "never" if r["collapsed_at"] is None else f"{r['collapsed_at']:,}"
        lines.append(f"| {r['game']} | {r['precision']} | {r['minibatches']} | {r['seed']} | "
                     f"{r['env_steps']:,} | {r['min_entropy']:.3f} | {at} | "
                     f"{r['final_entropy']:.3f} | {r['returns_per_10k']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="coinrun")
    parser.add_argument("--precisions", nargs="+", choices=("bf16", "fp32"),
                        default=["bf16", "fp32"])  # fmt: skip
    parser.add_argument("--minibatches", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--frames", type=int, default=60_000)
    parser.add_argument("--collapse", type=float, default=0.1,
                        help="entropy below which the policy counts as collapsed")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="bench/out/ppo-precision")
    parser.add_argument("--csv", default="docs/ppo-precision.csv")
    parser.add_argument("--table", default="docs/ppo-precision.md")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    out, csv_path, table_path = REPO / args.out, REPO / args.csv, REPO / args.table
    if start_study(out, args.table_only, [("--csv", csv_path), ("--table", table_path)],
                   RECORD, csv_path):  # fmt: skip
        return 2  # before any training, and before anything is written
    keys = {run_dir(out, args.game, p, args.minibatches, s): (p, s)
            for p in args.precisions for s in args.seeds}  # fmt: skip
    if not args.table_only:

        def row(folder: Path) -> dict:
            precision, seed = keys[folder]
            return row_of(folder, args.game, precision, args.minibatches, seed, args.collapse)

        run_all([(f, train_argv(args.game, p, args.minibatches, s, args.frames))
                 for f, (p, s) in keys.items()], args.jobs,
                recorder(RECORD, csv_path, row))  # fmt: skip
    return publish(RECORD, csv_path, [], table, table_path)


if __name__ == "__main__":
    sys.exit(main())
