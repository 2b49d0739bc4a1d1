"""Issue 19 (robustness), the run plumbing: YAML alias bombs and long values in config errors,
durable atomic writes, one-line checkpoint errors, strict JSON, the progress display.

Every bad input must end in one short UserError line and leave existing files untouched.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.buffer import ReplayBuffer
from agents.td3 import Config
from core.config import RunConfig, apply_overrides, load_yaml, parse_set
from core.errors import UserError
from core.progress import Progress
from core.runs import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    atomic_write_text,
    load_checkpoint,
    torch_load,
    write_json,
)

MAX_LINE = 1000  # an error line (a list of known keys and a path included) stays below this


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert isinstance(err.value, UserError)
    assert "\n" not in message and len(message) < MAX_LINE, message[:MAX_LINE]
    return message


# ---------------------------------------------------------------- item 7: YAML alias bombs


def alias_bomb(levels: int) -> str:
    """The 'billion laughs' pattern: each level is nine aliases of the one before."""
    names = "abcdefghi"[:levels]
    lines = [f"{names[0]}: &{names[0]} [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip(names, names[1:]):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [4, 9])
def test_alias_bomb_preset_is_one_line_naming_the_file(tmp_path, levels):
    preset = tmp_path / "bomb.yaml"
    preset.write_text(alias_bomb(levels))
    with pytest.raises(UserError) as err:
        apply_overrides(RunConfig(), load_yaml(preset), "run config")
    message = one_line(err)
    assert str(preset) in message and "alias" in message


def test_alias_bomb_under_a_known_key_is_refused(tmp_path):
    preset = tmp_path / "bomb.yaml"
    text = alias_bomb(9).replace("i: &i", "env: &i")  # the last level is a real config key
    preset.write_text(text)
    with pytest.raises(UserError) as err:
        apply_overrides(RunConfig(), load_yaml(preset), "run config")
    assert str(preset) in one_line(err)


def test_alias_in_a_set_value_is_refused():
    with pytest.raises(UserError) as err:
        parse_set(["critic_hidden=[&a [64, 64], *a, *a]"])
    assert "critic_hidden" in one_line(err) and "alias" in str(err.value)


def test_anchors_without_aliases_still_load(tmp_path):
    preset = tmp_path / "plain.yaml"
    preset.write_text("env: &e Hopper-v5\ntotal_steps: 1000\n")
    assert load_yaml(preset) == {"env": "Hopper-v5", "total_steps": 1000}


HUGE = "[" + ",".join(["123456789"] * 100_000) + "]"  # about a megabyte


@pytest.mark.parametrize(
    "item",
    [
        f"actor_lr={HUGE}",  # a list where a number goes: the value is quoted
        f"actor_lr={HUGE[:-1]}",  # does not parse: the raw text is quoted
        f"batch_size='{'x' * 1_000_000}'",  # a string where an integer goes
        f"{'k' * 1_000_000}=1",  # an unknown key of a megabyte
        "k" * 1_000_000,  # no '=' at all
    ],
    ids=["list-for-number", "unparsable", "string-for-int", "huge-key", "no-equals"],
)
def test_huge_set_values_give_a_short_line(item):
    with pytest.raises(UserError) as err:
        apply_overrides(Config(), parse_set([item]), "td3 config")
    assert "..." in one_line(err)


def test_huge_list_items_are_cut_too():
    with pytest.raises(UserError) as err:
        apply_overrides(Config(), {"critic_hidden": [64, "x" * 100_000]}, "td3 config")
    assert "critic_hidden" in one_line(err)


# ---------------------------------------------------------------- item 10: durable writes


@pytest.fixture
def os_calls(monkeypatch):
    """Every fsync (of a file or of a folder), rename and unlink, in order, as (op, path)."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink

    def fsync(fd):
        kind = "fsync_dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync_file"
        calls.append((kind, os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        calls.append(("replace", os.fspath(dst)))
        return real_replace(src, dst, **kwargs)

    def unlink(path, **kwargs):
        calls.append(("unlink", os.fspath(path)))
        return real_unlink(path, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    return calls


def small_buffer(rows: int = 5) -> ReplayBuffer:
    buffer = ReplayBuffer(16, (3,), (2,), seed=0)
    rng = np.random.default_rng(rows)
    for _ in range(rows):
        buffer.add(rng.normal(size=(1, 3)), rng.normal(size=(1, 2)), rng.normal(size=1),
                   rng.normal(size=(1, 3)), np.zeros(1), np.zeros(1))  # fmt: skip
    return buffer


@pytest.mark.parametrize(
    "write",
    [
        lambda path: atomic_write_text(path, "hello\n"),
        lambda path: atomic_torch_save({"a": torch.ones(3)}, path),
        lambda path: small_buffer().save(path),
    ],
    ids=["text", "torch", "replay-buffer"],
)
def test_atomic_write_fsyncs_file_then_renames_then_fsyncs_the_folder(tmp_path, os_calls, write):
    path = tmp_path / "out.pt"
    write(path)
    ops = [op for op, _ in os_calls]
    assert ops == ["fsync_file", "replace", "fsync_dir"], os_calls
    assert os_calls[1][1] == str(path)
    assert os_calls[2][1] == str(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"]  # no temporary left


def save_like_a_run(folder: Path, step: int, buffer: ReplayBuffer) -> None:
    """The checkpoint order of a run (train.py's Trainer.save): the replay file, then
    latest.pt naming it, then the older replay files."""
    replay = f"replay-{step}.pt"
    buffer.save(folder / replay)
    atomic_torch_save({"step": step, "replay_file": replay}, folder / "latest.pt")
    for old in folder.glob("replay-*.pt"):
        if old.name != replay:
            old.unlink()


def test_each_checkpoint_step_is_durable_before_the_next(tmp_path, os_calls):
    save_like_a_run(tmp_path, 100, small_buffer(3))
    os_calls.clear()
    save_like_a_run(tmp_path, 200, small_buffer(5))
    replay, latest = str(tmp_path / "replay-200.pt"), str(tmp_path / "latest.pt")
    assert os_calls == [
        ("fsync_file", os_calls[0][1]),  # the replay file's temporary
        ("replace", replay),
        ("fsync_dir", str(tmp_path)),  # replay-200.pt durable ...
        ("fsync_file", os_calls[3][1]),
        ("replace", latest),
        ("fsync_dir", str(tmp_path)),  # ... before latest.pt names it, durable ...
        ("unlink", str(tmp_path / "replay-100.pt")),  # ... before the old one goes
    ]


@pytest.mark.parametrize("crash_on", ["replay-200.pt", "latest.pt"])
def test_a_crash_between_steps_leaves_the_previous_checkpoint_loadable(
    tmp_path, monkeypatch, crash_on
):
    first = small_buffer(3)
    save_like_a_run(tmp_path, 100, first)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace

    def crashing_replace(src, dst, **kwargs):
        if Path(dst).name == crash_on:
            raise OSError(28, "No space left on device", str(src))
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(OSError):
        save_like_a_run(tmp_path, 200, small_buffer(5))
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name != "replay-200.pt"}
    assert after == before  # latest.pt and replay-100.pt untouched, no temporary left
    latest = torch_load(tmp_path / "latest.pt", "checkpoint")
    assert latest["replay_file"] == "replay-100.pt"
    loaded = ReplayBuffer.load(tmp_path / latest["replay_file"])
    assert len(loaded) == len(first)


# ---------------------------------------------------------------- item 11: checkpoint errors


def full_checkpoint() -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "agent": "td3",
        "env": "Pendulum-v1",
        "run_config": {},
        "agent_config": {},
        "spaces": {},
        "agent_state": {"actor": {"w": torch.zeros(2)}},
        "counters": {
            "env_steps": 0,
            "gradient_updates": 0,
            "episodes": 0,
            "update_credit": 0.0,
            "wall_time_s": 0.0,
            "resumes": 0,
        },  # fmt: skip
        "evals": [],
        "rng": {"python": (), "numpy": [], "torch": torch.zeros(2), "loop": {}},
    }


def write_damaged(path: Path, how: str) -> None:
    if how == "truncated":
        atomic_torch_save({**full_checkpoint(), "pad": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:700])
    elif how == "random-bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    elif how == "plain-pickle":
        path.write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT}))
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "random-bytes", "plain-pickle", "empty"])
def test_corrupt_checkpoint_is_one_short_line(tmp_path, how):
    path = tmp_path / "latest.pt"
    write_damaged(path, how)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    message = one_line(err)
    assert message.startswith(f"checkpoint is corrupt or unreadable: {path} (")
    assert len(message) <= len(f"checkpoint is corrupt or unreadable: {path} ()") + 100


