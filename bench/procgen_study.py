"""Issue 20's CPU-sized study: PPO on one Procgen game, few vs many training levels, and the
value-based agent at one setting with its critic's bias.

    python bench/procgen_study.py --num-envs 16 --jobs 2 --frames 400000 --seeds 0 \
        --train-args "--set num_steps=256 --set minibatches=2"  # CPU study (PPO), then --seeds 1
    python bench/procgen_study.py --agent revalued --jobs 2      # the value-based agent
    python bench/procgen_study.py --table-only
    python bench/procgen_study.py --game starpilot --levels 10 200 --seeds 0 1 2
    python bench/procgen_study.py --start-level seed ...      # a training-level set per seed

The value-based agent (`--agent revalued`): configs/revalued/procgen-coinrun-cpu.yaml (REValueD
with one action dimension, an ensemble double DQN on the IMPALA encoder), by default 200
training levels, 250k frames, evaluations every 50k and the critic's bias every --bias-every
frames on --bias-states states per side (training/procgen.py procgen_bias: states the greedy
policy reaches on training levels and on held-out levels, restored there and rolled out; the
record keeps the last measurement's raw and REDQ-normalized bias of each side).

For every training-level count in --levels (default 10 and 200) and seed in --seeds: train.py
--agent ppo --env procgen:GAME --distribution-mode easy --train-levels N --precision auto (bf16
where the device has native bfloat16 kernels, else fp32) for --frames env steps,
--num-envs envs (64 as the paper; fewer on a CPU, with the rollout in --train-args),
evaluating every --eval-every frames: each evaluation is the
generalization report (harness/generalization.py), --eval-episodes episodes on the
training levels and as many on held-out levels (PPO samples its actions, as the protocol does;
the value-based agent acts epsilon-greedy at its preset's eval_epsilon). Runs go through
bench/jobs.py (a finished run is skipped, an interrupted one resumed; --jobs at a time).

Training levels. By default every run trains from level 0, as the protocol does: levels
[0, N). `--start-level seed` gives each seed a level block of its own, [1,000,000 x (seed + 1),
... + N): the 10-level set of seed s is then the first 10 levels of its 200-level set, and the
difficulty of the training sets is drawn per seed instead of once for every seed. A
uniform-random policy returns 1.4-2.6 on 10-level blocks of coinrun and 2.1-3.1 on 200-level
blocks, 1.73 on levels 0-9 (bench/procgen_level_sets.py, docs/procgen.md "How hard a block
of training levels is"): any small set starts below its held-out side, levels 0-9 no more than
others. Held-out levels are every level above the training range, as always. The record keeps
each run's `start_level` and `level_sets` ("from 0", or "per seed"), and the tables and the bar
keep the two apart.

Each finished run becomes a row of docs/procgen-study.csv (key: agent, game, levels, seed,
start_level), the
record that outlives the run folders: the last evaluation's train return / normalized, held-out
return / normalized and gap, the best train and held-out normalized of the run, frames, wall
time, and the curve as one text column: "STEP TRAIN TEST" (normalized) per evaluation,
separated by "; ". Then the final report: every finished run is evaluated once more with
--final-episodes episodes a side (default 200; `evaluate.py RUN --generalization --seed
--final-seed`, cached in the run folder as generalization-STEPS-Kep-seedS.json), as the
50-episode evaluations during training leave a gap's standard error near 0.18 on coinrun; the
row keeps its normalized scores, gap and the gap's standard error
(sqrt((std_train^2 + std_test^2) / K)), and for a run on at most 20 training levels its training
side by level (final_train_levels, "LEVEL:EPISODES:MEAN_RETURN" in level order: which levels
the policy has memorized, kept when the run folder is gone). docs/procgen-study.md, drawn
from every row, gives per (agent, game, levels) the mean +- std over seeds at the end (and the
bias where measured), and per agent and game the issue's bar: with the smallest level count the
policy scores higher on its training levels than on held-out ones, and with the largest count
the gap is smaller than with the smallest, per seed and in the mean, judged on the final
reports when every row has one (else on the last evaluations, and it says which); then the
aggregates (bench/jobs.py Aggregates) per level count over its games and seeds: IQM, mean and
optimality gap of the held-out and the training-level normalized scores, with
stratified-bootstrap intervals; their performance profiles go to docs/procgen-study-profiles.png.
docs/procgen-study-curves.png draws every group's curves from the record (harness/plots.py's
panels: training vs held-out normalized score, and the gap, mean over seeds with their range).

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

With 16 envs instead of 64, keep the paper's minibatch (2,048 frames) and gradient steps per
frame (3 epochs x 8 minibatches per 16,384 frames): 16 envs x 256 steps in 2 minibatches. Smaller
minibatches with more steps per frame (64 steps and 4 minibatches of 256, or 256 steps and 8 of
512) collapsed the policy on coinrun within 25k-140k frames (entropy to ~0, every episode to the
timeout): docs/procgen.md, "The CPU study".

Cost on this 2-core CPU (AVX-512 BF16, bf16): about 160 frames/s per run with two runs side by
side at those settings, so 400k frames and 4 evaluations take about 45-50 minutes per run and
the 2 x 2 grid about 1 h 40 min at --jobs 2; fp32 (no native bf16) is about 3x slower.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
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
    recorder,
    run_all,
    seeds_of,
    start_study,
)

GAME = "coinrun"  # module doc: why
# The value-based agent's preset (REValueD with one action dimension: an ensemble double DQN);
# train.py flags given here override it.
PRESETS = {"revalued": "configs/revalued/procgen-coinrun-cpu.yaml"}
MIN_SEEDS = 2  # the bar: at least 2 seeds
BUDGET_SPREAD = 1.1  # the bar's rows end within 10% of one frame count (a rollout's rounding)
# Per agent: default training-level counts, frames, evaluation interval (module doc).
DEFAULTS = {"ppo": ([10, 200], 1_000_000, 100_000), "revalued": ([200], 250_000, 50_000)}
SIDES = ("train", "test")
# --start-level seed: seed s trains on levels [PER_SEED_BLOCK x (s + 1), ... + N) (module doc)
PER_SEED_BLOCK = 1_000_000
CSV = "docs/procgen-study.csv"  # --csv's default, the record the table names unless told
FROM_ZERO = "from 0"  # the record's level_sets of the protocol's split, and of rows before it
CSV_FIELDS = ["agent", "game", "levels", "seed", "start_level", "level_sets", "env_steps",
              "train_return",
              "train_normalized", "test_return", "test_normalized", "gap",
              "best_train_normalized", "best_test_normalized", "best_test_at", "wall_time_s",
              "bias_train", "bias_train_redq", "bias_test", "bias_test_redq",
              "curve", "final_episodes", "final_train_normalized", "final_test_normalized",
              "final_gap", "final_gap_se", "final_train_levels"]  # fmt: skip
FINAL_FIELDS = CSV_FIELDS[-6:]
# A final report's training side broken down by level (final_train_levels) for a run with at
# most this many training levels: what a small level count memorized, kept in the record.
PER_LEVEL_MAX = 20
RECORD = RunRecord(CSV_FIELDS, ("agent", "game", "levels", "seed", "start_level"),
                   ints=("levels", "seed", "start_level", "env_steps", "best_test_at",
                         "final_episodes"),
                   what="a Procgen-study", texts=("curve", "level_sets", "final_train_levels"),
                   defaults={"start_level": 0, "level_sets": FROM_ZERO})  # fmt: skip


def final_or_last(r: dict, side: str) -> float:
    """A run's normalized score on one side: its final report's where made, else its last
    evaluation's."""
    final = r.get(f"final_{side}_normalized")
    return r[f"{side}_normalized"] if final is None else final


