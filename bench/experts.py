"""Issue 18, item 5: D4RL-grade experts for HalfCheetah and Walker2d, and the medium policies
from the same runs.

    python bench/experts.py train --tasks halfcheetah walker2d --seed 1 --jobs 2   # resumable
    python bench/experts.py status                       # each run's progress -> docs/experts.csv
    python bench/experts.py ship halfcheetah --seed 1    # once its best evaluation passes the bar

`train` runs TQC at the -cpu size (configs/tqc/<task>-cpu.yaml) for `--steps` env steps (1M,
D4RL's experts' budget), evaluating 10 episodes every 10k steps and checkpointing every 20k
steps and 120 s; an interrupted run resumes (bench/jobs.py), so the many sessions a 1M-step
run takes on this machine each continue it. `--train-args "--device cuda"` runs it on a GPU.
`status` writes every run's progress, finished or not, to docs/experts.csv (run folders may
not outlive the machine) and prints the table. `ship TASK`, when the run's best evaluation
(deterministic, 10 episodes) has reached the bar (HalfCheetah 9,000, Walker2d 4,000) and its
best checkpoint passes the bar again on 30 fresh deterministic episodes (`--confirm-episodes`;
the best of many 10-episode evaluations is biased upwards):
1. exports that run's best checkpoint as <task>-expert (its stochastic return over 100
   episodes becomes the datasets' expert reference, datagen/policies.py);
2. re-runs the same preset and seed with `--stop-at-return` one third of the expert's
   return over the mean of its last 3 evaluations (`--stop-window 3`), as D4RL's medium
   policies were trained to about a third of the expert, and
   exports that policy as <task>-medium (the re-run retraces the expert run up to there,
   except where the expert run was interrupted and resumed, which restarts its episodes);
3. regenerates the task's datasets (medium, expert, medium-replay, medium-expert; the
   medium-replay one from the medium re-run's own buffer, `--replay-from`) and prints
   the commands that re-make docs/datasets.md and the offline table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import REPO, RunRecord, publish, run_all, start_study  # noqa: E402

BARS = {"halfcheetah": 9000.0, "walker2d": 4000.0}
KINDS = ("medium", "expert", "medium-replay", "medium-expert")
FIELDS = ["task", "seed", "env_steps", "finished", "best_return", "best_at", "last_return",
          "wall_time_s", "bar", "reached_at"]  # fmt: skip
RECORD = RunRecord(FIELDS, ("task", "seed"),
                   ints=("seed", "env_steps", "finished", "best_at", "reached_at"),
                   what="an experts")  # fmt: skip


def preset(task: str) -> str:
    return f"configs/tqc/{task}-cpu.yaml"


def run_dir(out: Path, task: str, seed: int, kind: str = "expert") -> Path:
    return out / f"{kind}-{task}-tqc-s{seed}"


def train_argv(task: str, seed: int, steps: int, extra: list[str]) -> list[str]:
    return ["--config", preset(task), "--seed", str(seed), "--total-steps", str(steps),
            "--eval-every", "10000", "--checkpoint-every", "20000", *extra]  # fmt: skip


def row(summary: dict, task: str, seed: int, finished: bool) -> dict:
    """A run's progress: best and last deterministic evaluations, and when it passed the bar."""
    evals = summary["evals"]
    best = max(evals, key=lambda e: e["return_mean"]) if evals else {}
    reached = next((e["env_steps"] for e in evals if e["return_mean"] >= BARS[task]), None)
    return {
        "task": task, "seed": seed, "env_steps": summary["env_steps"], "finished": int(finished),
        "best_return": best.get("return_mean"), "best_at": best.get("env_steps"),
        "last_return": summary["eval_return_mean"], "wall_time_s": summary["wall_time_s"],
        "bar": BARS[task], "reached_at": reached,
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = ["| task | seed | env steps | finished | best eval (at) | last eval | bar | "
             "first eval >= bar |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["task"], r["seed"])):
        if r["best_return"] is None:  # no evaluation yet
            best, last = "n/a", "n/a"
        else:
            best, last = f"{r['best_return']:.1f} ({r['best_at']:,})", f"{r['last_return']:.1f}"
        reached = "not yet" if r["reached_at"] is None else f"{r['reached_at']:,}"
        done = "yes" if r["finished"] else "no"
        lines.append(f"| {r['task']} | {r['seed']} | {r['env_steps']:,} | {done} | {best} | "
                     f"{last} | {r['bar']:,.0f} | {reached} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def status(out: Path, csv_path: Path, table_path: Path) -> int:
    rows = []
    for folder in sorted(out.glob("expert-*-tqc-s*")):
        summary_path = folder / "summary.json"
        if not summary_path.is_file():
            continue
        _, task, _, seed = folder.name.split("-")
        summary = json.loads(summary_path.read_text())
        finished = (folder / "checkpoints" / "final.pt").is_file()
        rows.append(row(summary, task, int(seed.removeprefix("s")), finished))
    return publish(RECORD, csv_path, rows, table, table_path)


def datagen(*args: str) -> None:
    print("$ python -m datagen " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "datagen", *args], cwd=REPO, check=True)


# The best of many 10-episode evaluations is biased upwards (the maximum of noisy means), so
# the best checkpoint must also pass the bar on episodes it was not chosen on.
CONFIRM_SEED = 500_000  # episode k of the confirmation starts from reset(CONFIRM_SEED + k)


def confirm(checkpoint: Path, episodes: int) -> tuple[float, float]:
    """(mean, std) of `checkpoint`'s deterministic return over `episodes` fresh episodes."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "confirm.json"
        subprocess.run([sys.executable, "evaluate.py", str(checkpoint), "--episodes",
                        str(episodes), "--seed", str(CONFIRM_SEED), "--json", str(result)],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        report = json.loads(result.read_text())
    return report["return_mean"], report["return_std"]


# The medium re-run stops when its last 3 evaluations (5 episodes each, every 2k steps) average
# a third of the expert: Walker2d's first re-run, stopped by one evaluation of 1,509.7 +- 822.9,
# gave a policy at 24% of the expert.
STOP_WINDOW = 3


def ship(out: Path, task: str, seed: int, extra: list[str], episodes: int = 30) -> int:
    folder = run_dir(out, task, seed)
    summary = json.loads((folder / "summary.json").read_text())
    best = summary["best_eval_return_mean"] or float("-inf")
    if best < BARS[task]:
        print(f"error: {folder.name}'s best evaluation is {best:.1f}, below the bar "
              f"{BARS[task]:,.0f}: not shipped", file=sys.stderr)  # fmt: skip
        return 1
    mean, std = confirm(folder / "checkpoints" / "best.pt", episodes)
    print(f"{folder.name}: best evaluation {best:.1f}; on {episodes} fresh episodes "
          f"{mean:.1f} +- {std:.1f}", flush=True)  # fmt: skip
    if mean < BARS[task]:
        print(f"error: {folder.name}'s best checkpoint scores {mean:.1f} on {episodes} fresh "
              f"episodes, below the bar {BARS[task]:,.0f} (its best evaluation, {best:.1f}, "
              "was the luckiest of many): not shipped", file=sys.stderr)  # fmt: skip
        return 1
    datagen("export-policy", str(folder / "checkpoints" / "best.pt"), f"{task}-expert")
    import torch

    from datagen.policies import policy_path

    expert = torch.load(policy_path(task, "expert"), weights_only=True)["metadata"]["return_mean"]
    medium = run_dir(out, task, seed, "medium")
    argv = ["--config", preset(task), "--seed", str(seed), "--total-steps",
            str(summary["env_steps"]), "--stop-at-return", f"{expert / 3:.1f}",
            "--stop-window", str(STOP_WINDOW), "--eval-every", "2000", "--eval-episodes", "5",
            *extra]  # fmt: skip
    run_all([(medium, argv)], 1)
    datagen("export-policy", str(medium / "checkpoints" / "final.pt"), f"{task}-medium")
    for kind in KINDS:  # medium-replay: the medium run's own buffer, not a second re-run
        replay = ["--replay-from", str(medium)] if kind == "medium-replay" else []
        datagen("make", f"{task}-{kind}-v5", *replay)
    print("then: python bench/datasets_table.py; python bench/offline.py --agents td3_bc prdc "
          f"spot --datasets {task}-medium-v5 --seeds 0")  # fmt: skip
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["train", "status", "ship"])
    parser.add_argument("tasks", nargs="*", default=[], help="ship: the task to ship")
    parser.add_argument("--tasks", dest="train_tasks", nargs="+", choices=sorted(BARS),
                        default=sorted(BARS), help="train: tasks (default: both)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="bench/out/experts", help="folder of the run folders")
    parser.add_argument("--csv", default="docs/experts.csv")
    parser.add_argument("--table", default="docs/experts-table.md")
    parser.add_argument("--train-args", default="", help="extra train.py arguments, one string")
    parser.add_argument("--confirm-episodes", type=int, default=30,
                        help="ship: fresh deterministic episodes the best checkpoint must pass "
                        "the bar on")  # fmt: skip
    args = parser.parse_args()
    out, extra = REPO / args.out, args.train_args.split()
    # train and status write the record and table (ship writes neither): checked before any
    # training; status trains nothing, so it leaves --out alone
    outputs = [("--csv", REPO / args.csv), ("--table", REPO / args.table)]
    if args.command in ("train", "status") and start_study(
        out, args.command == "status", outputs, RECORD, REPO / args.csv
    ):
        return 2
    if args.command == "train":
        run_all([(run_dir(out, t, args.seed), train_argv(t, args.seed, args.steps, extra))
                 for t in args.train_tasks], args.jobs)  # fmt: skip
        return status(out, REPO / args.csv, REPO / args.table)
    if args.command == "status":
        return status(out, REPO / args.csv, REPO / args.table)
    if len(args.tasks) != 1 or args.tasks[0] not in BARS:
        parser.error(f"ship takes one task of {sorted(BARS)}")
    return ship(out, args.tasks[0], args.seed, extra, args.confirm_episodes)


if __name__ == "__main__":
    sys.exit(main())
