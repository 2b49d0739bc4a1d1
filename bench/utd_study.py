"""Issue 22's CPU-sized UTD study: sweeps over the UTD, the D_J(sigma) fits, bias against UTD.

    python bench/utd_study.py --jobs 2                  # every sweep, then every analysis
    python bench/utd_study.py --studies pendulum-sac --jobs 2
    python bench/utd_study.py --analysis-only           # from the records in docs/utd/
    python bench/utd_study.py --ray-check --jobs 2      # the Pendulum sweep again on Ray

Each study is a sweep preset (configs/sweeps/utd-<study>-cpu.yaml) run by harness.sweep into
bench/out/utd-<study> (resumable: the same command continues it). Its results.csv, evals.csv
and bias.csv are copied to docs/utd/<study>/, the record that outlives the run folders, and
harness.utd analyses that record: steps to the threshold J (trailing mean of 3 evaluations),
the fit of D_J(sigma) = D_min + (beta / sigma)^alpha with 95% bootstrap intervals over seeds
(2000 resamples, seed 0), the extrapolation check (fit on sigma <= 4, predict 8), the
data-compute Pareto frontier (compute: wall time) and bias against sigma; its table goes to
docs/utd/<study>.md, its numbers to docs/utd/<study>.json, its figures beside them.

`--ray-check` runs the Pendulum sweep a second time through the Ray backend (embedded
instance) into bench/out/utd-pendulum-sac-ray and compares the rows of the three CSVs with
the local backend's, all columns but wall_time_s.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDIES = {  # name: threshold J
    "pendulum-sac": -400.0,
    "reacher-sac": -10.0,
    "reacher-td3": -10.0,
}
CSVS = ("results.csv", "evals.csv", "bias.csv")
ANALYSIS = ["--window", "3", "--reps", "2000", "--seed", "0", "--fit-below", "8"]


def preset(study: str) -> str:
    return f"configs/sweeps/utd-{study}-cpu.yaml"


def python(*args: str) -> int:
    return subprocess.call([sys.executable, *args], cwd=REPO)


def run_sweep(study: str, out: Path, jobs: int, backend: str = "local") -> int:
    return python("-m", "harness.sweep", preset(study), "--out", str(out), "--jobs", str(jobs),
                  "--backend", backend)  # fmt: skip


def record(out: Path, study: str) -> Path:
    """Copy the sweep's CSVs to docs/utd/<study>/ (the durable record); returns that folder."""
    keep = REPO / "docs" / "utd" / study
    keep.mkdir(parents=True, exist_ok=True)
    for name in CSVS:
        if (out / name).is_file():
            shutil.copyfile(out / name, keep / name)
    return keep


def analyse(study: str) -> int:
    keep = REPO / "docs" / "utd" / study
    if not (keep / "results.csv").is_file():
        print(f"{study}: no record in {keep} yet", file=sys.stderr)
        return 1
    prefix = REPO / "docs" / "utd" / study
    with open(f"{prefix}.md", "w") as md:
        return subprocess.call([sys.executable, "-m", "harness.utd", str(keep), "--threshold",
                                str(STUDIES[study]), *ANALYSIS, "--out", str(prefix)],
                               cwd=REPO, stdout=md)  # fmt: skip


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in csv.DictReader(f)]


def ray_check(jobs: int) -> int:
    """The Pendulum sweep on Ray, compared with the local backend's CSVs row by row."""
    local, ray = REPO / "bench/out/utd-pendulum-sac", REPO / "bench/out/utd-pendulum-sac-ray"
    if run_sweep("pendulum-sac", local, jobs) or run_sweep("pendulum-sac", ray, jobs, "ray"):
        return 1
    same = {name: rows(local / name) == rows(ray / name) for name in CSVS}
    for name, equal in same.items():
        print(f"{name}: {'identical rows' if equal else 'DIFFERENT'} (all columns but "
              "wall_time_s)")  # fmt: skip
    return 0 if all(same.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--analysis-only", action="store_true")
    parser.add_argument("--ray-check", action="store_true")
    args = parser.parse_args()
    if args.ray_check:
        return ray_check(args.jobs)
    code = 0
    for study in args.studies:
        if not args.analysis_only:
            out = REPO / "bench" / "out" / f"utd-{study}"
            code |= run_sweep(study, out, args.jobs)
            record(out, study)
        code |= analyse(study)
    return code


if __name__ == "__main__":
    sys.exit(main())