def start_level(spec: str, seed: int) -> int:
    """The first training level of seed `seed`'s runs under --start-level `spec`: the integer
    given, or with 'seed' a block of its own, PER_SEED_BLOCK x (seed + 1)."""
    return PER_SEED_BLOCK * (seed + 1) if spec == "seed" else int(spec)


def level_sets(spec: str) -> str:
    """The record's name of how --start-level `spec` chose the training levels."""
    return "per seed" if spec == "seed" else f"from {int(spec)}"


def levels_label(levels: int, sets: str) -> str:
    """'10', or '10 (per seed)' where the training levels did not start at level 0."""
    return str(levels) if sets == FROM_ZERO else f"{levels} ({sets})"


AGGREGATES = Aggregates(
    configuration=lambda r: (
        f"{r['agent']}, {levels_label(r['levels'], r['level_sets'])} training levels"
    ),
    task=lambda r: r["game"],
    measures={
        "held-out normalized": lambda r: final_or_last(r, "test"),
        "train normalized": lambda r: final_or_last(r, "train"),
    },
    normalization="Normalization: train-procgen's easy-mode range of each game "
    "(harness/generalization.py normalized_score): 0 = R_min, 1 = R_max; from each run's final "
    "report where it has one, else from its last evaluation.",
)


def run_dir(out: Path, game: str, levels: int, seed: int, agent: str = "ppo",
            start: int = 0) -> Path:  # fmt: skip
    return out / (f"{agent}-{game}-l{levels}-s{seed}" + (f"-start{start}" if start else ""))


