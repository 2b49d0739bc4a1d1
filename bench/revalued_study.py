"""Issue 7's comparison: REValueD vs DecQN on discretised Hopper-v5 and Walker2d-v5.

    python bench/revalued_study.py --seeds 0 1 --jobs 2
    python bench/revalued_study.py --seeds 0 1 --table-only

    python bench/revalued_study.py --presets hopper-cpu hopper-cpu-decqn --seeds 1

The fifth preset, hopper-cpu-noreg, is the ablation of the regularisation loss alone (the same
ensemble with reg_weight 0); DecQN (one critic, no regularisation) ablates both parts.

Runs every preset below (or those named) for every seed (resumable, bench/jobs.py) with the
bias harness every 50k steps. Each finished run becomes a row of docs/revalued.csv, the record
that outlives the run folders (rows from earlier sessions are kept, a run on disk replaces its
own row); the table (docs/revalued-table.md), drawn from every row, gives per preset the final
eval return, the mean of the last 10 evaluations and the best (mean +- std over seeds), the
first evaluation >= 1500 (issue 7's Hopper bar), the last bias measurement (normalized), the
mean of all the run's bias measurements (a single late one swings with the policy of that
moment) and REValueD's last spread of the members' targets. Below it, the aggregates
(bench/jobs.py Aggregates) of each method over its tasks (Hopper and Walker2d) and seeds: IQM,
mean and optimality gap of the final eval return and of the mean of the last 10 evals, as
D4RL-normalized scores, with stratified-bootstrap intervals; their performance profiles go to
docs/revalued-profiles.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import (
    D4RL_NORMALIZATION,
    REPO,
    Aggregates,
    RunRecord,
    chosen,
    d4rl_fraction,
    env_task,
    finished_summary,
    mean_std,
    preset_name,
    publish,
    recorder,
    run_all,
    seeds_of,
    start_study,
    study_parser,
)

PRESETS = [
    "configs/revalued/hopper-cpu.yaml",
    "configs/revalued/hopper-cpu-decqn.yaml",
    "configs/revalued/walker2d-cpu.yaml",
    "configs/revalued/walker2d-cpu-decqn.yaml",
    "configs/revalued/hopper-cpu-noreg.yaml",  # the regularisation loss's ablation
]


def run_dir(out: Path, preset: str, seed: int) -> Path:
    return out / f"{Path(preset).stem}-s{seed}"


LAST_N = 10  # evaluations averaged for a steadier final figure (Hopper's swing 3-5x)
CSV_FIELDS = ["preset", "seed", "env_steps", "final_return", "last10_return", "best_return",
              "best_at", "first_at_1500", "bias_normalized", "bias_at", "bias_normalized_all",
              "target_member_std",
              "wall_time_s"]  # fmt: skip
RECORD = RunRecord(CSV_FIELDS, ("preset", "seed"),
                   ints=("seed", "env_steps", "best_at", "first_at_1500", "bias_at"),
                   what="a REValueD-study")  # fmt: skip


def row(summary: dict, preset: str, seed: int) -> dict:
    """One finished run's line of the record, from its summary.json."""
    evals = summary["evals"]
    best = max(evals, key=lambda e: e["return_mean"])
    first = next((e["env_steps"] for e in evals if e["return_mean"] >= 1500), None)
    bias = summary["bias"][-1] if summary["bias"] else {}
    every_bias = [b["bias_normalized_mean"] for b in summary["bias"]]
    return {
        "preset": preset, "seed": seed, "env_steps": summary["env_steps"],
        "final_return": summary["eval_return_mean"],
        "last10_return": sum(e["return_mean"] for e in evals[-LAST_N:]) / len(evals[-LAST_N:]),
        "best_return": best["return_mean"],
        "best_at": best["env_steps"], "first_at_1500": first,
        "bias_normalized": bias.get("bias_normalized_mean"), "bias_at": bias.get("env_steps"),
        "bias_normalized_all": sum(every_bias) / len(every_bias) if every_bias else None,
        "target_member_std": summary["last_update_metrics"].get("target/member_std"),
        "wall_time_s": summary["wall_time_s"],
    }  # fmt: skip


