"""Issue 20's CPU-sized study: PPO on one Procgen game, few vs many training levels.

    python bench/procgen_study.py --num-envs 16 --jobs 2 \
        --train-args "--set num_steps=64 --set minibatches=4"   # the CPU study
    python bench/procgen_study.py --table-only
    python bench/procgen_study.py --game starpilot --levels 10 200 --seeds 0 1 2

For every training-level count in --levels (default 10 and 200) and seed in --seeds: train.py
--agent ppo --env procgen:GAME --distribution-mode easy --train-levels N --precision bf16 for
--frames env steps, --num-envs envs (64 as the paper; fewer on a CPU, with the rollout size in
--train-args, e.g. "--set num_steps=64"), evaluating every --eval-every frames: each evaluation
is the generalization report (harness/generalization.py), --eval-episodes deterministic
episodes on the training levels and as many on held-out levels. Runs go through bench/jobs.py
(a finished run is skipped, an interrupted one resumed; --jobs at a time).

Each finished run becomes a row of docs/procgen-study.csv (key: game, levels, seed), the
record that outlives the run folders: the last evaluation's train return / normalized, held-out
return / normalized and gap, the best train and held-out normalized of the run, frames, wall
time, and the curve as one text column: "STEP TRAIN TEST" (normalized) per evaluation,
separated by "; ". docs/procgen-study.md, drawn from every row, gives per (game, levels) the
mean +- std over seeds at the end, and per game the issue's bar: with the smallest level
count the policy scores higher on its training levels than on held-out ones, and with the
largest count the gap is smaller than with the smallest, per seed and in the mean; then the
aggregates (bench/jobs.py Aggregates) per level count over its games and seeds: IQM, mean and
optimality gap of the held-out and the training-level normalized scores, with
stratified-bootstrap intervals; their performance profiles go to
docs/procgen-study-profiles.png.

Default game: coinrun. CoinRun is the game of the train-vs-test-with-N-levels experiment that
Procgen grew out of (Cobbe et al. 2019, "Quantifying Generalization in Reinforcement
Learning": agents overfit small level sets, and the gap shrinks as levels are added), and in
easy mode its normalization floor is R_min = 5 of R_max = 10 (train-procgen constants.py):
an untrained policy already reaches the coin in many short levels, so the reward signal is
there from the first rollouts, unlike games whose early PPO curves sit flat for millions of
frames (bigfish, leaper, chaser in the Procgen paper's easy curves). The repository's PPO
throughput figures (docs/procgen.md) are also on coinrun. That it learns, and shows a gap,
within about 1-2M frames on this CPU is not established: a short pilot (one 10-level run of a
few hundred thousand frames) must confirm it before the full grid is spent on it; --game
switches the game.

Cost on this 2-core CPU: the PPO loop ran at 180 frames/s on one core in bf16 with 16 envs x
64 steps, 3 epochs x 4 minibatches (docs/procgen.md), so 1M frames is about 1.5 h of training
per run, plus the evaluations (10 reports of 100 episodes on 8 envs: roughly 5-30 min per run,
the longer when untrained episodes run to the 1000-step timeout); the default grid (2 level
counts x 2 seeds) with --jobs 2 on two free cores is about 3.5-4 h, twice that at 2M frames,
and longer while other runs share the cores.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import (  # noqa: E402
    REPO,
    Aggregates,
    RunRecord,
    finished_summary,
    mean_std,
    publish,
    run_all,
    seeds_of,
)

GAME = "coinrun"  # module doc: why
CSV_FIELDS = ["game", "levels", "seed", "env_steps", "train_return", "train_normalized",
              "test_return", "test_normalized", "gap", "best_train_normalized",
              "best_test_normalized", "best_test_at", "wall_time_s", "curve"]  # fmt: skip
RECORD = RunRecord(CSV_FIELDS, ("game", "levels", "seed"),
                   ints=("levels", "seed", "env_steps", "best_test_at"),
                   what="a Procgen-study", texts=("curve",))  # fmt: skip


AGGREGATES = Aggregates(
    configuration=lambda r: f"{r['levels']} training levels",
    task=lambda r: r["game"],
    measures={
        "held-out normalized": lambda r: r["test_normalized"],
        "train normalized": lambda r: r["train_normalized"],
    },
    normalization="Normalization: train-procgen's easy-mode range of each game "
    "(harness/generalization.py normalized_score): 0 = R_min, 1 = R_max; at the last evaluation.",
)


def run_dir(out: Path, game: str, levels: int, seed: int) -> Path:
    return out / f"ppo-{game}-l{levels}-s{seed}"


def train_argv(game: str, levels: int, seed: int, args: argparse.Namespace) -> list[str]:
    """train.py's arguments for one run of the study."""
    return ["--agent", "ppo", "--env", f"procgen:{game}", "--distribution-mode", "easy",
            "--train-levels", str(levels), "--seed", str(seed),
            "--total-steps", str(args.frames), "--num-envs", str(args.num_envs),
            "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes),
            "--precision", "bf16", *shlex.split(args.train_args)]  # fmt: skip