def test_truncated_checkpoint_says_so(tmp_path):
    path = tmp_path / "latest.pt"
    write_damaged(path, "truncated")
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    assert "truncated" in str(err.value).split(str(path))[1]  # the folder's name says so too


@pytest.mark.parametrize(
    "missing, resume",
    [(key, False) for key in ("agent", "env", "run_config", "agent_config", "spaces",
                              "agent_state", "counters", "counters/env_steps")]
    + [(key, True) for key in ("evals", "rng", "rng/torch", "counters/resumes")],
)  # fmt: skip
def test_checkpoint_missing_a_key_names_it(tmp_path, missing, resume):
    ckpt = {**full_checkpoint(), "replay_file": "replay-0.pt"}
    if "/" in missing:
        outer, inner = missing.split("/")
        del ckpt[outer][inner]
    else:
        del ckpt[missing]
    path = tmp_path / "latest.pt"
    torch.save(ckpt, path)
    with pytest.raises(UserError) as err:
        load_checkpoint(path, resume=resume)
    message = one_line(err)
    assert str(path) in message and f"'{missing}'" in message


def test_checkpoint_key_of_the_wrong_kind_is_named(tmp_path):
    path = tmp_path / "latest.pt"
    torch.save({**full_checkpoint(), "counters": [1, 2]}, path)
    with pytest.raises(UserError, match="'counters'"):
        load_checkpoint(path)


