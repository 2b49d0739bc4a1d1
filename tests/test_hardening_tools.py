"""Issue 19 (robustness), the analysis tools: harness.sweep, harness.plots, harness.utd and the
bench record (bench/jobs.py, bench/procgen_study.py --table-only).

Every bad input must end in one short error line and a non-zero exit before anything is
written, and leave existing files untouched.
"""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from harness import plots, sweep, utd
from tests.test_cli import assert_one_line_error, snapshot
from tests.test_plots import fake_run
from tests.test_sweep import TINY, write_spec
from tests.test_utd import law_runs, write_sweep

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def a_file(tmp_path) -> Path:
    """An existing file given where an output goes; its bytes must survive."""
    path = tmp_path / "keep.json"
    path.write_text('{"keep": true}\n')
    return path


# ---------------------------------------------------------------- item 1: harness.sweep


@pytest.mark.parametrize("under", [False, True], ids=["file", "under-a-file"])
def test_sweep_out_that_is_a_file_is_one_line(tmp_path, capsys, a_file, under):
    spec = write_spec(tmp_path / "s.yaml", grid={"utd": [1]})
    out = a_file / "sweep" if under else a_file
    assert sweep.main([str(spec), "--out", str(out)]) == 2
    line = assert_one_line_error(capsys)
    assert f"--out {out}" in line and "is a file, not a folder" in line
    assert a_file.read_text() == '{"keep": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json", "s.yaml"]


@pytest.mark.parametrize(
    "changes, point, problem",
    [
        ({"env": "NoSuchEnv-v9"}, "td3-NoSuchEnv-v9-utd1", "unknown environment id"),
        ({"grid": {"utd": [-1]}}, "td3-Pendulum-v1-utd-1", "utd must be > 0"),
        ({"grid": {"gamma": ["abc"]}}, "td3-Pendulum-v1-gammaabc", "'gamma' expects a number"),
        ({"config": "PRESET"}, "td3-Pendulum-v1-utd1", "invalid YAML"),
        # refused only where a point's seeds train in one process (training/launch.py)
        ({"seeds": [0, 1], "seeds_in_one_process": True, "grid": {"stop_at_return": [-200]}},
         "td3-Pendulum-v1-stop_at_return-200", "--stop-at-return would stop the seeds apart"),
        ({"seeds": [0, 1], "seeds_in_one_process": True, "set": {**TINY, "compile": True}},
         "td3-Pendulum-v1-utd1", "update uncompiled"),
    ],
    ids=["unknown-env", "utd-below-0", "gamma-not-a-number", "corrupt-preset",
         "group-stop-at-return", "group-compiled"],
)  # fmt: skip
def test_sweep_refuses_a_bad_grid_point_before_writing(tmp_path, capsys, changes, point, problem):
    preset = tmp_path / "preset.yaml"
    preset.write_text("gamma: [unclosed\n")
    changes = {"grid": {"utd": [1]}, **changes}
    if changes.get("config") == "PRESET":
        changes["config"] = str(preset)
    spec = write_spec(tmp_path / "s.yaml", **changes)
    out = tmp_path / "out"
    assert sweep.main([str(spec), "--out", str(out)]) == 2
    line = assert_one_line_error(capsys)
    assert line.startswith(f"error: grid point {point}: ") and problem in line, line
    assert not out.exists()  # no runs/, argv.json, log or results.csv


# ---------------------------------------------------------------- item 2: harness.plots


@pytest.mark.parametrize(
    "outputs, flag, problem",
    [
        ({"--table": "nodir/t.md"}, "--table", "does not exist"),
        ({"--out": "keep.json/x.png"}, "--out", "is a file"),
        ({"--tb-dir": "keep.json"}, "--tb-dir", "is a file; give a folder"),
        ({"--out": "."}, "--out", "is a folder; give a file name"),
        ({"--table": "."}, "--table", "is a folder; give a file name"),
    ],
    ids=["table-in-missing-folder", "out-under-a-file", "tb-dir-a-file", "out-a-folder",
         "table-a-folder"],
)  # fmt: skip
def test_plots_checks_every_output_before_drawing(tmp_path, capsys, a_file, outputs, flag, problem):
    run = fake_run(tmp_path, "run", 0, 2, [0.1, 0.05], [500, 900])
    paths = {"--out": "a.png", "--tb-dir": "tb", **outputs}
    argv = [run, *(x for k, v in paths.items() for x in (k, str(tmp_path / v)))]
    before = snapshot(tmp_path)
    assert plots.main(argv) == 2
    line = assert_one_line_error(capsys)
    assert line.startswith(f"error: {flag} {tmp_path / paths[flag]}") and problem in line, line
    assert snapshot(tmp_path) == before  # no a.png, no table
    assert not (tmp_path / "tb").exists() and not (tmp_path / "nodir").exists()