def train_argv(game: str, levels: int, seed: int, args: argparse.Namespace) -> list[str]:
    """train.py's arguments for one run of the study: PPO with the flags below, or the
    value-based agent's preset with the study's level split, budget, evaluations and bias."""
    agent = getattr(args, "agent", "ppo")
    start = start_level(getattr(args, "start_level", "0"), seed)
    split = ["--env", f"procgen:{game}", "--distribution-mode", "easy",
             "--train-levels", str(levels), "--seed", str(seed),
             *(["--start-level", str(start)] if start else []),
             "--total-steps", str(args.frames)]  # fmt: skip
    # every evaluation the generalization report: --gen-every no longer than --eval-every
    evals = ["--eval-every", str(args.eval_every), "--gen-every", str(args.eval_every),
             "--eval-episodes", str(args.eval_episodes)]  # fmt: skip
    extra = shlex.split(args.train_args)
    precision = getattr(args, "precision", "auto")
    if agent == "ppo":
        return ["--agent", "ppo", *split, "--num-envs", str(args.num_envs), *evals,
                "--precision", precision, *extra]  # fmt: skip
    envs = [] if args.num_envs is None else ["--num-envs", str(args.num_envs)]
    return ["--config", PRESETS[agent], *split, *envs, *evals, "--precision", precision,
            "--bias-every", str(args.bias_every), "--bias-states", str(args.bias_states),
            *extra]  # fmt: skip


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


def final_path(folder: Path, env_steps: int, episodes: int, seed: int) -> Path:
    return folder / f"generalization-{env_steps}-{episodes}ep-seed{seed}.json"


def final_report(folder: Path, env_steps: int, episodes: int, seed: int,
                 compute: bool = True) -> dict | None:  # fmt: skip
    """The finished run's final generalization report (evaluate.py --generalization, `episodes`
    a side, episode seeds from `seed`) at `env_steps`: read from the run folder's cache, else,
    with `compute`, made there. None when not made, or when evaluate.py failed (said on
    stderr: the run's row is still recorded, without it)."""
    path = final_path(folder, env_steps, episodes, seed)
    if not path.is_file():
        if not compute:
            return None
        argv = [sys.executable, str(REPO / "evaluate.py"), str(folder), "--generalization",
                "--episodes", str(episodes), "--seed", str(seed), "--json", str(path)]  # fmt: skip
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0 or not path.is_file():
            why = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"warning: {folder.name}: final report failed: {why}", file=sys.stderr)
            return None
    report = json.loads(path.read_text())
    made = (report.get("env_steps"), report.get("n_episodes"), report.get("seed"))
    if made != (env_steps, episodes, seed):
        raise SystemExit(f"error: {path} is the report of (env step, episodes, seed) {made}, "
                         f"not {(env_steps, episodes, seed)}; remove it to make it "
                         "again")  # fmt: skip
    return report