def test_resumable_checkpoint_needs_its_replay_file_or_dataset(tmp_path):
    path = tmp_path / "latest.pt"
    torch.save(full_checkpoint(), path)
    assert load_checkpoint(path)["agent"] == "td3"  # enough to act and evaluate
    with pytest.raises(UserError, match="'replay_file'"):
        load_checkpoint(path, resume=True)
    torch.save({**full_checkpoint(), "replay_file": "replay-0.pt"}, path)
    assert load_checkpoint(path, resume=True)["replay_file"] == "replay-0.pt"
    offline = {**full_checkpoint(), "run_config": {"dataset": "hopper-medium-v5"}}
    torch.save(offline, path)
    with pytest.raises(UserError, match="'dataset'"):
        load_checkpoint(path, resume=True)
    torch.save({**offline, "dataset": {}, "sampler_rng": {}}, path)
    assert load_checkpoint(path, resume=True)["sampler_rng"] == {}


def test_a_complete_checkpoint_loads(tmp_path):
    path = tmp_path / "latest.pt"
    atomic_torch_save(full_checkpoint(), path)
    assert load_checkpoint(path)["counters"]["env_steps"] == 0


def test_corrupt_replay_file_is_one_short_line(tmp_path):
    path = tmp_path / "replay-100.pt"
    small_buffer().save(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError) as err:
        ReplayBuffer.load(path)
    assert (
        str(err.value) == f"replay buffer is corrupt or unreadable: {path} (truncated zip archive)"
    )
    torch.save({"config": {"no_such_argument": 1}}, path)
    with pytest.raises(ValueError) as err:
        ReplayBuffer.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- item 12: strict JSON


