"""bench/jobs.py's runner: which train.py command each state of a run folder gets."""

from __future__ import annotations

import sys
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