def per_level_text(report: dict) -> str:
    """The training side of a final report by level, 'level:episodes:mean return' in level
    order, for a run with at most PER_LEVEL_MAX training levels (else '': a text column)."""
    levels, count = report.get("train_levels"), report.get("n_train_levels")
    if levels is None or count is None or count > PER_LEVEL_MAX:
        return ""
    by_level: dict[int, list[float]] = {}
    for level, value in zip(levels, report["train_returns"], strict=True):
        by_level.setdefault(int(level), []).append(float(value))
    return " ".join(f"{level}:{len(values)}:{sum(values) / len(values):.2f}"
                    for level, values in sorted(by_level.items()))  # fmt: skip


def final_fields(report: dict | None) -> dict:
    """The record's final-report columns (None without a report, final_train_levels ''); the
    gap's standard error from the two sides' population stds of the normalized score over
    `n_episodes` each."""
    if report is None:
        return {**dict.fromkeys(FINAL_FIELDS), "final_train_levels": ""}
    n = report["n_episodes"]
    se = math.sqrt((report["train_normalized_std"] ** 2 + report["test_normalized_std"] ** 2) / n)
    return {"final_episodes": n, "final_train_normalized": report["train_normalized"],
            "final_test_normalized": report["test_normalized"], "final_gap": report["gap"],
            "final_gap_se": se, "final_train_levels": per_level_text(report)}  # fmt: skip


def row(summary: dict, game: str, levels: int, seed: int, agent: str = "ppo",
        final: dict | None = None, start: int = 0, sets: str = FROM_ZERO) -> dict:  # fmt: skip
    """One finished run's line of the record, from its summary.json (the `evals` that made
    the generalization report, which the study asks of every evaluation and train.py of a
    run's last; its last `bias` entry, if any, one measurement per side) and its final report
    (`final_report`), if made."""
    evals = [e for e in summary["evals"] if "gap" in e]
    last = evals[-1]
    best_test = max(evals, key=lambda e: e["test_normalized"])
    biases = summary.get("bias") or [{}]
    bias = {}
    for side in SIDES:
        measured = biases[-1].get(side, {})
        bias[f"bias_{side}"] = measured.get("bias_mean")
        bias[f"bias_{side}_redq"] = measured.get("bias_normalized_redq_mean")
    return {
        "agent": agent, **bias,
        "game": game, "levels": levels, "seed": seed, "start_level": start, "level_sets": sets,
        "env_steps": summary["env_steps"],
        "train_return": last["return_mean"], "train_normalized": last["train_normalized"],
        "test_return": last["test_return_mean"], "test_normalized": last["test_normalized"],
        "gap": last["gap"],
        "best_train_normalized": max(e["train_normalized"] for e in evals),
        "best_test_normalized": best_test["test_normalized"],
        "best_test_at": best_test["env_steps"],
        "wall_time_s": summary["wall_time_s"], "curve": curve_text(evals), **final_fields(final),
    }  # fmt: skip


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def measured_on(rows: list[dict]) -> tuple[str, str]:
    """The columns' prefix the bar judges `rows` on, and its name: the final reports when every
    row has one, else the last evaluations during training."""
    if rows and all(r.get("final_gap") is not None for r in rows):
        episodes = sorted({r["final_episodes"] for r in rows})
        return "final_", f"final reports, {'/'.join(map(str, episodes))} episodes a side"
    return "", "last evaluations during training"


