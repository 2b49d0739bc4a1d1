"""Run train.py jobs for the bench scripts: each in its own process and log, finished runs
skipped, interrupted ones resumed, N at a time."""

from __future__ import annotations

import csv
import io
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from core.runs import atomic_write_text  # noqa: E402


def finished(folder: Path) -> bool:
    """Whether the run in `folder` finished: train.py writes checkpoints/final.pt only then."""
    return (folder / "checkpoints" / "final.pt").is_file()


def finished_summary(folder: Path) -> dict | None:
    """The run's summary.json when it finished, else None."""
    if not finished(folder):
        return None
    return json.loads((folder / "summary.json").read_text())


def train_or_resume(folder: Path, argv: list[str]) -> int:
    """train.py `argv` into `folder` (its log beside it as <folder>.log); 0 at once when the
    run already finished, --resume when it was interrupted. Returns train.py's exit code."""
    if finished(folder):
        return 0
    if (folder / "checkpoints" / "latest.pt").is_file():
        argv = ["--resume", str(folder)]
    else:
        argv = [*argv, "--run-dir", str(folder)]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{folder}.log", "a") as log:
        return subprocess.call(
            [sys.executable, "train.py", *argv, "--progress", "off"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


def run_all(jobs: Iterable[tuple[Path, list[str]]], processes: int,
            report: Callable[[Path, int], None] | None = None) -> None:  # fmt: skip
    """train_or_resume every (folder, argv), `processes` at a time, reporting each ending."""
    report = report or (lambda folder, code: print(
        f"{folder.name}: {'done' if code == 0 else f'exit {code}'}", flush=True))  # fmt: skip
    with ThreadPoolExecutor(processes) as pool:
        futures = [(folder, pool.submit(train_or_resume, folder, argv)) for folder, argv in jobs]
        for folder, future in futures:
            report(folder, future.result())


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
                 what: str, texts: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.fields, self.key, self.ints, self.what = fields, key, ints, what
        self.texts = texts  # text columns besides the key

    def read(self, path: Path) -> list[dict]:
        if not path.is_file():
            return []
        rows = []
        with open(path, newline="") as f:
            for raw in csv.DictReader(f):
                if set(self.key) - raw.keys():
                    raise SystemExit(
                        f"error: {path} is not {self.what} CSV (no {self.key} columns)"
                    )
                r: dict = {k: raw.get(k, "") for k in self.fields}
                for k in self.fields:
                    if (k in self.key or k in self.texts) and k not in self.ints:
                        continue  # a text column
                    if r[k] in ("", None):
                        r[k] = None
                    else:
                        r[k] = int(float(r[k])) if k in self.ints else float(r[k])
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


def publish(record: RunRecord, csv_path: Path, finished: list[dict],
            table: Callable[[list[dict]], str], table_path: Path) -> int:  # fmt: skip
    """Merge the finished runs' rows into the record at `csv_path` (earlier rows kept), write it
    and the markdown table drawn from every row, print the table; 0, or 1 with a message when
    there is no row at all."""
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
