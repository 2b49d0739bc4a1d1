"""Run train.py jobs for the bench scripts: each in its own process and log, finished runs
skipped, interrupted ones resumed, N at a time; keep their record (RunRecord, publish); and
aggregate the record's normalized scores with confidence intervals (Aggregates, over
harness/aggregates.py)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from core.errors import UserError, quote  # noqa: E402
from core.runs import atomic_write_text, check_output  # noqa: E402


def finished(folder: Path) -> bool:
    """Whether the run in `folder` finished: train.py writes checkpoints/final.pt only then."""
    return (folder / "checkpoints" / "final.pt").is_file()


def budget_of(argv: list[str]) -> int | None:
    """The --total-steps a train.py argv asks for ("--total-steps N" or "=N"); None if absent."""
    for i, arg in enumerate(argv):
        if arg == "--total-steps" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--total-steps="):
            return int(arg.split("=", 1)[1])
    return None


def finished_budget(folder: Path) -> int:
    """The total_steps a finished run trained to (its config.yaml, which a resume rewrites)."""
    import yaml

    return int(yaml.safe_load((folder / "config.yaml").read_text())["total_steps"])


def finished_summary(folder: Path) -> dict | None:
    """The run's summary.json when it finished, else None."""
    if not finished(folder):
        return None
    return json.loads((folder / "summary.json").read_text())


# The flags train.py --resume accepts: a study's budget, device, threads and precision reach a
# run it resumes, so a study re-run with a smaller or larger --frames / --steps trains every run
# to it, and one re-run on another machine (--precision auto) trains on in what that one runs
# natively.
RESUME_FLAGS = ("--total-steps", "--device", "--threads", "--precision")


def scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    """A run's TensorBoard scalar `tag` as (step, value) pairs; [] if it never logged it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in events.Scalars(tag)]


def resume_flags(argv: list[str]) -> list[str]:
    """The RESUME_FLAGS of `argv` with their values ("--flag V" or "--flag=V"), in order."""
    kept = []
    for i, arg in enumerate(argv):
        name = arg.split("=", 1)[0]
        if name in RESUME_FLAGS:
            kept += [arg] if "=" in arg else argv[i : i + 2]
    return kept


def train_or_resume(folder: Path, argv: list[str], script: list[str] | None = None) -> int:
    """train.py `argv` into `folder` (its log beside it as <folder>.log); 0 at once when the
    run already finished its budget (and `argv` asks for no more), --resume when it was
    interrupted or finished a smaller budget. Returns train.py's exit code.
    `script`: what runs in train.py's place with the same arguments (default train.py)."""
    if finished(folder):
        budget = budget_of(argv)
        if budget is None or budget <= finished_budget(folder):
            return 0
        # finished, but the study now asks for more: train.py --resume continues it
    # A folder with a config was started: train.py --resume continues it from its latest
    # checkpoint, or trains it again from step 0 when it was killed before the first one.
    if (folder / "config.yaml").is_file():
        argv = ["--resume", str(folder), *resume_flags(argv)]
    else:
        argv = [*argv, "--run-dir", str(folder)]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{folder}.log", "a") as log:
        return subprocess.call(
            [sys.executable, *(script or ["train.py"]), *argv, "--progress", "off"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def say_ended(folder: Path, code: int) -> None:
    print(f"{folder.name}: {'done' if code == 0 else f'exit {code}'}", flush=True)


def run_all(jobs: Iterable[tuple[Path, list[str]]], processes: int,
            report: Callable[[Path, int], None] = say_ended) -> None:  # fmt: skip
    """train_or_resume every (folder, argv), `processes` at a time; `report(folder, exit
    code)` as each run ends, in the order they end, on this thread."""
    with ThreadPoolExecutor(processes) as pool:
        futures = {pool.submit(train_or_resume, folder, argv): folder for folder, argv in jobs}
        for future in as_completed(futures):
            report(futures[future], future.result())


def recorder(record: RunRecord, csv_path: Path,
             row_of: Callable[[Path], dict | None]) -> Callable[[Path, int], None]:  # fmt: skip
    """A run_all report that merges each run's row into the record at `csv_path` as soon as
    the run ends well (`row_of(folder)`: its row, or None to leave it out), so a study cut
    short (a session that ends, a machine that goes) keeps every run it finished; the study
    draws its table from the record at its end, or with --table-only."""

    def report(folder: Path, code: int) -> None:
        say_ended(folder, code)
        row = row_of(folder) if code == 0 else None
        if row is not None:
            record.write(csv_path, record.merge(record.read(csv_path), [row]))

    return report


def study_parser(doc: str, presets: list[str], name: str, table: str,
                 names: list[str] | None = None) -> argparse.ArgumentParser:  # fmt: skip
    """The command line every presets x seeds study shares: --presets (default all; named by
    `names`, else folder/stem), --seeds, --jobs, --out (bench/out/NAME), --csv (docs/NAME.csv),
    --table, --profiles (docs/NAME-profiles.png), --table-only and --train-args. A study adds
    its own arguments before parsing; `chosen(args, presets, names)` gives its grid."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    names = names or preset_names(presets)
    parser.add_argument("--presets", nargs="+", default=names, choices=names, help="default: all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    parser.add_argument("--out", default=f"bench/out/{name}", help="folder of the run folders")
    parser.add_argument("--csv", default=f"docs/{name}.csv", help="per-run record")
    parser.add_argument("--table", default=table)
    parser.add_argument("--profiles", default=f"docs/{name}-profiles.png",
                        help="performance profiles figure")  # fmt: skip
    parser.add_argument("--table-only", action="store_true", help="no training")
    parser.add_argument("--train-args", default="", help="extra train.py arguments, one string")
    return parser


def preset_names(presets: list[str]) -> list[str]:
    """'configs/td3/hopper.yaml' -> 'td3/hopper'."""
    return [f"{Path(p).parent.name}/{Path(p).stem}" for p in presets]


def chosen(args: argparse.Namespace, presets: list[str],
           names: list[str] | None = None) -> list[tuple[str, int]]:  # fmt: skip
    """(preset, seed) for every preset named in --presets and every seed."""
    names = names or preset_names(presets)
    return [(p, s) for p, n in zip(presets, names) if n in args.presets for s in args.seeds]


def seeds_of(rows: list[dict], **match) -> list[dict]:
    """The rows whose columns equal every `match` value (one configuration), by seed."""
    return sorted((r for r in rows if all(r[k] == v for k, v in match.items())),
                  key=lambda r: r["seed"])  # fmt: skip


def mean_std(values: list, fmt: str = ".1f") -> str:
    """'mean +- std' (population std over seeds) for a table cell; 'n/a' if any is missing."""
    if not values or any(v is None for v in values):
        return "n/a"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{fmt}} +- {std:{fmt.lstrip('+')}}"


class RunRecord:
    """A CSV of finished runs, one row per key: the record that outlives the run folders (they
    live outside the checkout and die with the machine). Rows read back with their numbers
    parsed ('' -> None); merging keeps old rows, each replaced by a new row with its key."""

    def __init__(self, fields: list[str], key: tuple[str, ...], ints: tuple[str, ...],
                 what: str, texts: tuple[str, ...] = (),
                 defaults: dict | None = None) -> None:  # fmt: skip
        self.fields, self.key, self.ints, self.what = fields, key, ints, what
        self.texts = texts  # text columns besides the key
        # the values of columns added later, for rows written before them (read as '')
        self.defaults = defaults or {}

    def read(self, path: Path) -> list[dict]:
        if not path.is_file():
            return []
        rows = []
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            for raw in reader:
                if set(self.key) - raw.keys() - self.defaults.keys():
                    raise SystemExit(
                        f"error: {path} is not {self.what} CSV (no {self.key} columns)"
                    )
                where = f"{path}, row {len(rows) + 1} (line {reader.line_num})"
                # DictReader fills a short row's missing cells with None and keeps a long
                # row's extra cells under the key None
                missing = sum(v is None for k, v in raw.items() if k is not None)
                extra = len(raw.get(None) or [])
                if missing or extra:
                    header = len(reader.fieldnames or [])
                    raise SystemExit(f"error: {where} has {header - missing + extra} cells where "
                                     f"the header has {header}: cut short or damaged")  # fmt: skip
                r: dict = {k: raw.get(k, "") for k in self.fields}
                for k, value in self.defaults.items():
                    if r[k] in ("", None):
                        r[k] = str(value)
                for k in self.fields:
                    if (k in self.key or k in self.texts) and k not in self.ints:
                        continue  # a text column
                    if r[k] in ("", None):
                        r[k] = None
                        continue
                    try:
                        r[k] = int(float(r[k])) if k in self.ints else float(r[k])
                    except (ValueError, OverflowError):  # int(float("inf")) overflows
                        raise SystemExit(f"error: {where}: {k} is not a number: "
                                         f"{quote(r[k])}") from None  # fmt: skip
                rows.append(r)
        return rows

    def write(self, path: Path, rows: list[dict]) -> None:
        """The rows as the CSV, replacing the file in one step (core.runs.atomic_write_text)."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, text.getvalue())

    def merge(self, old: list[dict], new: list[dict]) -> list[dict]:
        """old's rows, each replaced by new's row with the same key; new's other rows appended."""
        fresh = {tuple(r[k] for k in self.key): r for r in new}
        kept = [fresh.pop(tuple(r[k] for k in self.key), r) for r in old]
        return kept + list(fresh.values())


def check_outputs(*outputs: tuple[str, Path], folders: bool = False) -> bool:
    """Whether some (flag, file) cannot be written (core.runs.check_output; `folders`: they
    are folders to make), said in one line on stderr: a study checks its outputs before it
    trains or writes anything."""
    try:
        for flag, path in outputs:
            check_output(path, flag, folder=folders)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return True
    return False


def start_study(out: Path, table_only: bool, outputs: list[tuple[str, Path]],
                record: RunRecord | None = None, csv_path: Path | None = None) -> bool:  # fmt: skip
    """Whether the study must stop before it trains or writes anything: --out (unless
    `table_only`) cannot be made a folder, or some (flag, file) output cannot be written, said
    in one line on stderr. --out is made first, so outputs may go inside a new --out; the folders
    it made go again when an output is refused. A damaged record at `csv_path` stops it too
    (RunRecord.read exits with one line)."""
    if record is not None and csv_path is not None:
        record.read(csv_path)  # exits in one line on a damaged record, before any folder
    made: list[Path] = []
    if not table_only:
        if check_outputs(("--out", out), folders=True):
            return True
        made = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
        out.mkdir(parents=True, exist_ok=True)
    if check_outputs(*outputs):
        for folder in made:
            folder.rmdir()
        return True
    return False


def publish(record: RunRecord, csv_path: Path, finished: list[dict],
            table: Callable[[list[dict]], str], table_path: Path) -> int:  # fmt: skip
    """Merge the finished runs' rows into the record at `csv_path` (earlier rows kept), write it
    and the markdown table drawn from every row, print the table; 0, or 1 with a message when
    there is no row at all; 2 with a message, before anything is written, when an output
    cannot be written."""
    if check_outputs(("--csv", csv_path), ("--table", table_path)):
        return 2
    rows = record.merge(record.read(csv_path), finished)
    if not rows:
        print("error: no finished runs to tabulate (none on disk, none in the CSV)",
              file=sys.stderr)  # fmt: skip
        return 1
    record.write(csv_path, rows)
    text = table(rows)
    table_path.write_text(text)
    print(text)
    return 0


# ---- aggregates over runs x tasks (harness/aggregates.py) -----------------------------------
D4RL_NORMALIZATION = (
    "Normalization: D4RL's normalized score / 100 of the env "
    "(envs/datasets/scores.py D4RL_REF_SCORES): 0 = D4RL's random policy, 1 = its expert."
)


def env_task(name: str) -> str:
    """The D4RL task of an env id, dataset or preset path (envs.datasets.scores.d4rl_task:
    configs/td3/hopper-bias.yaml -> hopper); imported here only when called, as it loads envs."""
    from envs.datasets.scores import d4rl_task

    return d4rl_task(name)


def preset_name(preset: str) -> str:
    """configs/td3/hopper-bias.yaml -> td3/hopper-bias (a note after the file name is kept)."""
    return preset.removeprefix("configs/").replace(".yaml", "")


def d4rl_fraction(value: float | None, task: str) -> float | None:
    """A return as D4RL's normalized score / 100 for `task` (0 = random, 1 = expert)."""
    from envs.datasets.scores import d4rl_normalized_score

    return None if value is None else float(d4rl_normalized_score(value, task)) / 100


@dataclass(frozen=True)
class Aggregates:
    """How a bench's rows become runs x tasks arrays of normalized scores, one per
    configuration, and the "Aggregates" section (harness.aggregates.markdown_aggregates) and
    performance-profile figure drawn from them. A run is a seed: rows of one configuration
    with the same seed on different tasks are one run."""

    configuration: Callable[[dict], str]  # a row's configuration (the aggregate's row)
    task: Callable[[dict], str]  # a row's task (a column)
    measures: dict[str, Callable[[dict], float | None]]  # title -> a row's normalized score
    normalization: str  # the sentence that states how the scores were normalized
    reps: int = 2000  # bootstrap resamples
    seed: int = 0  # the bootstrap's seed

    def scores(self, rows: list[dict], measure: str) -> dict[str, np.ndarray]:
        """Per configuration (in order of first row) a seeds x tasks array of the measure, its
        tasks in order of first row; NaN where a seed has no row on a task or no score."""
        score = self.measures[measure]
        cells: dict[str, dict[tuple, float]] = {}
        for r in rows:
            value = score(r)
            cells.setdefault(self.configuration(r), {})[(r["seed"], self.task(r))] = (
                np.nan if value is None else value
            )
        arrays = {}
        for name, cell in cells.items():
            seeds = sorted({seed for seed, _ in cell})
            tasks = list(dict.fromkeys(task for _, task in cell))
            arrays[name] = np.array([[cell.get((s, t), np.nan) for t in tasks] for s in seeds])
        return arrays

    def tasks(self, rows: list[dict]) -> dict[str, list[str]]:
        """Per configuration its tasks, in order of first row."""
        found: dict[str, dict[str, None]] = {}
        for r in rows:
            found.setdefault(self.configuration(r), {})[self.task(r)] = None
        return {name: list(tasks) for name, tasks in found.items()}

    def markdown(self, rows: list[dict]) -> str:
        """The "Aggregates" section: which tasks, then one table per measure."""
        from harness.aggregates import markdown_aggregates

        tasks = self.tasks(rows)
        sets = {tuple(t) for t in tasks.values()}
        if len(sets) == 1:
            which = f"Tasks: {', '.join(next(iter(sets)))} (every configuration)."
        else:
            each = "; ".join(f"{name}: {', '.join(t)}" for name, t in tasks.items())
            which = f"Tasks (aggregates over different tasks do not compare directly): {each}."
        lines = [
            "",
            "## Aggregates",
            "",
            "Over each configuration's runs (seeds) x tasks, from the rows above. " + which,
        ]
        for measure in self.measures:
            table = markdown_aggregates(
                self.scores(rows, measure), self.reps, self.seed, normalization=self.normalization
            )
            lines += ["", f"### {measure}", "", table.rstrip("\n")]
        return "\n".join(lines) + "\n"

    def plot(self, rows: list[dict], path: Path, title: str = "") -> bool:
        """The performance profiles (one panel per measure) as a PNG at `path`, when there is
        more than one configuration; whether it was drawn."""
        from harness.aggregates import (
            GAMMA,
            complete_runs,
            performance_profile,
            plot_performance_profiles,
        )

        arrays = {m: self.scores(rows, m) for m in self.measures}
        if max(len(a) for a in arrays.values()) < 2:
            return False
        values = [complete_runs(x)[0] for a in arrays.values() for x in a.values()]
        values = np.concatenate([v.ravel() for v in values])
        if values.size == 0:
            return False
        taus = np.linspace(min(0.0, values.min()), max(GAMMA, values.max()), 101)
        panels = {m: performance_profile(a, taus, self.reps, self.seed) for m, a in arrays.items()}
        plot_performance_profiles(path, taus, panels, title)
        print(f"wrote {path}")
        return True
