"""Fault injection (issue 19): kills at random moments, Ctrl-C twice, NaN in training, a run
folder that stops accepting writes, bad values. Each must end in a resumable run or in one
clear line, and never damage what a run already saved."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import evaluate
import train
import training.trainer
from core.domains import first_nonfinite
from core.runs import load_checkpoint
from tests.test_cli import REPO, assert_one_line_error, copy_run, read_summary, snapshot, tiny_args
from training import launch


def latest_step(run_dir: Path) -> int:
    return load_checkpoint(run_dir / "checkpoints" / "latest.pt")["counters"]["env_steps"]


def no_temporaries(run_dir: Path) -> bool:
    return not list(run_dir.rglob("*.tmp"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert train.main(tiny_args(run_dir)) == 0
    return run_dir


# ---------------------------------------------------------------------- kill -9, anywhere


def kill_when(proc: subprocess.Popen, ready, run_dir: Path, extra_delay: float,
              limit: float = 120) -> None:  # fmt: skip
    """SIGKILL `proc` `extra_delay` seconds after `ready(run_dir)` first holds (or at
    `limit`)."""
    deadline = time.monotonic() + limit
    while not ready(run_dir) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(extra_delay)
    proc.kill()
    proc.wait(timeout=30)


def test_kill_9_at_random_moments_always_leaves_a_resumable_run(tmp_path, capsys):
    """Runs killed (SIGKILL: no chance to save) at moments picked by what the folder holds:
    at once, as soon as its config exists (before any checkpoint), while a checkpoint is half
    written, and at a seeded random moment after the first checkpoint. Every one finishes
    with --resume, or, when it died before its folder held a config, with a new start. Every
    trial must be killed: a run that ends before its moment is seen (a save's .tmp lives for
    milliseconds) is tried again, up to 3 times."""
    rng = random.Random(19)
    moments = {
        "at-start": lambda d: True,
        "before-first-checkpoint": lambda d: (d / "config.yaml").is_file(),
        "mid-save": lambda d: any((d / "checkpoints").glob("*.tmp")),
        "after-a-checkpoint": lambda d: (d / "checkpoints" / "latest.pt").is_file(),
    }
    for name, ready in moments.items():
        for attempt in range(3):
            run_dir = tmp_path / f"{name}-{attempt}"
            args = tiny_args(run_dir, "--checkpoint-every", "100", "--eval-every", "200",
                             total=600)  # fmt: skip
            proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO,
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            delay = rng.uniform(0.0, 1.0) if name == "after-a-checkpoint" else 0.0
            kill_when(proc, ready, run_dir, delay)
            if proc.returncode != 0:
                break
            assert (run_dir / "checkpoints" / "final.pt").is_file()  # it ended first: again
        # Killed by the SIGKILL before the run reached its end (summary.json is also written
        # at each evaluation, so only a finished run's counts the whole budget).
        assert proc.returncode == -signal.SIGKILL, (name, proc.returncode)
        assert not (run_dir / "checkpoints" / "final.pt").exists(), name
        if (run_dir / "summary.json").is_file():
            assert read_summary(run_dir)["env_steps"] < 600, name
        if name == "before-first-checkpoint":  # the moment this trial is about
            assert not (run_dir / "checkpoints" / "latest.pt").exists()
        capsys.readouterr()
        if (run_dir / "config.yaml").is_file():
            code = train.main(["--resume", str(run_dir), "--progress", "off"])
        else:  # killed before the folder held a config: nothing was started
            code = train.main(args)
        assert code == 0, (name, capsys.readouterr().err)
        summary = read_summary(run_dir)
        assert summary["env_steps"] == 600, name
        assert (run_dir / "checkpoints" / "final.pt").is_file() and no_temporaries(run_dir)


def test_a_folder_without_checkpoint_restarts_from_its_config(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # What a kill within the first checkpoint interval leaves: config, events, maybe best.pt.
    launch.prepare_new_run(train.build_parser().parse_args(tiny_args(run_dir)))
    (run_dir / "events.out.tfevents.0.host.1.0").write_bytes(b"partial")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "best.pt.tmp").write_bytes(b"half")
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--progress", "off"]) == 0
    assert "training it again from step 0" in capsys.readouterr().out
    assert read_summary(run_dir)["env_steps"] == 300 and read_summary(run_dir)["resumes"] == 0
    assert not (run_dir / "events.out.tfevents.0.host.1.0").exists() and no_temporaries(run_dir)


# ---------------------------------------------------------------------- Ctrl-C


def test_a_second_ctrl_c_during_the_final_save_waits_for_it(tmp_path, capsys, monkeypatch):
    real_save = training.Trainer.save
    saves = []

    def save(self, name="latest.pt"):
        saves.append(name)
        if len(saves) == 1:
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: stop
        if len(saves) == 2:
            signal.raise_signal(signal.SIGINT)  # the second, while the final save runs
        real_save(self, name)

    monkeypatch.setattr(training.Trainer, "save", save)
    run_dir = tmp_path / "run"
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        train.main(tiny_args(run_dir, "--checkpoint-every", "150"))
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted at step 150; checkpoint saved" in err and "nothing" not in err
    assert latest_step(run_dir) == 150 and no_temporaries(run_dir)
    monkeypatch.undo()
    assert train.main(["--resume", str(run_dir), "--progress", "off"]) == 0
    assert read_summary(run_dir)["env_steps"] == 300


def ctrl_c_after(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.parametrize(
    "extra",
    [["--eval-episodes", "1000000", "--eval-every", "110"], ["--utd", "100000"]],
    ids=["million-eval-episodes", "huge-utd"],
)
def test_ctrl_c_is_heard_inside_long_inner_loops(tmp_path, capsys, extra):
    run_dir = tmp_path / "run"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = ctrl_c_after(4.0)
    started = time.monotonic()
    try:
        with pytest.raises(SystemExit) as stopped:
            train.main(tiny_args(run_dir, *extra))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert stopped.value.code == 130 and time.monotonic() - started < 60
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert ckpt["counters"]["gradient_updates"] == ckpt["agent_state"]["updates"]


# ---------------------------------------------------------------------- divergence


def poison_after(updates: int):
    """An update_once that makes the critic's weights NaN once `updates` updates ran."""
    real = training.Trainer.update_once

    def update_once(self):
        real(self)
        if self.counters["gradient_updates"] == updates:
            with torch.no_grad():
                next(self.agent.critic.parameters()).fill_(float("nan"))

    return update_once