def bar(rows: list[dict], game: str, agent: str = "ppo", sets: str = FROM_ZERO) -> list[str]:
    """The issue's bar for one agent on one game and one way of choosing the training levels
    (`level_sets`), as markdown lines: with the smallest level count train normalized >
    held-out normalized, and the largest count's gap < the smallest's; per seed (seeds with a
    row at the count, or at both counts) and in the mean over seeds; on the final reports when
    every row has one (`measured_on`). Not decided while its rows end at frame counts more than
    BUDGET_SPREAD apart (a grid part-way to a new budget, beside the old budget's rows), unless
    the fewest-levels rows, of one budget, already fail the first part."""
    mine = [r for r in rows
            if (r["game"], r["agent"], r["level_sets"]) == (game, agent, sets)]  # fmt: skip
    who = f"{agent}, {game}" + ("" if sets == FROM_ZERO else f", level sets {sets}")
    counts = sorted({r["levels"] for r in mine})
    if len(counts) < 2:
        return [f"- {who}: the bar needs two level counts; rows only for "
                f"{', '.join(map(str, counts))} levels"]  # fmt: skip
    few, many = counts[0], counts[-1]
    small = {r["seed"]: r for r in mine if r["levels"] == few}
    large = {r["seed"]: r for r in mine if r["levels"] == many}
    both = sorted(small.keys() & large.keys())
    on, source = measured_on([*small.values(), *large.values()])
    train, test, gap = f"{on}train_normalized", f"{on}test_normalized", f"{on}gap"
    over = [small[s][train] > small[s][test] for s in sorted(small)]
    mean_over = statistics.fmean(r[train] for r in small.values()) > (
        statistics.fmean(r[test] for r in small.values()))  # fmt: skip
    shrinks = [large[s][gap] < small[s][gap] for s in both]
    mean_few = statistics.fmean(small[s][gap] for s in both) if both else None
    mean_many = statistics.fmean(large[s][gap] for s in both) if both else None
    mean_shrinks = both != [] and mean_many < mean_few
    holds = all(over) and mean_over and both != [] and all(shrinks) and mean_shrinks
    verdict = "holds" if holds else "fails"
    if holds and len(both) < MIN_SEEDS:
        verdict = f"not decided: the pattern holds in {len(both)} seed, the bar needs {MIN_SEEDS}"
    steps = [r["env_steps"] for r in [*small.values(), *large.values()]]
    few_steps = [r["env_steps"] for r in small.values()]
    if max(steps) > BUDGET_SPREAD * min(steps):
        if max(few_steps) <= BUDGET_SPREAD * min(few_steps) and not (all(over) and mean_over):
            # the first part fails on rows of one budget: no run with more levels changes that
            verdict = (f"fails at {max(few_steps):,} frames on its {few}-level runs alone (the "
                       f"{many}-level runs, at other budgets, cannot change that)")  # fmt: skip
        else:
            verdict = (f"not decided: its runs were trained to different budgets "
                       f"({min(steps):,} to {max(steps):,} frames)")  # fmt: skip
    per_over = ", ".join(f"seed {s} {_yes(o)}" for s, o in zip(sorted(small), over))
    per_shrink = ", ".join(f"seed {s} {_yes(k)}" for s, k in zip(both, shrinks)) or "no seed"
    seeds = ", ".join(map(str, both))
    gaps = f" ({mean_many:+.3f} vs {mean_few:+.3f}, seeds {seeds})" if both else ""
    return [
        f"- {who}, train > held-out at {few} levels: {per_over}; mean {_yes(mean_over)}",
        f"- {who}, gap smaller at {many} than at {few} levels: {per_shrink}; mean "
        f"{_yes(mean_shrinks)}{gaps}",
        f"- {who}: **bar {verdict}** (both parts, every seed and mean, at least "
        f"{MIN_SEEDS} seeds at both level counts; on the {source})",
    ]


