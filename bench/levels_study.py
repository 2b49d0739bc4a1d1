"""Issue 21's study: held-out MuJoCo levels (envs/levels.py) for TD3 and SAC on Hopper-v5.

    python bench/levels_study.py --seeds 0 1 --jobs 2      # train, report, record, table, plot
    python bench/levels_study.py --seeds 0 1 --table-only  # from docs/levels.csv alone

Each preset (mass and friction scales per level, log-uniform in 0.5-2; 1 or 20 training
levels; 200k env steps) runs for every seed (resumable, bench/jobs.py); the offline one
(TD3+BC, 200k updates) on hopper-medium-v5 made across the same 20 training levels
(DATASET, made here when missing). A finished run then
gets its final report, `evaluate.py RUN --episodes 20 --bias --bias-states 50` (written once,
beside the run as levels-report.json): 20 episodes on training levels, 20 interpolation levels
(held out, same ranges) and 20 extrapolation levels (every scale outside its range by up to
1.5x), and the critic's bias on 50 states the deterministic policy reaches on each side,
restored in their own level (SAC: soft truth, 4 rollouts per state; TD3: reward truth). The
same 20 held-out levels serve every run, whatever its training levels.

Every finished run becomes a row of docs/levels.csv (earlier rows kept); the table
docs/levels-table.md gives mean +- std over seeds per preset, and docs/levels.png draws the
returns and biases per side. `gen_share` is the held-out evaluations' share of the run's wall
time at the preset's gen_every (the issue's bar: at most 10%). Below the table, the aggregates
(bench/jobs.py Aggregates) per preset over its seeds (one task, Hopper): IQM, mean and
optimality gap of each side's return as a D4RL-normalized score, with stratified-bootstrap
intervals; their performance profiles go to docs/levels-profiles.png.
"""

from __future__ import annotations

import json
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

PRESETS = [
    "configs/td3/hopper-levels-1.yaml",
    "configs/td3/hopper-levels-20.yaml",
    "configs/sac/hopper-cpu-levels-1.yaml",
    "configs/sac/hopper-cpu-levels-20.yaml",
    "configs/td3_bc/hopper-medium-levels-20.yaml",  # offline, on DATASET below
]
# The offline preset's data (its `dataset`): hopper-medium-v5 played by the shipped medium
# policy across the same 20 training levels (envs/datasets/names.py: the levels tag)
DATASET = "hopper-medium-v5-levels20-mass-friction"
SIDES = ("train", "test", "extrapolation")
SIDE_NAMES = {"train": "training levels", "test": "interpolation (held out)",
              "extrapolation": "extrapolation (held out)"}  # fmt: skip
REPORT = "levels-report.json"
REPORT_ARGS = ["--episodes", "20", "--bias", "--bias-states", "50"]

CSV_FIELDS = ["preset", "seed", "agent", "train_levels", "env_steps",
              *[f"{side}_return" for side in SIDES], "gap", "gap_extrapolation",
              *[f"{side}_bias" for side in SIDES], "bias_target", "gen_share",
              "wall_time_s"]  # fmt: skip
RECORD = RunRecord(CSV_FIELDS, ("preset", "seed"), ints=("seed", "train_levels", "env_steps"),
                   what="a levels-study", texts=("agent", "bias_target"))  # fmt: skip


def make_dataset() -> None:
    """DATASET, made once (deterministically, about 40 minutes here) before the offline runs
    start, so that two of them do not both make it on first use."""
    from envs.datasets.names import path_of

    if not path_of(DATASET).is_file():
        subprocess.run([sys.executable, "-m", "datagen", "make", DATASET], cwd=REPO, check=True)


def run_dir(out: Path, preset: str, seed: int) -> Path:
    return out / f"{Path(preset).parent.name}-{Path(preset).stem}-s{seed}"


def final_report(folder: Path) -> dict | None:
    """The run's levels-report.json, made by evaluate.py when missing; None if that failed."""
    path = folder / REPORT
    if not path.is_file():
        code = subprocess.call([sys.executable, "evaluate.py", str(folder), *REPORT_ARGS,
                                "--json", str(path)], cwd=REPO,
                               stdout=subprocess.DEVNULL)  # fmt: skip
        if code != 0:
            print(f"{folder.name}: evaluate.py exit {code}", file=sys.stderr)
            return None
    return json.loads(path.read_text())


def row(summary: dict, report: dict, preset: str, seed: int) -> dict:
    """One finished run's line of the record."""
    bias = report["bias"]
    return {
        "preset": preset, "seed": seed, "agent": summary["agent"],
        "train_levels": report["n_train_levels"],
        **{f"{side}_return": report[f"{side}_return_mean"] for side in SIDES},
        "gap": report["gap"], "gap_extrapolation": report["gap_extrapolation"],
        **{f"{side}_bias": bias[side]["bias_normalized_mean"] for side in SIDES},
        "bias_target": bias["train"]["bias_target"],
        "gen_share": summary.get("gen_time_s", 0.0) / summary["wall_time_s"],
        # offline: the clock is the gradient update (env_steps stays 0)
        "env_steps": summary["env_steps"] or summary["gradient_updates"],
        "wall_time_s": summary["wall_time_s"],
    }  # fmt: skip