def curve_text(evals: list[dict]) -> str:
    """'STEP TRAIN TEST; ...': normalized scores at each evaluation, 4 decimals."""
    return "; ".join(f"{e['env_steps']} {e['train_normalized']:.4f} {e['test_normalized']:.4f}"
                     for e in evals)  # fmt: skip


def parse_curve(text: str | None) -> list[tuple[int, float, float]]:
    """curve_text's inverse: [(step, train normalized, test normalized), ...]."""
    if not text:
        return []
    points = []
    for point in text.split(";"):
        step, train, test = point.split()
        points.append((int(step), float(train), float(test)))
    return points


def row(summary: dict, game: str, levels: int, seed: int) -> dict:
    """One finished run's line of the record, from its summary.json (its `evals`: one
    generalization report each)."""
    evals = summary["evals"]
    last = evals[-1]
    best_test = max(evals, key=lambda e: e["test_normalized"])
    return {
        "game": game, "levels": levels, "seed": seed, "env_steps": summary["env_steps"],
        "train_return": last["return_mean"], "train_normalized": last["train_normalized"],
        "test_return": last["test_return_mean"], "test_normalized": last["test_normalized"],
        "gap": last["gap"],
        "best_train_normalized": max(e["train_normalized"] for e in evals),
        "best_test_normalized": best_test["test_normalized"],
        "best_test_at": best_test["env_steps"],
        "wall_time_s": summary["wall_time_s"], "curve": curve_text(evals),
    }  # fmt: skip


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def bar(rows: list[dict], game: str) -> list[str]:
    """The issue's bar for one game, as markdown lines: with the smallest level count train
    normalized > held-out normalized, and the largest count's gap < the smallest's; per seed
    (seeds with a row at the count, or at both counts) and in the mean over seeds."""
    mine = [r for r in rows if r["game"] == game]
    counts = sorted({r["levels"] for r in mine})
    if len(counts) < 2:
        return [f"- {game}: the bar needs two level counts; rows only for "
                f"{', '.join(map(str, counts))} levels"]  # fmt: skip
    few, many = counts[0], counts[-1]
    small = {r["seed"]: r for r in mine if r["levels"] == few}
    large = {r["seed"]: r for r in mine if r["levels"] == many}
    both = sorted(small.keys() & large.keys())
    over = [small[s]["train_normalized"] > small[s]["test_normalized"] for s in sorted(small)]
    mean_over = statistics.fmean(r["train_normalized"] for r in small.values()) > (
        statistics.fmean(r["test_normalized"] for r in small.values()))  # fmt: skip
    shrinks = [large[s]["gap"] < small[s]["gap"] for s in both]
    mean_few = statistics.fmean(small[s]["gap"] for s in both) if both else None
    mean_many = statistics.fmean(large[s]["gap"] for s in both) if both else None
    mean_shrinks = both != [] and mean_many < mean_few
    holds = all(over) and mean_over and both != [] and all(shrinks) and mean_shrinks
    per_over = ", ".join(f"seed {s} {_yes(o)}" for s, o in zip(sorted(small), over))
    per_shrink = ", ".join(f"seed {s} {_yes(k)}" for s, k in zip(both, shrinks)) or "no seed"
    seeds = ", ".join(map(str, both))
    gaps = f" ({mean_many:+.3f} vs {mean_few:+.3f}, seeds {seeds})" if both else ""
    return [
        f"- {game}, train > held-out at {few} levels: {per_over}; mean {_yes(mean_over)}",
        f"- {game}, gap smaller at {many} than at {few} levels: {per_shrink}; mean "
        f"{_yes(mean_shrinks)}{gaps}",
        f"- {game}: **bar {'holds' if holds else 'fails'}** (both parts, every seed and mean)",
    ]