def table(rows: list[dict], csv_name: str = CSV) -> str:
    """The markdown page of every row; `csv_name`: the record the page names as its source."""
    groups = sorted({(r["agent"], r["game"], r["levels"], r["level_sets"]) for r in rows})
    lines = [
        "# Procgen (easy): training levels vs held-out levels (issue 20, CPU study)", "",
        "Produced by bench/procgen_study.py (its docstring has the commands); every run's row "
        f"is in {csv_name}. Normalized scores: train-procgen's easy ranges; gap = "
        "train normalized - held-out normalized; at the last evaluation, mean +- population "
        "std over seeds.", "",
        "| agent | game | levels | seeds | frames | train normalized | held-out normalized "
        "| gap | train return | held-out return | best held-out normalized |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for agent, game, levels, sets in groups:
        group = seeds_of(rows, agent=agent, game=game, levels=levels, level_sets=sets)
        frames = ", ".join(sorted({f"{r['env_steps']:,}" for r in group}))
        lines.append(
            f"| {agent} | {game} | {levels_label(levels, sets)} | "
            f"{', '.join(str(r['seed']) for r in group)} | "
            f"{frames} | "
            f"{mean_std([r['train_normalized'] for r in group], '.3f')} | "
            f"{mean_std([r['test_normalized'] for r in group], '.3f')} | "
            f"{mean_std([r['gap'] for r in group], '+.3f')} | "
            f"{mean_std([r['train_return'] for r in group], '.2f')} | "
            f"{mean_std([r['test_return'] for r in group], '.2f')} | "
            f"{mean_std([r['best_test_normalized'] for r in group], '.3f')} |"
        )
    lines += final_table(rows, groups)
    lines += bias_table(rows, groups)
    lines += ["", "The bar (issue 20): train above held-out with the fewest levels, and a "
              "smaller gap with the most.", ""]  # fmt: skip
    for agent, game, sets in sorted({(r["agent"], r["game"], r["level_sets"]) for r in rows}):
        lines += bar(rows, game, agent, sets)
    lines += ["", "Each run's curve: train / held-out normalized at each evaluation (frames).",
              ""]  # fmt: skip
    order = ("agent", "game", "level_sets", "levels", "seed")
    for r in sorted(rows, key=lambda r: tuple(r[k] for k in order)):
        points = ", ".join(f"{step:,}: {train:.3f} / {test:.3f}"
                           for step, train, test in parse_curve(r["curve"]))  # fmt: skip
        final = ""
        if r["final_gap"] is not None:
            final = (f"; final report ({r['final_episodes']} episodes a side): "
                     f"{r['final_train_normalized']:.3f} / {r['final_test_normalized']:.3f}, "
                     f"gap {r['final_gap']:+.3f} +- {r['final_gap_se']:.3f} (s.e.)")  # fmt: skip
        if r.get("final_train_levels"):
            per_level = (item.split(":") for item in r["final_train_levels"].split())
            final += "; by training level (level: mean return (episodes)): " + ", ".join(
                f"{level}: {mean} ({n})" for level, n, mean in per_level
            )
        start = r["start_level"]
        levels = f"levels {start:,}-{start + r['levels'] - 1:,}" if start else "levels"
        lines.append(f"- {r['agent']}, {r['game']}, {r['levels']} {levels}, seed {r['seed']}: "
                     f"{points}{final}")  # fmt: skip
    return "\n".join(lines) + "\n" + AGGREGATES.markdown(rows)


def measured(rows: list[dict], groups: list[tuple], column: str):
    """(agent, game, the levels' label, the group's rows that have `column`) for every group
    with one."""
    for agent, game, levels, sets in groups:
        group = [r for r in seeds_of(rows, agent=agent, game=game, levels=levels, level_sets=sets)
                 if r[column] is not None]  # fmt: skip
        if group:
            yield agent, game, levels_label(levels, sets), group


def final_table(rows: list[dict], groups: list[tuple]) -> list[str]:
    """The final reports (`final_report`) of the groups whose runs have them, mean +- std over
    seeds, and the largest standard error of a seed's gap."""
    lines = []
    for agent, game, levels, group in measured(rows, groups, "final_gap"):
        cells = [mean_std([r[f"final_{k}"] for r in group], f)
                 for k, f in (("train_normalized", ".3f"), ("test_normalized", ".3f"),
                              ("gap", "+.3f"))]  # fmt: skip
        episodes = "/".join(sorted({str(r["final_episodes"]) for r in group}))
        lines.append(f"| {agent} | {game} | {levels} | {', '.join(str(r['seed']) for r in group)}"
                     f" | {episodes} | {' | '.join(cells)} | "
                     f"{max(r['final_gap_se'] for r in group):.3f} |")  # fmt: skip
    if not lines:
        return []
    return ["", "The final reports (evaluate.py --generalization on each finished run, episodes "
            "a side as given), mean +- std over seeds, and the largest standard error of one "
            "seed's gap:", "",
            "| agent | game | levels | seeds | episodes | train normalized | held-out normalized "
            "| gap | largest s.e. of a gap |",
            "|---|---|---|---|---|---|---|---|---|", *lines]  # fmt: skip


def bias_table(rows: list[dict], groups: list[tuple]) -> list[str]:
    """The critic's bias at the last measurement, per side, for the groups that measured it
    (the value-based agent; PPO has no Q)."""
    lines = []
    for agent, game, levels, group in measured(rows, groups, "bias_train"):
        cells = [mean_std([r[f"bias_{side}{kind}"] for r in group], "+.3f")
                 for side in SIDES for kind in ("", "_redq")]  # fmt: skip
        seeds = ", ".join(str(r["seed"]) for r in group)
        lines.append(f"| {agent} | {game} | {levels} | {seeds} | {' | '.join(cells)} |")
    if not lines:
        return []
    return ["", "The critic's bias at the last measurement (training/procgen.py procgen_bias: "
            "states the greedy policy reaches on training and on held-out levels, restored; "
            "Q - discounted return, raw and REDQ-normalized by max(|G|, 10)), mean +- std over "
            "seeds:", "",
            "| agent | game | levels | seeds | bias, training levels | REDQ-normalized "
            "| bias, held-out levels | REDQ-normalized |",
            "|---|---|---|---|---|---|---|---|", *lines]  # fmt: skip


def finished_row(folder: Path, summary: dict, levels: int, seed: int, args: argparse.Namespace,
                 compute: bool = True) -> dict:  # fmt: skip
    """A finished run's row with its final report (made unless cached or not `compute`)."""
    final = None
    if args.final_episodes:
        final = final_report(folder, summary["env_steps"], args.final_episodes, args.final_seed,
                             compute)  # fmt: skip
    start, sets = start_level(args.start_level, seed), level_sets(args.start_level)
    return row(summary, args.game, levels, seed, args.agent, final, start, sets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=list(DEFAULTS), default="ppo",
                        help="ppo, or revalued (the value-based agent, its preset)")  # fmt: skip
    parser.add_argument("--game", default=GAME, help="Procgen game (default: coinrun, see doc)")
    parser.add_argument("--levels", type=int, nargs="+", default=None,
                        help="training-level counts (ppo: 10 200; revalued: 200)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--start-level", default="0",
                        help="first training level of every run (default 0, the protocol's), "
                        f"or 'seed': seed s trains from level {PER_SEED_BLOCK:,} x (s + 1), a "
                        "level set of its own per seed (see doc)")  # fmt: skip
    parser.add_argument("--frames", type=int, default=None,
                        help="env steps per run (ppo: 1M; revalued: 250k)")  # fmt: skip
    parser.add_argument("--num-envs", type=int, default=None,
                        help="ppo: 64 by default; revalued: its preset's 8")  # fmt: skip
    parser.add_argument("--eval-every", type=int, default=None,
                        help="frames (ppo: 100k; revalued: 50k)")  # fmt: skip
    parser.add_argument("--bias-every", type=int, default=50_000,
                        help="revalued: frames between bias measurements")  # fmt: skip
    parser.add_argument("--bias-states", type=int, default=50,
                        help="revalued: states per side per measurement")  # fmt: skip
    parser.add_argument("--eval-episodes", type=int, default=50,
                        help="per evaluation, on training and on held-out levels each")  # fmt: skip
    parser.add_argument("--final-episodes", type=int, default=200,
                        help="episodes a side of every final report (0: none)")  # fmt: skip
    parser.add_argument("--final-seed", type=int, default=7,
                        help="evaluate.py --seed of the final reports")  # fmt: skip
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="train.py --precision: auto is bf16 where the device has "
                        "native bfloat16 kernels, else fp32 (config.yaml keeps which)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    parser.add_argument("--out", default="bench/out/procgen", help="folder of the run folders")
    parser.add_argument("--table", default="docs/procgen-study.md")
    parser.add_argument("--csv", default=CSV, help="per-run record")
    parser.add_argument("--profiles", default="docs/procgen-study-profiles.png")
    parser.add_argument(
        "--curves",
        default="docs/procgen-study-curves.png",
        help="training vs held-out curves of every row (harness/plots.py)",
    )
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--train-args", default="",
                        help='train.py arguments, one string: "--set minibatches=2"')  # fmt: skip
    args = parser.parse_args()
    levels, frames, every = DEFAULTS[args.agent]
    args.levels = levels if args.levels is None else args.levels
    args.frames = frames if args.frames is None else args.frames
    args.eval_every = every if args.eval_every is None else args.eval_every
    if args.agent == "ppo" and args.num_envs is None:
        args.num_envs = 64
    if any(n < 1 for n in args.levels):
        parser.error("--levels: counts must be >= 1 (train.py reads 0 as the protocol's 200)")
    if args.final_episodes < 0:
        parser.error(f"--final-episodes must be >= 0, got {args.final_episodes}")
    if args.start_level != "seed" and not args.start_level.isdigit():
        parser.error(f"--start-level: a level >= 0 or 'seed', got {args.start_level!r}")
    out = REPO / args.out
    outputs = [(f"--{name}", REPO / getattr(args, name))
               for name in ("csv", "table", "profiles", "curves")]  # fmt: skip
    if start_study(out, args.table_only, outputs, RECORD, REPO / args.csv):
        return 2  # before hours of training, and before anything is written
    grid = [(n, s) for n in args.levels for s in args.seeds]

    def folder_of(n: int, s: int) -> Path:
        return run_dir(out, args.game, n, s, args.agent, start_level(args.start_level, s))

    if not args.table_only:
        keys = {folder_of(n, s): (n, s) for n, s in grid}

        def row_of(folder: Path) -> dict | None:
            summary = finished_summary(folder)
            n, s = keys[folder]
            return finished_row(folder, summary, n, s, args) if summary else None

        run_all([(folder, train_argv(args.game, n, s, args)) for folder, (n, s) in keys.items()],
                args.jobs, recorder(RECORD, REPO / args.csv, row_of))  # fmt: skip
    summaries = [(finished_summary(folder_of(n, s)), n, s) for n, s in grid]
    finished = [finished_row(folder_of(n, s), summary, n, s, args, compute=not args.table_only)
                for summary, n, s in summaries if summary]  # fmt: skip
    code = publish(
        RECORD, REPO / args.csv, finished, lambda rows: table(rows, args.csv), REPO / args.table
    )
    if code == 0:
        rows = RECORD.read(REPO / args.csv)
        AGGREGATES.plot(rows, REPO / args.profiles,
                        "Procgen (easy), normalized (bench/procgen_study.py)")  # fmt: skip
        draw_curves(rows, REPO / args.curves)
        print(f"wrote {args.curves}")
    return code