def _refuse(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def test_write_json_is_strict_with_null_for_non_finite_numbers(tmp_path):
    path = tmp_path / "summary.json"
    data = {
        "eval_return_mean": float("nan"),
        "best": float("inf"),
        "ok": 1.5,
        "evals": [{"return_mean": float("-inf"), "steps": 3}, (float("nan"), 2.0)],
        "nested": {"deeper": {"x": np.float64("nan"), "flag": True, "text": "NaN"}},
    }
    write_json(path, data)
    loaded = json.loads(path.read_text(), parse_constant=_refuse)
    assert loaded == {
        "eval_return_mean": None,
        "best": None,
        "ok": 1.5,
        "evals": [{"return_mean": None, "steps": 3}, [None, 2.0]],
        "nested": {"deeper": {"x": None, "flag": True, "text": "NaN"}},
    }


# ---------------------------------------------------------------- item 13: progress display


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_without_a_terminal_prints_a_line_every_tenth():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(1000, "collecting", unit="transition", stream=stream, clock=clock) as progress:
        for _ in range(1000):
            clock.now += 0.01
            progress.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("collecting: 100/1,000 transitions (10%), 1s")
    assert "left" in lines[0]
    assert lines[-1].startswith("collecting: 1,000/1,000 transitions (100%), 10s")
    assert "\r" not in stream.getvalue()  # plain lines, no bar


def test_progress_without_a_terminal_also_prints_every_30_seconds():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(1000, "VAE", stream=stream, clock=clock)
    progress.update(1)
    assert stream.getvalue() == ""
    clock.now += 31
    progress.update(1, note="loss 0.5")
    assert stream.getvalue().splitlines() == [
        "VAE: 2/1,000 steps (0%), 31s, about 15469s left, loss 0.5"
    ]
    clock.now += 10
    progress.update(1)
    assert len(stream.getvalue().splitlines()) == 1  # neither 10% nor 30 s since the last
    progress.close()


def test_progress_always_ends_on_a_full_line_for_odd_totals():
    stream = io.StringIO()
    with Progress(15, "odd", stream=stream, clock=FakeClock()) as progress:
        for _ in range(15):
            progress.update()
    assert stream.getvalue().splitlines()[-1].startswith("odd: 15/15 steps (100%)")


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_a_tqdm_bar():
    stream = TtyStream()
    with Progress(50, "bar", stream=stream) as progress:
        for _ in range(50):
            progress.update()
    text = stream.getvalue()
    assert "\r" in text and "50/50" in text and "100%" in text


# ---------------------------------------------------------------- the same through the CLI


def test_train_cli_refuses_the_bomb_and_huge_values_in_one_short_line(tmp_path, capsys):
    import train

    preset = tmp_path / "bomb.yaml"
    preset.write_text(alias_bomb(9))
    for argv in (["--config", str(preset)], ["--agent", "td3", "--set", f"actor_lr={HUGE}"]):
        capsys.readouterr()
        assert train.main([*argv, "--show-config"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and len(err) < MAX_LINE


def test_a_real_run_makes_each_checkpoint_file_durable_before_the_next_step(tmp_path, os_calls):
    import train

    run_dir = tmp_path / "run"
    argv = ["--agent", "td3", "--env", "Pendulum-v1", "--total-steps", "300",
            "--checkpoint-every", "100", "--eval-every", "300", "--eval-episodes", "1",
            "--device", "cpu", "--set", "learning_starts=50", "--set", "batch_size=16",
            "--set", "actor_hidden=[8]", "--set", "critic_hidden=[8]",
            "--progress", "off", "--run-dir", str(run_dir)]  # fmt: skip
    assert train.main(argv) == 0
    ckpt_dir = str(run_dir / "checkpoints")
    ops = [(op, os.path.basename(path)) for op, path in os_calls
           if os.path.dirname(path) == ckpt_dir or path == ckpt_dir]  # fmt: skip

    def durable(name: str, before: int) -> bool:  # renamed into place, then the folder fsynced
        renamed = [i for i, op in enumerate(ops[:before]) if op == ("replace", name)]
        return bool(renamed) and ("fsync_dir", "checkpoints") in ops[renamed[-1] : before]

    unlinks = [i for i, (op, name) in enumerate(ops) if op == "unlink" and "replay" in name]
    assert unlinks, ops  # replay-100.pt and replay-200.pt were replaced by later ones
    for i in unlinks:
        latest = max(j for j, op in enumerate(ops[:i]) if op == ("replace", "latest.pt"))
        assert durable("latest.pt", i), ops
        newer = [name for op, name in ops[:latest] if op == "replace" and "replay" in name]
        assert durable(newer[-1], latest), ops  # the replay file before latest.pt names it
    latest = torch_load(run_dir / "checkpoints" / "latest.pt", "checkpoint")
    assert latest["replay_file"] == "replay-300.pt"


# ---------------------------------------------------------------- resume without latest.pt


def tiny_run(run_dir: Path, *extra: str) -> list[str]:
    """A fast train.py command line: TD3 on Pendulum, 200 steps, a checkpoint every 100."""
    return ["--agent", "td3", "--env", "Pendulum-v1", "--total-steps", "200",
            "--checkpoint-every", "100", "--eval-every", "100", "--eval-episodes", "1",
            "--device", "cpu", "--set", "learning_starts=50", "--set", "batch_size=16",
            "--set", "actor_hidden=[8]", "--set", "critic_hidden=[8]", "--progress", "off",
            "--run-dir", str(run_dir), *extra]  # fmt: skip


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and mtime, by relative path."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def cli_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    assert len(err) < MAX_LINE
    return err


def resume_refused(run_dir: Path, capsys) -> str:
    """train.py --resume run_dir's one error line, after checking it changed no file there."""
    import train

    before = files_of(run_dir)
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--progress", "off"]) == 2
    err = cli_error(capsys)
    assert files_of(run_dir) == before
    return err


@pytest.fixture(scope="module")
def finished_tiny(tmp_path_factory) -> Path:
    import train

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    assert train.main(tiny_run(run_dir)) == 0
    return run_dir


@pytest.fixture(scope="module")
def finished_group(tmp_path_factory) -> Path:
    import train

    root = tmp_path_factory.mktemp("group") / "grp"
    assert train.main(tiny_run(root, "--seeds", "0", "1", "--seed-engine", "threads")) == 0
    return root


def test_resume_without_latest_beside_other_checkpoints_refuses_and_touches_nothing(
    tmp_path, capsys, finished_tiny
):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_tiny, run_dir)
    (run_dir / "checkpoints" / "latest.pt").unlink()
    err = resume_refused(run_dir, capsys)
    assert "latest.pt" in err and "final.pt" in err and "replay-200.pt" in err


def test_resume_of_a_group_missing_one_latest_refuses_and_touches_nothing(
    tmp_path, capsys, finished_group
):
    import shutil

    import train

    root = tmp_path / "grp"
    shutil.copytree(finished_group, root)
    (root / "s1" / "checkpoints" / "latest.pt").unlink()
    before = files_of(root)
    capsys.readouterr()
    assert train.main(["--resume", str(root), "--progress", "off"]) == 2
    err = cli_error(capsys)
    assert str(root / "s1") in err and "latest.pt" in err and "final.pt" in err
    assert files_of(root) == before
    # ... and the seed alone, as the group's old message advised, is refused the same way
    capsys.readouterr()
    assert train.main(["--resume", str(root / "s1"), "--progress", "off"]) == 2
    assert "final.pt" in cli_error(capsys)
    assert files_of(root) == before


def test_resume_with_only_an_early_best_checkpoint_still_restarts(tmp_path, capsys):
    """A kill after the first evaluation and before the first checkpoint leaves best.pt:
    that folder is trained again from step 0, as one with no checkpoint at all."""
    import train
    from training import launch

    run_dir = tmp_path / "run"
    args = train.build_parser().parse_args(tiny_run(run_dir, "--checkpoint-every", "150",
                                                    "--eval-every", "100"))  # fmt: skip
    launch.prepare_new_run(args)  # the folder and its config, as a new run leaves them
    # The evaluation of the step at which the first checkpoint falls due runs before that
    # save, and a rollout (or --num-envs) can carry the step past checkpoint_every and the
    # wall time past checkpoint_seconds: only saved_at says whether a checkpoint came first.
    best = full_checkpoint()
    best["counters"] = {**best["counters"], "env_steps": 16_384, "wall_time_s": 500.0}
    (run_dir / "checkpoints").mkdir()
    atomic_torch_save({**best, "saved_at": 150}, run_dir / "checkpoints" / "best.pt")
    capsys.readouterr()  # written after a checkpoint: the run saved, so no restart
    assert train.main(["--resume", str(run_dir), "--progress", "off"]) == 2
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    atomic_torch_save({**best, "saved_at": None}, run_dir / "checkpoints" / "best.pt")
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--progress", "off"]) == 0
    assert "training it again from step 0" in capsys.readouterr().out
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 200


def test_a_kill_between_the_first_replay_file_and_latest_restarts(tmp_path, capsys,
                                                                 monkeypatch):  # fmt: skip
    """A kill after the first save wrote its replay file and before latest.pt leaves that
    replay file alone, as a run whose latest.pt went missing would: first-save.pending tells
    them apart, so this one trains again from step 0 (and without the marker, it is refused)."""
    import shutil

    import train
    from training import trainer

    class Killed(BaseException):  # nothing in the trainer catches it, as with a SIGKILL
        pass

    def save_until_latest(obj, path):
        if Path(path).name == "latest.pt":
            raise Killed
        atomic_torch_save(obj, path)

    run_dir = tmp_path / "run"
    monkeypatch.setattr(trainer, "atomic_torch_save", save_until_latest)
    with pytest.raises(Killed):
        train.main(tiny_run(run_dir))
    monkeypatch.undo()
    ckpt = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.pt", "first-save.pending",
                                                      "replay-100.pt"]  # fmt: skip
    unmarked = tmp_path / "unmarked"
    shutil.copytree(run_dir, unmarked)
    (unmarked / "checkpoints" / "first-save.pending").unlink()
    assert "replay-100.pt" in resume_refused(unmarked, capsys)
    assert train.main(["--resume", str(run_dir), "--progress", "off"]) == 0
    assert "training it again from step 0" in capsys.readouterr().out
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.pt", "final.pt", "latest.pt",
                                                      "replay-200.pt"]  # fmt: skip
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 200


