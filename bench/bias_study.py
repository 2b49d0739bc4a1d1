"""The overestimation study (issues 4 and 18): bias of each critic design on Hopper-v5.

    python bench/bias_study.py --seeds 0 1 --jobs 2          # runs, then record, table, plot
    python bench/bias_study.py --seeds 0 1 --table-only      # just redraw from the record
    python bench/bias_study.py --presets sac/hopper-cpu-bias --seeds 2

Runs every preset below for every seed (train.py, one process each, `--jobs` at a time),
skipping runs that finished and resuming runs that were interrupted. Each finished run becomes
a row of docs/bias.csv, the record that outlives the run folders (rows from earlier sessions
are kept; a run on disk replaces its own row), and docs/bias-hopper.md is drawn from every row.
docs/bias-hopper.png is drawn by harness/plots.py from the run folders that are on disk.
Below the table, its aggregates (bench/jobs.py Aggregates): IQM, mean and optimality gap of the
final eval return as a D4RL-normalized score, with stratified-bootstrap intervals over the
seeds (one task, Hopper), and their performance profiles in docs/bias-profiles.png.

The table gives, per preset (mean +- std over seeds), the last bias measurement, both
normalizations (ours: by |mean G|; REDQ's: per state by max(|G_i|, 10)) and the mean of the
run's measurements, for the measurement each agent's critic calls for (SAC, TQC: against the
soft return of the sampled policy; TD3: the deterministic policy's reward) and, for the soft
agents, the deterministic reward-only measurement on the same checkpoints beside it.
"""

from __future__ import annotations

import subprocess
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

PRESETS = [  # the soft agents first: issue 18 re-measures them
    "configs/tqc/hopper-cpu-bias-drop0.yaml",
    "configs/tqc/hopper-cpu-bias-drop2.yaml",
    "configs/tqc/hopper-cpu-bias-drop5.yaml",
    "configs/sac/hopper-cpu-bias.yaml",
    "configs/td3/hopper-bias.yaml",
    "configs/td3/hopper-bias-single-critic.yaml",
]
FIGURE = "docs/bias-hopper.png"  # harness/plots.py's figure of the runs (no flag sets it)
# One measurement's numbers in the record: (prefix, key in a harness result).
# redq: per state, a state's rollouts averaged first; redq_sample: REDQ's per-sample formula
# (harness/bias.py; measured since 2026-12-05, None in older rows)
MEASURED = [("norm", "bias_normalized_mean"), ("redq", "bias_normalized_redq_mean"),
            ("redq_sample", "bias_normalized_redq_sample_mean"),
            ("bias", "bias_mean"), ("q", "q_mean"), ("g", "mc_return_mean")]  # fmt: skip
CSV_FIELDS = [
    "preset", "seed", "env_steps", "final_return", "bias_target", "bias_at", "alpha",
    *(f"{p}_{s}" for s in ("main", "det") for p, _ in MEASURED),
    "norm_main_all", "redq_main_all", "norm_det_all", "redq_det_all", "wall_time_s",
]  # fmt: skip
RECORD = RunRecord(CSV_FIELDS, ("preset", "seed"), ints=("seed", "env_steps", "bias_at"),
                   what="a bias-study", texts=("bias_target",))  # fmt: skip


def run_dir(out: Path, preset: str, seed: int) -> Path:
    return out / f"{Path(preset).parent.name}-{Path(preset).stem}-s{seed}"


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def deterministic(measurement: dict) -> dict:
    """The deterministic reward-only part of a harness result (all of it for TD3)."""
    return measurement.get("deterministic", measurement)


def row(summary: dict, preset: str, seed: int) -> dict:
    """One finished run's line of the record. `main` is the measurement the agent's critic
    calls for (soft or reward); `det` the deterministic reward-only one (for a deterministic
    agent the same)."""
    biases = summary["bias"]
    last = biases[-1] if biases else {}
    r = {
        "preset": preset, "seed": seed, "env_steps": summary["env_steps"],
        "final_return": summary["eval_return_mean"],
        "bias_target": last.get("bias_target", "reward"), "bias_at": last.get("env_steps"),
        "alpha": last.get("alpha"), "wall_time_s": summary["wall_time_s"],
    }  # fmt: skip
    for suffix, part in (("main", last), ("det", deterministic(last))):
        for prefix, key in MEASURED:
            r[f"{prefix}_{suffix}"] = part.get(key)
    for suffix, pick in (("main", dict), ("det", deterministic)):
        r[f"norm_{suffix}_all"] = mean([pick(b)["bias_normalized_mean"] for b in biases])
        r[f"redq_{suffix}_all"] = mean([pick(b)["bias_normalized_redq_mean"] for b in biases])
    return r


