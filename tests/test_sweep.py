"""harness/sweep.py: the grid of train.py runs, its two backends, its resume and its checks.

Runs are tiny (TD3 on Pendulum-v1, 300 env steps, 32-unit networks). The backends test runs
the same two-point grid on the local pool and on an embedded Ray instance and compares the
CSVs row by row (all but wall time); the resume test kills the sweep and its train.py in the
middle of a run and checks that the same command finishes it from its checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness import sweep

REPO = Path(__file__).resolve().parents[1]
TINY = {"learning_starts": 100, "batch_size": 32, "actor_hidden": [32, 32],
        "critic_hidden": [32, 32]}  # fmt: skip


def write_spec(path: Path, **changes) -> Path:
    spec = {"agent": "td3", "env": "Pendulum-v1", "seeds": [0], "total_steps": 300,
            "grid": {"utd": [0.5, 2]}, "set": dict(TINY),
            "run": {"eval_every": 150, "eval_episodes": 1, "bias_every": 300,
                    "bias_states": 2}}  # fmt: skip
    spec.update(changes)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def rows(path: Path, drop=("wall_time_s",)) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def test_points_arguments_and_co_scaling(tmp_path):
    spec = sweep.load_spec(write_spec(
        tmp_path / "s.yaml", agent=["td3", "sac"], seeds=[0, 1],
        grid={"utd": [0.5, 4], "actor_lr": [1e-3]},
        co_scale={"batch_size": {"base": 256, "exponent": -0.5, "reference_utd": 1}},
        set={"learning_starts": 100}))  # fmt: skip
    points = spec.points()
    assert len(points) == 2 * 2 * 2  # agents x utd x seeds (one actor_lr)
    by_name = {p.name: p for p in points}
    assert "td3-Pendulum-v1-utd4-actor_lr0.001-batch_size128-s1" in by_name
    assert (
        dict(by_name["td3-Pendulum-v1-utd0.5-actor_lr0.001-batch_size362-s0"].values)["batch_size"]
        == 362
    )  # round(256 * 0.5^-0.5) = round(362.04)
    argv = spec.argv(by_name["sac-Pendulum-v1-utd4-actor_lr0.001-batch_size128-s1"])
    assert argv[:8] == ["--agent", "sac", "--env", "Pendulum-v1", "--seed", "1",
                        "--total-steps", "300"]  # fmt: skip
    assert "--utd" in argv and argv[argv.index("--utd") + 1] == "4"  # a run setting: a flag
    assert "batch_size=128" in argv and "actor_lr=0.001" in argv  # agent settings: --set


def test_local_and_ray_backends_write_the_same_rows(tmp_path):
    spec = sweep.load_spec(write_spec(tmp_path / "s.yaml"))
    local = sweep.sweep(spec, tmp_path / "local", "local", jobs=2)
    assert [r["status"] for r in local] == ["finished", "finished"]
    sweep.sweep(spec, tmp_path / "ray", "ray", jobs=2)
    for name in ("results.csv", "evals.csv", "bias.csv"):
        assert rows(tmp_path / "local" / name) == rows(tmp_path / "ray" / name), name
    result = rows(tmp_path / "local" / "results.csv", drop=())
    assert [r["utd"] for r in result] == ["0.5", "2"]
    # utd updates per env step from env step 100 (learning_starts) to 300, both counted
    credited = 300 - 100 + 1
    assert [int(r["gradient_updates"]) for r in result] == [int(credited * 0.5), credited * 2]
    assert all(r["run_dir"].startswith("runs/td3-Pendulum-v1-utd") for r in result)
    evals = rows(tmp_path / "local" / "evals.csv")
    assert [e["env_steps"] for e in evals] == ["150", "300", "150", "300"]
    summary = json.loads((tmp_path / "local" / result[1]["run_dir"] / "summary.json").read_text())
    assert float(result[1]["final_eval_return_mean"]) == summary["eval_return_mean"]
    assert float(result[1]["bias_normalized_last"]) == summary["bias"][-1]["bias_normalized_mean"]


def test_seeds_in_one_process_write_the_rows_of_one_process_per_seed(tmp_path):
    """A grid point's seeds as one train.py --seeds process (the threads engine: each seed's
    run bit for bit): the same rows as one process per seed, run_dir apart."""
    run = {"eval_every": 150, "eval_episodes": 1, "seed_engine": "threads"}
    apart = sweep.load_spec(write_spec(tmp_path / "a.yaml", seeds=[0, 1], run=run))
    together = sweep.load_spec(write_spec(tmp_path / "t.yaml", seeds=[0, 1], run=run,
                                          seeds_in_one_process=True))  # fmt: skip
    assert len(together.jobs(tmp_path)) == 2 and len(apart.jobs(tmp_path)) == 4
    assert "--seeds" in together.jobs(tmp_path)[0][1]
    sweep.sweep(apart, tmp_path / "apart", "local", jobs=2)
    rows_together = sweep.sweep(together, tmp_path / "together", "local", jobs=2)
    assert [r["run_dir"] for r in rows_together] == [
        f"runs/td3-Pendulum-v1-utd{u}/s{s}" for u in ("0.5", "2") for s in (0, 1)]  # fmt: skip
    drop = ("wall_time_s", "run_dir")
    for name in ("results.csv", "evals.csv"):
        assert rows(tmp_path / "apart" / name, drop) == rows(tmp_path / "together" / name, drop)
    # finished: a second command skips every group: no run writes its final checkpoint again,
    # and no train.py starts (each would append to its group's log, even to say it had nothing
    # to do)
    runs = tmp_path / "together" / "runs"
    finals, logs = sorted(runs.glob("*/s*/checkpoints/final.pt")), sorted(runs.glob("*.log"))
    assert len(finals) == 4 and len(logs) == 2
    written = [f.stat().st_mtime_ns for f in finals], [f.read_bytes() for f in logs]
    assert sweep.main([str(tmp_path / "t.yaml"), "--out", str(tmp_path / "together")]) == 0
    assert ([f.stat().st_mtime_ns for f in finals], [f.read_bytes() for f in logs]) == written
    assert sweep.finished(tmp_path / "together" / "runs" / "td3-Pendulum-v1-utd2")


def test_a_killed_sweep_resumes_its_runs_and_skips_finished_ones(tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", total_steps=3000, grid={"utd": [1]},
                           run={"eval_every": 1000, "eval_episodes": 1,
                                "checkpoint_every": 500})  # fmt: skip
    out = tmp_path / "out"
    command = [sys.executable, "-m", "harness.sweep", str(spec_path), "--out", str(out)]
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    folder = out / "runs" / "td3-Pendulum-v1-utd1-s0"
    deadline = time.monotonic() + 240
    while not (folder / "checkpoints" / "latest.pt").is_file():
        assert time.monotonic() < deadline and proc.poll() is None, "no checkpoint was written"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its train.py, mid-run
    proc.wait()
    assert not (folder / "checkpoints" / "final.pt").exists()
    assert sweep.main([str(spec_path), "--out", str(out)]) == 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["env_steps"] == 3000 and summary["resumes"] == 1
    final = (folder / "checkpoints" / "final.pt").stat().st_mtime_ns
    assert sweep.main([str(spec_path), "--out", str(out)]) == 0  # finished: skipped
    assert (folder / "checkpoints" / "final.pt").stat().st_mtime_ns == final
    assert rows(out / "results.csv")[0]["status"] == "finished"


def test_a_changed_spec_under_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    first = sweep.load_spec(write_spec(tmp_path / "a.yaml", grid={"utd": [1]}))
    folder = out / "runs" / first.points()[0].name
    sweep.check_arguments(folder, first.argv(first.points()[0]))
    changed = write_spec(tmp_path / "b.yaml", grid={"utd": [1]}, total_steps=600)
    assert sweep.main([str(changed), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the spec changed" in err[0]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"gird": {"utd": [1]}}, "unknown spec key 'gird'"),
        ({"grid": {}}, "the grid is empty"),
        ({"grid": {"utd": []}}, "'grid.utd' is an empty list"),
        ({"grid": {"utd": [1, 2, 1]}}, "duplicate points"),
        ({"seeds": [0, 0]}, "duplicate points"),
        ({"seeds": [2**31, 0]}, "seeds must be integers in [0, 2^31"),  # not only the last
        ({"grid": {"utd": [1], "critic_width": [64]}}, "neither a run setting nor a td3 setting"),
        ({"grid": {"utd": [1]}, "run": {"utd": 2}}, "set in both grid and run"),
        ({"grid": {"seed": [1, 2]}}, "the spec's own key"),
        ({"agent": "dqn"}, "unknown agent"),
        ({"run": {"actor_lr": 1e-3}}, "not a run setting"),
        ({"co_scale": {"actor_lr": {"base": 256}}}, "needs base and exponent"),
        ({"total_steps": 0}, "total_steps must be"),
    ],
)
def test_bad_specs_are_one_line(changes, message, tmp_path, capsys):
    path = write_spec(tmp_path / "bad.yaml", **changes)
    assert sweep.main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_spec_without_a_required_key_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"agent": "td3", "env": "Pendulum-v1", "seeds": [0],
                                    "grid": {"utd": [1]}}))  # fmt: skip
    assert sweep.main([str(path), "--out", str(tmp_path / "out")]) == 2
    assert "needs 'total_steps'" in capsys.readouterr().err