# ---------------------------------------------------------------- item 3: harness.utd


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--flops-per-update", "-5"], "--flops-per-update must be a finite number > 0"),
        (["--fit-below", "nan"], "--fit-below must be a finite number > 0, got nan"),
        (["--threshold", "nan"], "--threshold J must be a finite number, got 'nan'"),
        (["--threshold", "Hopper-v5=inf"], "--threshold J must be a finite number"),
        (["--tb-dir", "KEEP"], "is a file; give a folder"),
        (["--out", "KEEP/utd"], "is a file"),
    ],
    ids=["seed-below-0", "flops-below-0", "fit-below-nan", "threshold-nan", "threshold-inf",
         "tb-dir-a-file", "out-under-a-file"],
)  # fmt: skip
def test_utd_checks_its_arguments_and_outputs_before_any_output(
    tmp_path, capsys, a_file, args, message
):
    folder = write_sweep(tmp_path / "sweep", law_runs())
    out = tmp_path / "out" / "utd"
    args = [a.replace("KEEP", str(a_file)) for a in args]
    argv = [str(folder), "--threshold", "1000", "--reps", "5", "--out", str(out), *args]
    before = snapshot(tmp_path)
    assert utd.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not even the table
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- item 4: the bench record

spec = importlib.util.spec_from_file_location("study", REPO / "bench" / "procgen_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def write_record(path: Path, seeds=(0, 1, 2)) -> Path:
    """A Procgen-study record of hand-made rows (no docs/ file is read or written)."""
    rows = [{**dict.fromkeys(study.CSV_FIELDS, ""), "agent": "ppo", "game": "coinrun",
             "levels": 10, "seed": seed, "start_level": 0, "level_sets": study.FROM_ZERO,
             "env_steps": 2000, "train_normalized": 0.5, "test_normalized": 0.25,
             "gap": 0.25, "wall_time_s": 10.0, "curve": "1000 0.1000 0.0500; 2000 0.5000 0.2500"}
            for seed in seeds]  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=study.CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def table_only(tmp_path: Path, csv_path: Path, **outputs: str) -> subprocess.CompletedProcess:
    """bench/procgen_study.py --table-only with every output under tmp_path."""
    paths = {"table": "t.md", "profiles": "p.png", "curves": "c.png", **outputs}
    argv = [sys.executable, "bench/procgen_study.py", "--table-only", "--csv", str(csv_path),
            "--out", str(tmp_path / "runs"),
            *(x for k, v in paths.items() for x in (f"--{k}", str(tmp_path / v)))]  # fmt: skip
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("damage", ["cut-mid-row", "extra-cell", "not-a-number", "infinite-int"])
def test_a_damaged_record_is_one_line_naming_the_file_and_row(tmp_path, damage):
    path = write_record(tmp_path / "record.csv")
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if damage == "cut-mid-row":  # a copy taken while the study appends: the last row cut short
        text = text[: len(text) - len(lines[-1]) // 2]
    elif damage == "extra-cell":
        text = "".join(lines[:2]) + lines[2].rstrip("\n") + ",surplus\n" + lines[3]
    else:  # row 1's env_steps: a word, or inf (int(float("inf")) overflows)
        text = text.replace(",2000,", ",2k," if damage == "not-a-number" else ",inf,", 1)
    path.write_text(text)
    before = snapshot(tmp_path)
    done = table_only(tmp_path, path)
    assert done.returncode != 0
    line = one_error_line(done)
    row = {"cut-mid-row": 3, "extra-cell": 2, "not-a-number": 1, "infinite-int": 1}[damage]
    assert line.startswith(f"error: {path}, row {row} (line {row + 1})"), line
    cell = {"not-a-number": "'2k'", "infinite-int": "'inf'"}.get(damage)
    problem = f"env_steps is not a number: {cell}" if cell else "cut short"
    assert problem in line, line
    assert snapshot(tmp_path) == before  # the record kept, no table, no figure


@pytest.mark.parametrize(
    "output, problem",
    [
        ({"table": "nodir/t.md"}, "error: --table {}: folder {} does not exist"),
        ({"curves": "record.csv/c.png"}, "error: --curves {}: folder {} is a file"),
        ({"profiles": "."}, "error: --profiles {} is a folder; give a file name"),
    ],
    ids=["table-in-missing-folder", "curves-under-a-file", "profiles-a-folder"],
)
def test_study_outputs_are_checked_before_anything_is_written(tmp_path, output, problem):
    path = write_record(tmp_path / "record.csv")
    before = snapshot(tmp_path)
    done = table_only(tmp_path, path, **output)
    assert done.returncode == 2
    target = tmp_path / next(iter(output.values()))
    assert one_error_line(done) == problem.format(target, target.parent)
    assert snapshot(tmp_path) == before  # the record not rewritten, no table, no figure
    assert not (tmp_path / "nodir").exists()


def test_publish_checks_both_outputs_for_every_study(tmp_path, capsys):
    from jobs import publish  # bench/, on sys.path since the study was loaded

    path = write_record(tmp_path / "record.csv")
    before = snapshot(tmp_path)
    code = publish(study.RECORD, path, [], study.table, tmp_path / "nodir" / "t.md")
    assert code == 2
    assert assert_one_line_error(capsys).startswith("error: --table ")
    assert snapshot(tmp_path) == before


def test_study_outputs_may_go_inside_the_out_folder_it_makes(tmp_path, monkeypatch, capsys):
    """A study makes --out before it checks its outputs, so a record, a table and figures
    inside a new --out (a fresh study's usual layout) pass, and training starts; an --out that
    is a file is refused before anything is written."""
    out = tmp_path / "new"
    outputs = {"--csv": "rec.csv", "--table": "t.md", "--profiles": "p.png", "--curves": "c.png"}
    argv = ["procgen_study.py", "--frames", "1000", "--seeds", "0", "--levels", "10",
            *[x for flag, name in outputs.items() for x in (flag, str(out / name))]]  # fmt: skip
    started = []

    def run_all(jobs, *rest):
        started.append(len(jobs))
        raise SystemExit(9)  # the checks passed: stop before any training

    monkeypatch.setattr(study, "run_all", run_all)
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    with pytest.raises(SystemExit) as stopped:
        study.main()
    assert stopped.value.code == 9 and started == [1] and out.is_dir()
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(afile)])
    capsys.readouterr()
    assert study.main() == 2 and started == [1]
    assert assert_one_line_error(capsys) == f"error: --out {afile} is a file; give a folder"
    assert afile.read_text() == "x\n"