MAIN_CELLS = [("norm_main", "+.3f"), ("redq_main", "+.3f"), ("redq_sample_main", "+.3f"),
              ("norm_main_all", "+.3f"),
              ("q_main", ".1f"), ("g_main", ".1f")]  # fmt: skip
DET_CELLS = [("norm_det", "+.3f"), ("redq_det", "+.3f"), ("norm_det_all", "+.3f"),
             ("g_det", ".1f")]  # fmt: skip


def cell(group: list[dict], key: str, fmt: str) -> str:
    return mean_std([r[key] for r in group], fmt)


AGGREGATES = Aggregates(
    configuration=lambda r: preset_name(r["preset"]),
    task=lambda r: env_task(r["preset"]),
    measures={
        "final eval return": lambda r: d4rl_fraction(r["final_return"], env_task(r["preset"]))
    },
    normalization=D4RL_NORMALIZATION,
)


def table(rows: list[dict]) -> str:
    lines = [
        "| preset | seeds | env steps | eval return | truth G | normalized bias "
        "| REDQ-normalized, per state | REDQ-normalized, per sample (REDQ's) "
        "| mean of the run's normalized | mean Q | G "
        "| deterministic: normalized | REDQ-normalized | mean of the run's | G (reward only) "
        "| alpha |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for preset in [*PRESETS, *sorted({r["preset"] for r in rows} - set(PRESETS))]:
        group = seeds_of(rows, preset=preset)
        if not group:
            continue
        soft = group[0]["bias_target"] == "soft"
        seeds = ", ".join(str(r["seed"]) for r in group)
        steps = ", ".join(f"{r['env_steps']:,}" for r in group)
        main = [cell(group, k, f) for k, f in MAIN_CELLS]
        det = [cell(group, k, f) for k, f in DET_CELLS] if soft else ["same"] * len(DET_CELLS)
        alpha = cell(group, "alpha", ".4f") if soft else "n/a"
        lines.append(f"| {preset} | {seeds} | {steps} | {cell(group, 'final_return', '.1f')} "
                     f"| {'soft' if soft else 'reward'} | " + " | ".join([*main, *det, alpha])
                     + " |")  # fmt: skip
    return "\n".join(lines) + "\n" + AGGREGATES.markdown(rows)


def main() -> int:
    parser = study_parser(__doc__, PRESETS, "bias", "docs/bias-hopper.md")
    args = parser.parse_args()
    out = REPO / args.out
    outputs = [(f"--{name}", REPO / getattr(args, name)) for name in ("csv", "table", "profiles")]
    if start_study(out, args.table_only, [*outputs, ("figure", REPO / FIGURE)], RECORD,
                   REPO / args.csv):  # fmt: skip
        return 2  # before any training, and before anything is written
    jobs = chosen(args, PRESETS)
    if not args.table_only:
        keys = {run_dir(out, p, s): (p, s) for p, s in jobs}

        def row_of(folder: Path) -> dict | None:
            summary = finished_summary(folder)
            return None if summary is None else row(summary, *keys[folder])

        run_all([(folder, ["--config", p, "--seed", str(s), *args.train_args.split()])
                 for folder, (p, s) in keys.items()], args.jobs,
                recorder(RECORD, REPO / args.csv, row_of))  # fmt: skip
    done = [(finished_summary(run_dir(out, p, s)), p, s) for p, s in jobs]
    finished = [row(summary, p, s) for summary, p, s in done if summary is not None]
    if publish(RECORD, REPO / args.csv, finished, table, REPO / args.table):
        return 1
    AGGREGATES.plot(RECORD.read(REPO / args.csv), REPO / args.profiles,
                    "Hopper-v5 final eval return (bench/bias_study.py)")  # fmt: skip
    folders = [str(run_dir(out, p, s)) for summary, p, s in done if summary is not None]
    if not folders:
        return 0
    return subprocess.call(
        [sys.executable, "-m", "harness.plots", *folders, "--out", FIGURE],
        cwd=REPO,
    )


if __name__ == "__main__":
    sys.exit(main())