def side_score(side: str):
    """A row's return on `side` as a D4RL-normalized score (the preset's env)."""
    return lambda r: d4rl_fraction(r[f"{side}_return"], env_task(r["preset"]))


AGGREGATES = Aggregates(
    configuration=lambda r: preset_name(r["preset"]),
    task=lambda r: env_task(r["preset"]),
    measures={f"return on {SIDE_NAMES[side]}": side_score(side) for side in SIDES},
    normalization=D4RL_NORMALIZATION,
)


def table(rows: list[dict]) -> str:
    lines = ["| preset | seeds | env steps (offline: updates) | training-level return "
             "| interpolation return | extrapolation return | gap (interp.) | gap (extrap.) "
             "| normalized bias: training levels | interpolation | extrapolation | truth "
             "| held-out eval share of wall time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for preset in [*PRESETS, *sorted({r["preset"] for r in rows} - set(PRESETS))]:
        group = seeds_of(rows, preset=preset)
        if not group:
            continue
        steps = ", ".join(f"{r['env_steps']:,}" for r in group)
        lines.append(
            f"| {preset} | {', '.join(str(r['seed']) for r in group)} | {steps} | "
            + " | ".join(mean_std([r[f"{side}_return"] for r in group]) for side in SIDES)
            + f" | {mean_std([r['gap'] for r in group])} | "
            f"{mean_std([r['gap_extrapolation'] for r in group])} | "
            + " | ".join(mean_std([r[f"{side}_bias"] for r in group], "+.3f") for side in SIDES)
            + f" | {group[0]['bias_target']} | "
            f"{mean_std([100 * r['gen_share'] for r in group], '.1f')}% |"
        )
    return "\n".join(lines) + "\n" + AGGREGATES.markdown(rows)


def plot(rows: list[dict], path: Path) -> None:
    """Returns and normalized biases per side, one group of bars per preset (mean, and the
    seeds' min-max as the error bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    presets = [p for p in PRESETS if seeds_of(rows, preset=p)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.26
    panels = ((axes[0], "return", "return (20 episodes per side)"),
              (axes[1], "bias", "normalized bias (50 policy states per side)"))  # fmt: skip
    for ax, kind, label in panels:
        for k, side in enumerate(SIDES):
            values = [[r[f"{side}_{kind}"] for r in seeds_of(rows, preset=p)] for p in presets]
            means = np.array([np.mean(v) for v in values])
            low = means - np.array([min(v) for v in values])
            high = np.array([max(v) for v in values]) - means
            x = np.arange(len(presets)) + (k - 1) * width
            ax.bar(x, means, width, yerr=[low, high], capsize=3, label=SIDE_NAMES[side])
        ax.set_xticks(np.arange(len(presets)))
        # every preset of the study is a Hopper one: the agent and the rest of the name fit
        ax.set_xticklabels([f"{Path(p).parent.name}\n{Path(p).stem.removeprefix('hopper-')}"
                            for p in presets], fontsize=8)  # fmt: skip
        ax.set_ylabel(label)
        ax.axhline(0, color="black", linewidth=0.6)
    axes[0].legend(fontsize=8)
    fig.suptitle("Hopper-v5, mass and friction levels: training vs held-out levels "
                 "(bench/levels_study.py)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> int:
    parser = study_parser(__doc__, PRESETS, "levels", "docs/levels-table.md")
    parser.add_argument("--figure", default="docs/levels.png")
    args = parser.parse_args()
    out = REPO / args.out
    outputs = [(f"--{name}", REPO / getattr(args, name))
               for name in ("csv", "table", "profiles", "figure")]  # fmt: skip
    if start_study(out, args.table_only, outputs, RECORD, REPO / args.csv):
        return 2  # before the dataset or any training, and before anything is written
    grid = chosen(args, PRESETS)
    if not args.table_only:
        if any("td3_bc" in p for p, _ in grid):
            make_dataset()
        jobs = {run_dir(out, p, s): (p, s) for p, s in grid}

        def row_of(folder: Path) -> dict | None:
            summary = finished_summary(folder)
            report = final_report(folder) if summary else None
            return None if report is None else row(summary, report, *jobs[folder])

        run_all([(folder, ["--config", p, "--seed", str(s), *args.train_args.split()])
                 for folder, (p, s) in jobs.items()], args.jobs,
                recorder(RECORD, REPO / args.csv, row_of))  # fmt: skip
    code = publish(RECORD, REPO / args.csv, [], table, REPO / args.table)
    if code == 0:
        rows = RECORD.read(REPO / args.csv)
        plot(rows, REPO / args.figure)
        AGGREGATES.plot(rows, REPO / args.profiles,
                        "Hopper-v5 levels: return per side (bench/levels_study.py)")  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