def curve_groups(rows: list[dict]) -> dict[str, list[dict]]:
    """The record's curves as harness/plots.py run dicts, one group per (agent, game, level
    count, level sets): each row's "STEP TRAIN TEST" points become its generalization
    reports (normalized scores and gap), its seed the run's. An evaluation lands on the first
    rollout boundary past its multiple of --eval-every, so the seeds' steps differ by up to a
    rollout (100,704 and 102,400 frames); each step is floored to the power of ten below the
    smallest gap between a run's evaluations (10,000 for 100k apart), which puts them on one
    step and keeps the evaluations of a run apart."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        label = f"{r['agent']} {r['game']}, {levels_label(r['levels'], r['level_sets'])} levels"
        groups.setdefault(label, []).append(r)
    out = {}
    for label, group in groups.items():
        curves = [parse_curve(r["curve"]) for r in group]
        gaps = [b[0] - a[0] for points in curves for a, b in zip(points, points[1:])]
        grid = 10 ** int(math.log10(min(gaps))) if gaps and min(gaps) > 0 else 1
        out[label] = [
            {"summary": {"generalization": [
                {"env_steps": step // grid * grid, "train_normalized": train,
                 "test_normalized": test, "gap": train - test}
                for step, train, test in points]}, "config": {"seed": r["seed"]}}
            for r, points in zip(group, curves)
        ]  # fmt: skip
    return out


def draw_curves(rows: list[dict], out: Path) -> None:
    """Training vs held-out normalized score and the gap over frames, per group of the
    record (mean over seeds, shaded from their min to max): harness/plots.py's panels."""
    from harness.plots import plot

    plot(curve_groups(rows), out)


if __name__ == "__main__":
    sys.exit(main())