def test_nan_in_training_stops_with_one_line_and_keeps_the_finite_checkpoint(
    tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    monkeypatch.setattr(training.Trainer, "update_once", poison_after(120))  # after step 220
    capsys.readouterr()
    args = tiny_args(run_dir, "--checkpoint-every", "200", "--log-every", "50")
    assert train.main(args) == training.DIVERGED_EXIT
    line = assert_one_line_error(capsys)
    assert "diverged" in line and "step 200" in line, line
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert ckpt["counters"]["env_steps"] == 200
    assert first_nonfinite(ckpt["agent_state"]) is None
    assert not (run_dir / "checkpoints" / "final.pt").exists()
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert first_nonfinite(best["agent_state"]) is None


def test_a_nan_policy_is_refused_by_evaluate(finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path / "run")
    path = run_dir / "checkpoints" / "final.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["agent_state"]["actor"]["0.weight"].fill_(float("nan"))
    torch.save(ckpt, path)
    capsys.readouterr()
    assert evaluate.main([str(run_dir)]) == 2
    assert "non-finite weights (actor.0.weight" in assert_one_line_error(capsys)


# ---------------------------------------------------------------------- writes that fail


def test_a_folder_that_stops_accepting_writes_keeps_the_last_checkpoint(
    tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    real, calls = training.trainer.atomic_torch_save, []

    def read_only_after_first_checkpoint(obj, path):
        calls.append(Path(path).name)
        if "latest.pt" in calls[:-1] or (calls.count("latest.pt") > 1):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real(obj, path)

    monkeypatch.setattr(training.trainer, "atomic_torch_save", read_only_after_first_checkpoint)
    capsys.readouterr()
    assert train.main(tiny_args(run_dir, "--checkpoint-every", "200")) == 2
    line = assert_one_line_error(capsys)
    assert "cannot write" in line and "Permission denied" in line and "step 200" in line, line
    assert latest_step(run_dir) == 200
    monkeypatch.undo()
    assert train.main(["--resume", str(run_dir), "--progress", "off"]) == 0
    assert read_summary(run_dir)["env_steps"] == 300


def test_run_dir_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    capsys.readouterr()
    assert train.main(tiny_args(tmp_path / "file" / "run")) == 2
    assert "cannot create run folder" in assert_one_line_error(capsys)


def test_evaluate_json_into_a_folder_is_one_line_and_leaves_nothing(finished_run, tmp_path,
                                                                    capsys):  # fmt: skip
    capsys.readouterr()
    assert evaluate.main([str(finished_run), "--json", str(tmp_path)]) == 2
    assert "is a folder" in assert_one_line_error(capsys)
    # A temporary would sit beside the target; the other tests' folders are not this one's.
    assert list(tmp_path.iterdir()) == [] and not list(tmp_path.parent.glob("*.tmp"))


# ---------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--seed", "-1"], "seed"),
        (["--seed", str(2**70)], "seed"),
        (["--set", "gamma=-5"], "gamma"),
        (["--set", "buffer_size=0"], "buffer_size"),
        (["--set", "critic_hidden=[-5]"], "critic_hidden"),
        (["--set", "batch_size=-4"], "batch_size"),
        (["--set", "batch_size=0"], "batch_size"),
        (["--set", "tau=.nan"], "tau"),
        (["--set", "actor_lr=.inf"], "actor_lr"),
        (["--utd", "nan"], "utd"),
        (["--utd", "inf"], "utd"),
        (["--checkpoint-seconds", "-1"], "checkpoint_seconds"),
    ],
)
def test_bad_values_are_one_line_before_anything_is_written(tmp_path, capsys, extra, needle):
    run_dir = tmp_path / "new"
    capsys.readouterr()
    assert train.main(tiny_args(run_dir, *extra)) == 2
    assert needle in assert_one_line_error(capsys)
    assert not run_dir.exists()


