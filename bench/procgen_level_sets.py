"""How hard is a block of Procgen training levels? A uniform-random policy's mean return on each
block, to read the issue 20 study's level sets against (docs/procgen.md).

    python bench/procgen_level_sets.py --blocks 0:10 1000000:10 2000000:10 0:200 \
        1000000:200 2000000:200 --episodes 400

Each block START:N is the training split [START, START + N) that `train.py --start-level START
--train-levels N` (or bench/procgen_study.py --start-level) would use. --envs envs play
uniform-random actions (numpy seed --seed) from `ProcgenVecEnv(..., seed=--seed)` until
--episodes episodes have ended; the line gives their mean return and its standard error.
The first episodes to end are kept, so short episodes weigh a little more than in an
evaluation that plays each env to its end; every block is measured the same way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import numpy as np  # noqa: E402

from envs.procgen import ProcgenVecEnv  # noqa: E402


def random_returns(env, episodes: int, seed: int) -> list[float]:
    """The returns of the first `episodes` episodes to end in `env` (a vector env, already
    reset) under uniform-random actions drawn from numpy's generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    n = env.action_space.n
    acc = np.zeros(env.num_envs)
    returns: list[float] = []
    while len(returns) < episodes:
        step = env.step(rng.integers(0, n, len(acc)))
        acc += step.rewards
        for i in np.flatnonzero(step.terminated | step.truncated):
            returns.append(float(acc[i]))
            acc[i] = 0.0
    return returns[:episodes]


def block(text: str) -> tuple[int, int]:
    """'START:N' -> (START, N), both >= 0 and N >= 1."""
    try:
        start, n = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a block is START:N, got {text!r}") from None
    if start < 0 or n < 1:
        raise argparse.ArgumentTypeError(f"a block needs START >= 0 and N >= 1, got {text!r}")
    return start, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="coinrun")
    parser.add_argument("--blocks", type=block, nargs="+", required=True, help="START:N ...")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.episodes < 2 or args.envs < 1:
        parser.error("--episodes must be >= 2 and --envs >= 1")
    for start, n in args.blocks:
        began = time.perf_counter()
        env = ProcgenVecEnv(f"procgen:{args.game}", args.envs, args.seed, "easy", n, start,
                            num_threads=1)  # fmt: skip
        try:
            env.reset()
            returns = random_returns(env, args.episodes, args.seed)
        finally:
            env.close()
        se = statistics.pstdev(returns) / len(returns) ** 0.5
        print(f"{args.game} easy, levels [{start:,}, {start + n:,}): random-policy return "
              f"{statistics.fmean(returns):.2f} +- {se:.2f} (s.e., {len(returns)} episodes, "
              f"{time.perf_counter() - began:.0f} s)", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
