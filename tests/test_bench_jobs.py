"""bench/jobs.py's runner: which train.py command each state of a run folder gets."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import jobs  # noqa: E402  (bench/jobs.py, as the bench scripts import it)


def command_for(folder: Path, monkeypatch) -> list[str] | None:
    """The argv train_or_resume hands to train.py for `folder` (None: nothing run)."""
    calls = []
    monkeypatch.setattr(jobs.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    jobs.train_or_resume(folder, ["--agent", "td3", "--seed", "3"])
    return calls[0][2:-2] if calls else None  # without python, train.py and --progress off


def test_each_folder_state_gets_its_command(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    # never started: a new run into the folder
    assert command_for(folder, monkeypatch) == ["--agent", "td3", "--seed", "3",
                                                "--run-dir", str(folder)]  # fmt: skip
    # killed before its first checkpoint (config.yaml, no latest.pt): --resume, which trains
    # it again from step 0; a new run would refuse the existing folder
    folder.mkdir()
    (folder / "config.yaml").write_text("agent: td3\n")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "best.pt").write_bytes(b"")
    assert command_for(folder, monkeypatch) == ["--resume", str(folder)]
    # interrupted after a checkpoint: --resume
    (folder / "checkpoints" / "latest.pt").write_bytes(b"")
    assert command_for(folder, monkeypatch) == ["--resume", str(folder)]
    # finished: nothing runs
    (folder / "checkpoints" / "final.pt").write_bytes(b"")
    assert command_for(folder, monkeypatch) is None


def test_a_resumed_run_gets_the_studys_budget_device_threads_and_precision(tmp_path,
                                                                         monkeypatch):  # fmt: skip
    """A study re-run with another budget must train its interrupted runs to that budget, and
    one re-run on another machine (--precision auto) in what that machine runs natively: the
    flags train.py --resume accepts travel with --resume; the run's other flags come from its
    config.yaml and must not (train.py would refuse them)."""
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text("agent: ppo\n")
    (folder / "checkpoints" / "latest.pt").write_bytes(b"")
    calls = []
    monkeypatch.setattr(jobs.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    argv = ["--agent", "ppo", "--total-steps", "700000", "--seed", "1", "--device=cpu",
            "--set", "num_steps=64", "--threads", "1", "--precision", "auto"]  # fmt: skip
    jobs.train_or_resume(folder, argv)
    assert calls[0][2:-2] == ["--resume", str(folder), "--total-steps", "700000",
                              "--device=cpu", "--threads", "1", "--precision", "auto"]  # fmt: skip


def test_a_finished_run_is_trained_further_only_when_the_study_asks_for_more(tmp_path, monkeypatch):
    """A run that finished 100k steps: a study re-run at 100k (or with no budget) leaves it;
    one at 1M continues it with --resume to 1M (train.py then drops the old final.pt)."""
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.yaml").write_text("agent: tqc\nseed: 6\ntotal_steps: 100000\n")
    (folder / "checkpoints" / "latest.pt").write_bytes(b"")
    (folder / "checkpoints" / "final.pt").write_bytes(b"")
    calls = []
    monkeypatch.setattr(jobs.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    for budget in (["--total-steps", "100000"], ["--total-steps=50000"], []):
        jobs.train_or_resume(folder, ["--agent", "tqc", *budget])
    assert calls == []
    jobs.train_or_resume(folder, ["--agent", "tqc", "--total-steps=1000000", "--seed", "6"])
    assert calls[0][2:-2] == ["--resume", str(folder), "--total-steps=1000000"]


def test_each_run_enters_the_record_as_it_ends(tmp_path, monkeypatch):
    """run_all reports runs in the order they end, and recorder merges each good run's row into
    the CSV at once: a study cut short keeps what finished. Run a ends only after b's row is in
    the record (reporting in submission order would wait for a forever); c fails and d has no
    row, so neither is recorded; the row already in the CSV stays."""
    a, b, c, d = (tmp_path / n for n in "abcd")
    b_recorded = threading.Event()

    def fake_run(folder: Path, argv: list[str]) -> int:
        if folder == a:
            assert b_recorded.wait(10)
        return 1 if folder == c else 0

    monkeypatch.setattr(jobs, "train_or_resume", fake_run)
    record = jobs.RunRecord(["name", "x"], ("name",), ints=(), what="a test")
    csv_path = tmp_path / "record.csv"
    record.write(csv_path, [{"name": "old", "x": 7.0}])
    rows = {a: {"name": "a", "x": 1.0}, b: {"name": "b", "x": 2.0}, c: {"name": "c", "x": 3.0}}
    inner = jobs.recorder(record, csv_path, rows.get)
    seen = []

    def report(folder: Path, code: int) -> None:
        inner(folder, code)
        seen.append((folder.name, [r["name"] for r in record.read(csv_path)]))
        if folder == b:
            b_recorded.set()

    jobs.run_all([(f, []) for f in (a, b, c, d)], 2, report)
    assert seen[0] == ("b", ["old", "b"])
    assert sorted(name for name, _ in seen) == ["a", "b", "c", "d"]
    assert record.read(csv_path) == [{"name": "old", "x": 7.0}, {"name": "b", "x": 2.0},
                                     {"name": "a", "x": 1.0}]  # fmt: skip