def test_evaluate_refuses_a_negative_seed(finished_run, capsys):
    capsys.readouterr()
    assert evaluate.main([str(finished_run), "--seed", "-1"]) == 2
    assert "--seed" in assert_one_line_error(capsys)


def test_another_env_needs_other_env(tmp_path, capsys):
    run_dir = tmp_path / "hopper"
    args = tiny_args(run_dir, "--env", "Hopper-v5", "--total-steps", "120", "--eval-every", "120")
    assert train.main(args) == 0
    capsys.readouterr()
    assert evaluate.main([str(run_dir), "--env", "Hopper-v4", "--episodes", "1"]) == 2
    line = assert_one_line_error(capsys)
    assert "trained on Hopper-v5, not Hopper-v4" in line and "--other-env" in line
    out = tmp_path / "v4.json"
    argv = [str(run_dir), "--env", "Hopper-v4", "--other-env", "--episodes", "1", "--json", out]
    assert evaluate.main([str(a) for a in argv]) == 0
    assert json.loads(out.read_text())["env"] == "Hopper-v4"


# ---------------------------------------------------------------------- finished runs, warm-up


def test_resuming_a_finished_run_changes_nothing(finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path / "run")
    before = snapshot(run_dir)
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir)]) == 0
    assert "finished at 300 env steps; nothing to do" in capsys.readouterr().out
    assert train.main(["--resume", str(run_dir), "--total-steps", "300"]) == 0
    assert snapshot(run_dir) == before


def test_resume_removes_half_written_files(finished_run, tmp_path, capsys):
    run_dir = copy_run(finished_run, tmp_path / "run")
    (run_dir / "checkpoints" / "replay-400.pt.tmp").write_bytes(b"half")
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--total-steps", "350", "--progress", "off"]) == 0
    assert "removed a half-written file" in capsys.readouterr().out and no_temporaries(run_dir)


def test_a_warm_up_longer_than_the_run_is_warned_about(tmp_path, capsys):
    args = tiny_args(tmp_path / "run", "--set", "learning_starts=25000", "--total-steps", "200")
    assert train.main(args) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "no gradient update will run" in err
    assert read_summary(tmp_path / "run")["gradient_updates"] == 0


# ---------------------------------------------------------------------- carried to a new machine


def test_runs_carried_by_bench_carry_resume_as_they_would_have(tmp_path, capsys):
    """bench/carry.sh copies a study's folders into the repository for a session on another
    machine: a finished run stays finished there, and an interrupted one resumes from its
    latest checkpoint to bitwise the weights its own folder resumes to."""
    out = tmp_path / "out"
    for name in ("done", "cut"):
        assert train.main(tiny_args(out / name, "--checkpoint-every", "150",
                                    total=300 if name == "done" else 150)) == 0  # fmt: skip
    (out / "cut" / "checkpoints" / "final.pt").unlink()  # killed after its checkpoint at 150
    (out / "cut" / "checkpoints" / ".latest.pt.0123.tmp").write_bytes(b"half a save")
    (out / "cut.log").write_text("the study's log\n")
    before = snapshot(out)
    done = subprocess.run(["bash", str(REPO / "bench" / "carry.sh"), str(out), "grid"],
                          env={**os.environ, "CARRY_ROOT": str(tmp_path / "carry")},
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    carried = tmp_path / "carry" / "grid"
    assert snapshot(out) == before  # the runs themselves untouched
    assert sorted(p.name for p in (carried / "done" / "checkpoints").iterdir()) == [
        "best.pt", "final.pt", "latest.pt", "replay-300.pt"]  # fmt: skip
    assert sorted(p.name for p in (carried / "cut" / "checkpoints").iterdir()) == [
        "best.pt",
        "latest.pt",
        "replay-150.pt",
    ]  # no half-written save
    assert (carried / "cut.log").read_text() == "the study's log\n"
    capsys.readouterr()
    assert train.main(["--resume", str(carried / "done"), "--progress", "off"]) == 0
    assert "finished at 300" in capsys.readouterr().out
    for run in (out / "cut", carried / "cut"):
        assert train.main(["--resume", str(run), "--total-steps", "300", "--progress", "off"]) == 0
    mine, theirs = (load_checkpoint(run / "checkpoints" / "final.pt")
                    for run in (out / "cut", carried / "cut"))  # fmt: skip
    assert mine["counters"]["env_steps"] == theirs["counters"]["env_steps"] == 300
    assert mine["counters"]["resumes"] == theirs["counters"]["resumes"] == 1
    assert same(mine["agent_state"], theirs["agent_state"])  # weights, optimizers, counts


def same(a, b) -> bool:
    """Whether two nested checkpoint values are equal, tensors bitwise."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b