def test_a_seed_group_killed_within_its_first_save_trains_again(tmp_path, capsys, monkeypatch):
    """The seeds of a group save one after another: a kill after seed 0's first checkpoint
    and within seed 1's leaves the group's first save cut (no previous.pt to meet at), so
    every seed trains again from step 0, where the group used to be refused for good."""
    import train
    from training import trainer

    class Killed(BaseException):
        pass

    def save_until_s1_latest(obj, path):
        if Path(path).name == "latest.pt" and Path(path).parent.parent.name == "s1":
            raise Killed
        atomic_torch_save(obj, path)

    root = tmp_path / "grp"
    monkeypatch.setattr(trainer, "atomic_torch_save", save_until_s1_latest)
    with pytest.raises(Killed):
        train.main(tiny_run(root, "--seeds", "0", "1", "--seed-engine", "threads"))
    monkeypatch.undo()
    assert (root / "s0" / "checkpoints" / "latest.pt").is_file()
    assert not (root / "s1" / "checkpoints" / "latest.pt").exists()
    assert all((root / s / "checkpoints" / "first-save.pending").is_file() for s in ("s0", "s1"))
    capsys.readouterr()
    assert train.main(["--resume", str(root), "--progress", "off"]) == 0
    assert capsys.readouterr().out.count("training it again from step 0") == 2
    for seed in ("s0", "s1"):
        ckpt = root / seed / "checkpoints"
        assert not (ckpt / "first-save.pending").exists() and (ckpt / "final.pt").is_file()
        assert load_checkpoint(ckpt / "final.pt")["counters"]["env_steps"] == 200