# ---------------------------------------------------------------- every study's outputs

# Each study checks its outputs (bench/jobs.py start_study) before it trains. Per study: the
# arguments that come first, and its output flags besides --out.
STUDIES = {
    "bias_study": ([], ("csv", "table", "profiles")),
    "levels_study": ([], ("csv", "table", "profiles", "figure")),
    "revalued_study": ([], ("csv", "table", "profiles")),
    "offline": ([], ("csv", "table", "profiles")),
    "ppo_precision": ([], ("csv", "table")),
    "experts": (["train"], ("csv", "table")),
    "peer_learning": (["--algos", "tqc", "--seeds", "0", "--sides", "ours"],
                      ("csv", "table", "profiles")),
}  # fmt: skip


LOADED: dict = {}  # study name -> its module, loaded once


class Trained(Exception):
    """Raised by the stand-ins of what starts a training run (or makes a dataset)."""


def bench_study(name: str, monkeypatch):
    """bench/NAME.py loaded as a module, every way it starts a run (or a dataset, or any
    process) raising Trained: the tests never train."""
    if name not in LOADED:  # once: loading a study imports its dependencies
        path = REPO / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        LOADED[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(LOADED[name])
    module = LOADED[name]
    started = []

    def start(*args, **kwargs):
        started.append(args)
        raise Trained

    for runner in ("run_all", "train_or_resume", "sb3_job", "make_dataset"):
        if hasattr(module, runner):
            monkeypatch.setattr(module, runner, start)
    monkeypatch.setattr(subprocess, "call", start)
    monkeypatch.setattr(subprocess, "run", start)
    return module, started


def study_argv(name: str, out: Path, **paths: Path) -> list[str]:
    lead, flags = STUDIES[name]
    return [f"{name}.py", *lead, "--out", str(out),
            *(x for flag in flags for x in (f"--{flag}", str(paths[flag])))]  # fmt: skip


@pytest.mark.parametrize("bad", ["table-in-missing-folder", "csv-a-folder"])
@pytest.mark.parametrize("name", list(STUDIES))
def test_every_study_refuses_a_bad_output_before_training(tmp_path, monkeypatch, capsys, name,
                                                          bad):  # fmt: skip
    module, started = bench_study(name, monkeypatch)
    (tmp_path / "csvdir").mkdir()
    paths = {flag: tmp_path / f"{flag}.out" for flag in STUDIES[name][1]}
    if bad == "csv-a-folder":
        paths["csv"] = tmp_path / "csvdir"
        problem = f"error: --csv {paths['csv']} is a folder; give a file name"
    else:
        paths["table"] = tmp_path / "nodir" / "t.md"
        problem = f"error: --table {paths['table']}: folder {tmp_path / 'nodir'} does not exist"
    out = tmp_path / "runs" / "new"
    monkeypatch.setattr(sys, "argv", study_argv(name, out, **paths))
    before = snapshot(tmp_path)
    assert module.main() == 2
    assert assert_one_line_error(capsys) == problem
    assert started == []  # no run, no dataset, no process
    assert snapshot(tmp_path) == before  # no file written
    assert not (tmp_path / "runs").exists() and not (tmp_path / "nodir").exists()  # no folder


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_study_accepts_outputs_inside_the_new_out(tmp_path, monkeypatch, name):
    module, started = bench_study(name, monkeypatch)
    out = tmp_path / "new"
    paths = {flag: out / f"{flag}.out" for flag in STUDIES[name][1]}
    monkeypatch.setattr(sys, "argv", study_argv(name, out, **paths))
    with pytest.raises(Trained):  # the checks passed: it goes on to train
        module.main()
    assert started and out.is_dir()