def method(preset: str) -> str:
    """The preset without its env, the method compared across envs (a note kept):
    configs/revalued/walker2d-cpu-decqn.yaml -> revalued/*-cpu-decqn."""
    name = preset_name(preset)
    folder, _, stem = name.rpartition("/")
    return f"{folder}/*{stem.removeprefix(env_task(preset))}"


AGGREGATES = Aggregates(
    configuration=lambda r: method(r["preset"]),
    task=lambda r: env_task(r["preset"]),
    measures={
        "final eval return": lambda r: d4rl_fraction(r["final_return"], env_task(r["preset"])),
        f"mean of the last {LAST_N} evals": lambda r: d4rl_fraction(
            r["last10_return"], env_task(r["preset"])
        ),
    },
    normalization=D4RL_NORMALIZATION,
)


def table(rows: list[dict]) -> str:
    lines = ["| preset | seeds | env steps | final eval | mean of the last 10 evals | best eval "
             "| first eval >= 1500 at | normalized bias (last) "
             "| normalized bias (mean of the run's measurements) "
             "| target std across members (last) |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for preset in [*PRESETS, *sorted({r["preset"] for r in rows} - set(PRESETS))]:
        group = seeds_of(rows, preset=preset)
        if not group:
            continue
        firsts = ", ".join("never" if r["first_at_1500"] is None else f"{r['first_at_1500']:,}"
                           for r in group)  # fmt: skip
        steps = ", ".join(f"{r['env_steps']:,}" for r in group)
        spread = [r["target_member_std"] for r in group if r["target_member_std"] is not None]
        lines.append(
            f"| {preset} | {', '.join(str(r['seed']) for r in group)} | "
            f"{steps} | "
            f"{mean_std([r['final_return'] for r in group])} | "
            f"{mean_std([r['last10_return'] for r in group])} | "
            f"{mean_std([r['best_return'] for r in group])} | {firsts} | "
            f"{mean_std([r['bias_normalized'] for r in group], '+.3f')} | "
            f"{mean_std([r['bias_normalized_all'] for r in group], '+.3f')} | "
            f"{mean_std(spread, '.3f')} |"
        )
    return "\n".join(lines) + "\n" + AGGREGATES.markdown(rows)


def main() -> int:
    names = [Path(p).stem for p in PRESETS]
    parser = study_parser(__doc__, PRESETS, "revalued", "docs/revalued-table.md", names)
    args = parser.parse_args()
    out = REPO / args.out
    outputs = [(f"--{name}", REPO / getattr(args, name)) for name in ("csv", "table", "profiles")]
    if start_study(out, args.table_only, outputs, RECORD, REPO / args.csv):
        return 2  # before any training, and before anything is written
    grid = chosen(args, PRESETS, names)
    if not args.table_only:
        keys = {run_dir(out, p, s): (p, s) for p, s in grid}

        def row_of(folder: Path) -> dict | None:
            summary = finished_summary(folder)
            return None if summary is None else row(summary, *keys[folder])

        jobs = [(folder, ["--config", p, "--seed", str(s), "--bias-every", "50000",
                          *args.train_args.split()])
                for folder, (p, s) in keys.items()]  # fmt: skip
        run_all(jobs, args.jobs, recorder(RECORD, REPO / args.csv, row_of))
    summaries = [(finished_summary(run_dir(out, p, s)), p, s) for p, s in grid]
    finished = [row(summary, p, s) for summary, p, s in summaries if summary is not None]
    code = publish(RECORD, REPO / args.csv, finished, table, REPO / args.table)
    if code == 0:
        title = "REValueD vs DecQN, Hopper-v5 and Walker2d-v5 (bench/revalued_study.py)"
        AGGREGATES.plot(RECORD.read(REPO / args.csv), REPO / args.profiles, title)
    return code


if __name__ == "__main__":
    sys.exit(main())