def table(rows: list[dict]) -> str:
    groups = sorted({(r["game"], r["levels"]) for r in rows})
    lines = [
        "# PPO on Procgen (easy): training levels vs held-out levels (issue 20, CPU study)", "",
        "Produced by bench/procgen_study.py (its docstring has the commands); every run's row "
        "is in docs/procgen-study.csv. Normalized scores: train-procgen's easy ranges; gap = "
        "train normalized - held-out normalized; at the last evaluation, mean +- population "
        "std over seeds.", "",
        "| game | levels | seeds | frames | train normalized | held-out normalized | gap "
        "| train return | held-out return | best held-out normalized |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for game, levels in groups:
        group = seeds_of(rows, game=game, levels=levels)
        frames = ", ".join(sorted({f"{r['env_steps']:,}" for r in group}))
        lines.append(
            f"| {game} | {levels} | {', '.join(str(r['seed']) for r in group)} | {frames} | "
            f"{mean_std([r['train_normalized'] for r in group], '.3f')} | "
            f"{mean_std([r['test_normalized'] for r in group], '.3f')} | "
            f"{mean_std([r['gap'] for r in group], '+.3f')} | "
            f"{mean_std([r['train_return'] for r in group], '.2f')} | "
            f"{mean_std([r['test_return'] for r in group], '.2f')} | "
            f"{mean_std([r['best_test_normalized'] for r in group], '.3f')} |"
        )
    lines += ["", "The bar (issue 20): train above held-out with the fewest levels, and a "
              "smaller gap with the most.", ""]  # fmt: skip
    for game in sorted({r["game"] for r in rows}):
        lines += bar(rows, game)
    lines += ["", "Each run's curve: train / held-out normalized at each evaluation (frames).",
              ""]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["game"], r["levels"], r["seed"])):
        points = ", ".join(f"{step:,}: {train:.3f} / {test:.3f}"
                           for step, train, test in parse_curve(r["curve"]))  # fmt: skip
        lines.append(f"- {r['game']}, {r['levels']} levels, seed {r['seed']}: {points}")
    return "\n".join(lines) + "\n" + AGGREGATES.markdown(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=GAME, help="Procgen game (default: coinrun, see doc)")
    parser.add_argument("--levels", type=int, nargs="+", default=[10, 200],
                        help="training-level counts")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--frames", type=int, default=1_000_000, help="env steps per run")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=100_000, help="frames")
    parser.add_argument("--eval-episodes", type=int, default=50,
                        help="per evaluation, on training and on held-out levels each")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    parser.add_argument("--out", default="bench/out/procgen", help="folder of the run folders")
    parser.add_argument("--table", default="docs/procgen-study.md")
    parser.add_argument("--csv", default="docs/procgen-study.csv", help="per-run record")
    parser.add_argument("--profiles", default="docs/procgen-study-profiles.png")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--train-args", default="",
                        help='train.py arguments, one string: "--set num_steps=64"')  # fmt: skip
    args = parser.parse_args()
    if any(n < 1 for n in args.levels):
        parser.error("--levels: counts must be >= 1 (train.py reads 0 as the protocol's 200)")
    out = REPO / args.out
    grid = [(n, s) for n in args.levels for s in args.seeds]
    if not args.table_only:
        run_all([(run_dir(out, args.game, n, s), train_argv(args.game, n, s, args))
                 for n, s in grid], args.jobs)  # fmt: skip
    summaries = [(finished_summary(run_dir(out, args.game, n, s)), n, s) for n, s in grid]
    finished = [row(summary, args.game, n, s) for summary, n, s in summaries if summary]
    code = publish(RECORD, REPO / args.csv, finished, table, REPO / args.table)
    if code == 0:
        AGGREGATES.plot(RECORD.read(REPO / args.csv), REPO / args.profiles,
                        "PPO on Procgen (easy), normalized (bench/procgen_study.py)")  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
