"""Run train.py jobs for the bench scripts: each in its own process and log, finished runs
skipped, interrupted ones resumed, N at a time."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train_or_resume(folder: Path, argv: list[str]) -> int:
    """train.py `argv` into `folder` (its log beside it as <folder>.log); 0 at once when the
    run already finished, --resume when it was interrupted. Returns train.py's exit code."""
    if (folder / "checkpoints" / "final.pt").is_file():
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


def mean_std(values: list, fmt: str = ".1f") -> str:
    """'mean +- std' (population std over seeds) for a table cell; 'n/a' if any is missing."""
    if not values or any(v is None for v in values):
        return "n/a"
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):{fmt}} +- {std:{fmt.lstrip('+')}}"
