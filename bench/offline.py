"""The offline benchmark: agents x datasets x samplers x seeds, then a table of scores.

    python bench/offline.py --agents td3_bc prdc spot --datasets hopper-medium-v5 --seeds 0 1
    python bench/offline.py --agents td3_bc --datasets hopper-random-expert-5-v5 \\
        --samplers uniform aw --seeds 0 1 --jobs 2
    python bench/offline.py ... --table-only          # redraw docs/offline-table.md from the runs

Each run uses the preset configs/<agent>/<dataset without -v5>-<sampler>.yaml or, failing
that, <dataset without -v5>.yaml when there is one (the paper's per-dataset settings), else the
agent's defaults (train.py's 20k-step budget: pass --train-args "--total-steps N"), plus
--sampler and any --train-args; the command of each run is printed as it starts.
Runs go to <out>/<agent>-<dataset>[-<sampler>]-s<seed>; finished runs are
skipped and interrupted ones resumed (bench/jobs.py). The table (markdown) gives, per
agent x dataset x sampler, the normalized score mean +- std over seeds at the last
evaluation and at the best one (the dataset's own references; D4RL-constant scores in the
CSV), beside the dataset's own mean normalized score; the CSV has one row per run. Below it,
the aggregates (bench/jobs.py Aggregates) per agent and sampler over its datasets and seeds:
IQM, mean and optimality gap of the last normalized score / 100, with stratified-bootstrap
intervals; their performance profiles go to docs/offline-profiles.png.

The CSV is the record that outlives the run folders: rows already in it are kept (a finished
run on disk replaces its own row), and the table is drawn from every row, so runs made on
other machines or in earlier sessions stay in the table. --table-only with no training just
redraws it, e.g. from the CSV alone.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import (  # noqa: E402
    REPO,
    Aggregates,
    RunRecord,
    finished_summary,
    mean_std,
    recorder,
    run_all,
    start_study,
)

sys.path.insert(0, str(REPO))
from core.errors import UserError  # noqa: E402
from envs.datasets.loading import load_dataset  # noqa: E402
from envs.datasets.scores import normalized_score  # noqa: E402

CSV_FIELDS = ["agent", "dataset", "sampler", "seed", "gradient_updates", "last_score",
              "best_score", "best_at", "last_d4rl_score", "best_d4rl_score", "last_return",
              "best_return", "wall_time_s", "dataset_score"]  # fmt: skip
KEY = ("agent", "dataset", "sampler", "seed")
RECORD = RunRecord(CSV_FIELDS, KEY, ints=("seed", "gradient_updates", "best_at"),
                   what="an offline-benchmark")  # fmt: skip


AGGREGATES = Aggregates(
    configuration=lambda r: f"{r['agent']} ({r['sampler']})",
    # the update budget is part of the task: runs cut short are not pooled with full ones
    task=lambda r: f"{r['dataset']} ({r['gradient_updates'] // 1000}k updates)",
    measures={"last score": lambda r: None if r["last_score"] is None else r["last_score"] / 100},
    normalization="Normalization: the last evaluation's normalized score / 100, with the "
    "dataset's own references (its metadata's ref_min_score / ref_max_score, measured returns "
    "of a uniform-random policy and of the expert on the same env version): 0 = random, "
    "1 = expert.",
)


def run_name(agent: str, dataset: str, sampler: str, seed: int) -> str:
    suffix = "" if sampler == "uniform" else f"-{sampler}"
    return f"{agent}-{dataset}{suffix}-s{seed}"


def preset_of(agent: str, dataset: str, sampler: str, root: Path = REPO) -> Path | None:
    """configs/<agent>/<dataset without -v5>-<sampler>.yaml, else <dataset without -v5>.yaml."""
    stem = dataset.removesuffix("-v5")
    for name in (f"{stem}-{sampler}.yaml", f"{stem}.yaml"):
        if (root / "configs" / agent / name).is_file():
            return root / "configs" / agent / name
    return None


def train_argv(agent: str, dataset: str, sampler: str, seed: int, extra: list[str]) -> list[str]:
    preset = preset_of(agent, dataset, sampler)
    base = ["--config", str(preset)] if preset else ["--agent", agent]
    return [*base, "--dataset", dataset, "--sampler", sampler, "--seed", str(seed), *extra]


@functools.cache
def dataset_score(dataset: str) -> float | None:
    """The dataset's own mean normalized score (its episodes' returns, its references)."""
    data, _ = load_dataset(dataset)  # reads only: never makes a dataset
    lo, hi = data.metadata.get("ref_min_score"), data.metadata.get("ref_max_score")
    if lo is None or hi is None:
        return None
    return float(normalized_score(data.episode_returns(), lo, hi).mean())


def row(summary: dict, agent: str, dataset: str, sampler: str, seed: int) -> dict:
    best = max(summary["evals"], key=lambda e: e["return_mean"])
    return {
        "agent": agent, "dataset": dataset, "sampler": sampler, "seed": seed,
        "gradient_updates": summary["gradient_updates"], "last_score": summary["last_score"],
        "best_score": summary["best_score"], "best_at": best["gradient_updates"],
        "last_d4rl_score": summary["last_d4rl_score"],
        "best_d4rl_score": summary["best_d4rl_score"],
        "last_return": summary["eval_return_mean"], "best_return": summary["best_eval_return_mean"],
        "wall_time_s": summary["wall_time_s"], "dataset_score": None,  # filled in main
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = ["| agent | dataset | sampler | seeds | updates | last score | best score "
             "| dataset's own score |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["agent"], r["dataset"], r["sampler"]), []).append(r)
    for (agent, dataset, sampler), group in groups.items():
        updates = sorted({r["gradient_updates"] for r in group})
        own = group[-1]["dataset_score"]
        own_score = "n/a" if own is None else f"{own:.1f}"
        lines.append(
            f"| {agent} | {dataset} | {sampler} | {len(group)} | "
            f"{', '.join(f'{u:,}' for u in updates)} | "
            f"{mean_std([r['last_score'] for r in group])} | "
            f"{mean_std([r['best_score'] for r in group])} | {own_score} |"
        )
    return "\n".join(lines) + "\n" + AGGREGATES.markdown(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=["td3_bc", "prdc", "spot"])
    parser.add_argument("--datasets", nargs="+", default=["hopper-medium-v5"])
    parser.add_argument("--samplers", nargs="+", default=["uniform"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    parser.add_argument("--out", default="bench/out/offline", help="folder of the run folders")
    parser.add_argument("--table", default="docs/offline-table.md", help="markdown table out")
    parser.add_argument("--csv", default="docs/offline.csv", help="per-run CSV out")
    parser.add_argument("--profiles", default="docs/offline-profiles.png", help="figure out")
    parser.add_argument("--train-args", default="", help="extra train.py arguments, one string")
    parser.add_argument("--table-only", action="store_true", help="no training, just the table")
    args = parser.parse_args()
    out = REPO / args.out
    outputs = [(f"--{name}", REPO / getattr(args, name)) for name in ("csv", "table", "profiles")]
    if start_study(out, args.table_only, outputs, RECORD, REPO / args.csv):
        return 2  # before any training, and before anything is written
    grid = [(a, d, s, seed) for d in args.datasets for a in args.agents for s in args.samplers
            for seed in args.seeds]  # fmt: skip
    if not args.table_only:
        extra = args.train_args.split()
        jobs = [(out / run_name(*job), train_argv(*job, extra)) for job in grid]
        for folder, argv in jobs:
            print(f"{folder.name}: train.py {' '.join(argv)}", flush=True)
        keys = {out / run_name(*job): job for job in grid}

        def row_of(folder: Path) -> dict | None:
            summary = finished_summary(folder)
            return None if summary is None else row(summary, *keys[folder])

        run_all(jobs, args.jobs, recorder(RECORD, REPO / args.csv, row_of))
    summaries = [(finished_summary(out / run_name(*job)), job) for job in grid]
    finished = [row(summary, *job) for summary, job in summaries if summary is not None]
    csv_path = REPO / args.csv
    rows = RECORD.merge(RECORD.read(csv_path), finished)
    for r in rows:  # the dataset's own score where the dataset is here (older CSVs lack it)
        if r["dataset_score"] is None:
            try:
                r["dataset_score"] = dataset_score(r["dataset"])
            except UserError:
                pass
    if not rows:
        print(
            "error: no finished runs to tabulate (none on disk, none in the CSV)", file=sys.stderr
        )
        return 1
    (REPO / args.table).write_text(table(rows))
    RECORD.write(csv_path, rows)
    print((REPO / args.table).read_text())
    AGGREGATES.plot(rows, REPO / args.profiles, "Offline: last normalized score (bench/offline.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