def test_a_first_save_killed_after_latest_resumes_and_drops_the_marker(
    tmp_path, capsys, finished_tiny
):
    """A kill between the first latest.pt and the marker's removal: that checkpoint is whole,
    so the run resumes from it, and the marker goes (else a later loss of latest.pt would pass
    for a cut first save and be restarted)."""
    import shutil

    import train
    from training import launch

    run_dir = tmp_path / "run"
    shutil.copytree(finished_tiny, run_dir)
    (run_dir / "checkpoints" / "final.pt").unlink()
    (run_dir / "checkpoints" / "first-save.pending").touch()
    argv = ["--resume", str(run_dir), "--total-steps", "300", "--progress", "off"]
    launch.launch(train.build_parser().parse_args(argv))  # set up, not trained: no save yet
    assert not (run_dir / "checkpoints" / "first-save.pending").exists()
    capsys.readouterr()
    assert train.main(argv) == 0
    assert "training it again" not in capsys.readouterr().out
    assert load_checkpoint(run_dir / "checkpoints" / "final.pt")["counters"]["resumes"] == 1


def test_resume_with_only_a_late_best_checkpoint_refuses(tmp_path, capsys, finished_tiny):
    """best.pt from past the first checkpoint interval: the run checkpointed (an on-policy or
    offline run keeps no replay file beside it), so a restart would destroy it."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_tiny, run_dir)
    for name in ("latest.pt", "final.pt", "replay-200.pt"):
        (run_dir / "checkpoints" / name).unlink()
    assert "best.pt" in resume_refused(run_dir, capsys)


# ---------------------------------------------------------------- a preset that is not UTF-8


def test_a_resume_may_change_the_precision_and_says_so(tmp_path, capsys, finished_tiny):
    """A run carried to a machine without native bf16 trains on in fp32 (and back): the
    resume says from which step, and config.yaml and the next checkpoint keep the new one;
    auto resolves to this machine's native precision, as for a new run."""
    import shutil

    import yaml

    import train
    from agents.nets import resolve_precision

    run_dir = tmp_path / "run"
    shutil.copytree(finished_tiny, run_dir)

    def precisions() -> tuple[str, str]:
        ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        return config["precision"], ckpt["run_config"]["precision"]

    assert precisions() == ("fp32", "fp32")
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--total-steps", "300", "--precision", "bf16",
                       "--progress", "off"]) == 0  # fmt: skip
    assert "precision fp32 -> bf16 from env step 200 on" in capsys.readouterr().out
    assert precisions() == ("bf16", "bf16")
    native = resolve_precision("auto", torch.device("cpu"))
    assert train.main(["--resume", str(run_dir), "--total-steps", "400", "--precision", "auto",
                       "--progress", "off"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert precisions() == (native, native)
    assert ("precision bf16 -> fp32 from env step 300" in out) == (native == "fp32")


def test_non_utf8_preset_is_one_line_naming_the_file(tmp_path, capsys):
    import train

    preset = tmp_path / "b.yaml"
    preset.write_bytes(b"\x00\xff")
    with pytest.raises(UserError) as err:
        load_yaml(preset)
    assert str(preset) in one_line(err) and "UTF-8" in str(err.value)
    run_dir = tmp_path / "run"
    capsys.readouterr()
    assert train.main(["--config", str(preset), "--run-dir", str(run_dir)]) == 2
    assert str(preset) in cli_error(capsys)
    assert not run_dir.exists()


# ---------------------------------------------------------------- PPO minibatches


def test_ppo_rollout_smaller_than_its_minibatches_is_refused_before_the_folder(tmp_path, capsys):
    import train

    run_dir = tmp_path / "run"
    argv = ["--agent", "ppo", "--env", "CartPole-v1", "--set", "encoder=mlp",
            "--set", "num_steps=16", "--set", "minibatches=1000", "--total-steps", "64",
            "--device", "cpu", "--progress", "off", "--run-dir", str(run_dir)]  # fmt: skip
    capsys.readouterr()
    assert train.main(argv) == 2
    err = cli_error(capsys)
    assert "minibatches" in err and "1000" in err and "16" in err
    assert not run_dir.exists()
    # --num-envs counts: 16 steps x 4 envs fill 64 minibatches
    capsys.readouterr()
    assert train.main([*argv[:7], "minibatches=64", *argv[8:], "--num-envs", "4",
                       "--show-config"]) == 0  # fmt: skip


# ---------------------------------------------------------------- flags that do not apply


@pytest.mark.parametrize(
    "flags, named",
    [(["--distribution-mode", "hard"], "--distribution-mode"),
     (["--d4rl-compat"], "--d4rl-compat")],
    ids=["distribution-mode-off-procgen", "d4rl-compat-without-dataset"],
)  # fmt: skip
def test_flags_that_do_not_apply_are_refused(tmp_path, capsys, flags, named):
    import train

    run_dir = tmp_path / "run"
    capsys.readouterr()
    assert train.main(tiny_run(run_dir, *flags)) == 2
    assert named in cli_error(capsys)
    assert not run_dir.exists()


def test_the_default_distribution_mode_passes_off_procgen(tmp_path, capsys):
    import train

    preset = tmp_path / "p.yaml"
    preset.write_text("env: Pendulum-v1\ndistribution_mode: easy\n")
    assert train.main(["--config", str(preset), "--show-config"]) == 0
    assert train.main(["--agent", "td3", "--env", "Pendulum-v1", "--show-config"]) == 0


@pytest.mark.parametrize(
    "flags, problem",
    [
        (["--seeds", "0", str(2**31)], "seeds must be distinct and in [0, 2^31"),
        (["--seed", str(2**31 - 1), "--num-seeds", "2"], "reaches past the seeds' limit"),
        (["--seed", "0", "--num-seeds", str(10**12)], "reaches past the seeds' limit"),
        (["--seeds", "0", "1", "--stop-at-return", "-200"], "would stop the seeds apart"),
        (["--seeds", "0", "1", "--set", "compile=true"], "update uncompiled"),
        (["--seeds", "0", "1", "--seed-engine", "threads", "--device", "cuda"],
         "threads engine runs on the CPU"),
    ],
    ids=["seed-past-2^31", "num-seeds-past-2^31", "num-seeds-huge", "group-stop", "group-compile",
         "threads-on-cuda"],
)  # fmt: skip
def test_show_config_refuses_what_the_seed_group_would(tmp_path, capsys, monkeypatch, flags,
                                                       problem):  # fmt: skip
    """--show-config (what a sweep checks each grid point with) refuses a seed group's bad
    seeds and settings as its launch does, and the launch refuses them before any folder."""
    import train
    from training import launch

    # as on a machine with a GPU (here --device cuda would be refused for want of one)
    monkeypatch.setattr(launch, "resolve_device", torch.device)
    argv = tiny_run(tmp_path / "grp", *flags)
    for extra in (["--show-config"], []):
        capsys.readouterr()
        assert train.main([*argv, *extra]) == 2
        assert problem in cli_error(capsys)
    assert not (tmp_path / "grp").exists()
