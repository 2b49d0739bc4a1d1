"""Procgen's stepping speed by native thread count (train.py --env-threads): frames/s of a
ProcgenVecEnv stepped with uniform-random actions, no agent.

    python bench/procgen_env_speed.py                       # coinrun, 16 envs, 0 / 1 / 4 threads
    python bench/procgen_env_speed.py --envs 64 --threads 1 4 8 --game starpilot

Each round builds one env per thread count (in an order that rotates between rounds, so no
count always runs first), steps it --steps times after --warmup untimed steps, and prints the
frames/s; the last line is each count's median over rounds. The frames do not depend on the
count (tests/test_procgen.py); only the speed does, and it depends on how many cores are free:
say what else ran beside it when quoting a figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from envs.procgen import NUM_ACTIONS, ProcgenVecEnv  # noqa: E402


def frames_per_second(game: str, envs: int, threads: int, steps: int, warmup: int,
                      seed: int) -> float:  # fmt: skip
    env = ProcgenVecEnv(f"procgen:{game}", envs, seed, num_threads=threads)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, NUM_ACTIONS, (warmup + steps, envs))
    try:
        for a in actions[:warmup]:
            env.step(a)
        start = time.perf_counter()
        for a in actions[warmup:]:
            env.step(a)
        return steps * envs / (time.perf_counter() - start)
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="coinrun")
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 1, 4])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.envs < 1 or args.steps < 1 or args.rounds < 1 or min(args.threads) < 0:
        parser.error("--envs, --steps and --rounds must be >= 1, --threads >= 0")
    rates: dict[int, list[float]] = {t: [] for t in args.threads}
    for k in range(args.rounds):
        order = args.threads[k % len(args.threads) :] + args.threads[: k % len(args.threads)]
        for threads in order:
            rate = frames_per_second(args.game, args.envs, threads, args.steps, args.warmup,
                                     args.seed + k)  # fmt: skip
            rates[threads].append(rate)
            print(f"round {k}: {threads} threads {rate:,.0f} frames/s", flush=True)
    print(
        "median: "
        + ", ".join(f"{t} threads {statistics.median(r):,.0f}" for t, r in rates.items())
        + " frames/s"  # fmt: skip
        f" ({args.game}, {args.envs} envs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
