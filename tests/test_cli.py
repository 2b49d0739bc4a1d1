"""End-to-end tests of the command lines: train.py and evaluate.py.

Every run is tiny (Pendulum-v1, 300 env steps, 32-unit networks) so the file runs in well
under a minute on a busy 2-core CPU. Runs happen in-process through `train.main` /
`evaluate.main` (they return the exit code); only the Ctrl-C test starts a subprocess.

What is checked: the run folder's contents and exact counters, TensorBoard tags, same-seed
determinism, resume (and its refusals), Ctrl-C -> checkpoint -> resume, evaluate.py's JSON
and determinism, save -> load -> identical actions, and that every kind of bad input ends in
one `error:` line on stderr, exit code 2, and no new or changed files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import evaluate
import train
import training
from core.config import RunConfig
from tests.interrupt import ctrl_c_after, exit_code_of
from training import launch

REPO = Path(__file__).resolve().parents[1]

TOTAL = 300
LEARNING_STARTS = 100
BATCH = 32
EVAL_SEED_OFFSET = 100_000  # train.py evaluates with seed + 100000


def tiny_args(run_dir: Path, *extra: str, total: int = TOTAL) -> list[str]:
    """A complete, fast train.py command line; later flags in `extra` override these."""
    return [
        "--agent", "td3",
        "--env", "Pendulum-v1",
        "--seed", "0",
        "--total-steps", str(total),
        "--eval-every", "150",
        "--eval-episodes", "1",
        "--log-every", "100",
        "--device", "cpu",
        "--set", f"learning_starts={LEARNING_STARTS}",
        "--set", f"batch_size={BATCH}",
        "--set", "actor_hidden=[32,32]",
        "--set", "critic_hidden=[32,32]",
        "--set", "buffer_size=10000",
        "--progress", "off",
        "--run-dir", str(run_dir),
        *extra,
    ]  # fmt: skip


def expected_updates(total: int, learning_starts: int, utd: float) -> int:
    """train.py's loop: after the step that brings env_steps to s, for every s >= learning_starts
    (buffer already holds >= batch_size rows), update_credit += utd and whole units are spent.
    So (total - learning_starts + 1) credits of utd; exact for utd in {0.5, 1, 2}."""
    return math.floor((total - learning_starts + 1) * utd)


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path (detects any new/changed file)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def assert_one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got: {err!r}"
    assert lines[0].startswith("error: ")
    return lines[0]


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def sample_obs(n: int = 8) -> np.ndarray:
    """Pendulum observations (cos, sin, angular velocity) spread over the space."""
    angles = np.linspace(-np.pi, np.pi, n)
    return np.stack([np.cos(angles), np.sin(angles), np.linspace(-8, 8, n)], 1).astype(np.float32)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """One finished tiny run, shared read-only; tests that change a run copy it first."""
    run_dir = tmp_path_factory.mktemp("base") / "run"
    assert train.main(tiny_args(run_dir)) == 0
    return run_dir


# ---------------------------------------------------------------------- 1. run folder


def test_run_folder_contents_and_exact_counters(base_run):
    cfg = yaml.safe_load((base_run / "config.yaml").read_text())
    assert cfg["env"] == "Pendulum-v1" and cfg["total_steps"] == TOTAL
    assert cfg["eval_every"] == 150 and cfg["log_every"] == 100
    # Resolved: --set values and untouched agent defaults are both written out.
    agent_cfg = cfg["agent_config"]
    assert agent_cfg["batch_size"] == BATCH
    assert agent_cfg["learning_starts"] == LEARNING_STARTS
    assert agent_cfg["actor_hidden"] == [32, 32] and agent_cfg["critic_hidden"] == [32, 32]
    assert agent_cfg["policy_delay"] == 2 and agent_cfg["gamma"] == 0.99

    summary = read_summary(base_run)
    for key in ("eval_return_mean", "best_eval_return_mean", "env_steps", "gradient_updates"):
        assert key in summary
    assert summary["env_steps"] == TOTAL
    assert summary["gradient_updates"] == expected_updates(TOTAL, LEARNING_STARTS, 1.0) == 201
    assert summary["wall_time_s"] > 0
    assert summary["resumes"] == 0
    assert summary["episodes"] == TOTAL // 200  # Pendulum episodes are 200 steps
    assert [e["env_steps"] for e in summary["evals"]] == [150, 300]
    assert summary["eval_return_mean"] == summary["evals"][-1]["return_mean"]
    assert summary["best_eval_return_mean"] == max(e["return_mean"] for e in summary["evals"])
    assert all(np.isfinite(e["return_mean"]) for e in summary["evals"])

    assert len(list(base_run.glob("events.out.tfevents.*"))) == 1
    ckpts = base_run / "checkpoints"
    assert (ckpts / "final.pt").is_file() and (ckpts / "latest.pt").is_file()
    # Saved together at the end: the same bytes.
    assert (ckpts / "final.pt").read_bytes() == (ckpts / "latest.pt").read_bytes()
    assert sorted(p.name for p in ckpts.glob("replay-*.pt")) == [f"replay-{TOTAL}.pt"]
    ckpt = torch.load(ckpts / "latest.pt", map_location="cpu", weights_only=False)
    assert ckpt["counters"]["env_steps"] == TOTAL
    assert ckpt["counters"]["gradient_updates"] == summary["gradient_updates"]
    assert ckpt["agent_state"]["updates"] == summary["gradient_updates"]


@pytest.mark.parametrize("utd", [0.5, 2.0])
def test_utd_gives_exact_update_count(tmp_path, utd):
    run_dir = tmp_path / "run"
    assert train.main(tiny_args(run_dir, "--utd", str(utd))) == 0
    summary = read_summary(run_dir)
    assert summary["env_steps"] == TOTAL
    assert summary["gradient_updates"] == expected_updates(TOTAL, LEARNING_STARTS, utd)
    assert summary["gradient_updates"] == {0.5: 100, 2.0: 402}[utd]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["utd"] == utd


# ---------------------------------------------------------------------- 2. TensorBoard


def read_scalars(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run_dir.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_tags(base_run):
    acc = read_scalars(base_run)
    tags = set(acc.Tags()["scalars"])
    expected = {
        "eval/return_mean",
        "eval/return_std",
        "loss/critic",
        "q/mean",
        "speed/env_steps_per_s",
        "speed/updates_per_s",
        "speed/utd",
        "train/episode_return",
    }
    assert expected <= tags, f"missing {sorted(expected - tags)}"
    # Logged every 100 env steps once updates ran (the first update happens at step 100).
    assert [e.step for e in acc.Scalars("loss/critic")] == [100, 200, 300]
    # The same numbers as summary.json (TensorBoard stores float32).
    summary = read_summary(base_run)
    logged = [(e.step, e.value) for e in acc.Scalars("eval/return_mean")]
    assert [s for s, _ in logged] == [e["env_steps"] for e in summary["evals"]]
    for (_, value), entry in zip(logged, summary["evals"]):
        assert value == pytest.approx(entry["return_mean"], rel=1e-6)
    # speed/utd = updates so far / env steps so far: 101 / 200 at step 200.
    utd = {e.step: e.value for e in acc.Scalars("speed/utd")}
    assert utd[200] == pytest.approx(101 / 200, rel=1e-6)
    assert utd[300] == pytest.approx(201 / 300, rel=1e-6)
    # One episode of Pendulum (200 steps) finished, at step 200.
    assert [e.step for e in acc.Scalars("train/episode_return")] == [200]


def test_tensorboard_logs_actor_loss(base_run):
    # 201 updates, 100 of them actor updates: the actor loss exists and must reach TensorBoard.
    assert "loss/actor" in read_scalars(base_run).Tags()["scalars"]


# ---------------------------------------------------------------------- 3. determinism


def test_same_seed_twice_gives_identical_run(base_run, tmp_path):
    run_dir = tmp_path / "again"
    assert train.main(tiny_args(run_dir)) == 0
    first, second = read_summary(base_run), read_summary(run_dir)
    first.pop("wall_time_s")
    second.pop("wall_time_s")
    assert first == second  # evals (exact floats), counters, everything else
    a = torch.load(base_run / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    b = torch.load(run_dir / "checkpoints" / "final.pt", map_location="cpu", weights_only=False)
    for net in ("actor", "critic", "actor_target", "critic_target"):
        for key, value in a["agent_state"][net].items():
            assert torch.equal(value, b["agent_state"][net][key]), f"{net}.{key} differs"


# ---------------------------------------------------------------------- 4. resume


def test_resume_continues_the_run(base_run, tmp_path, capsys):
    run_dir = copy_run(base_run, tmp_path / "run")
    before = read_summary(run_dir)
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--total-steps", "500", "--progress", "off"]) == 0
    after = read_summary(run_dir)
    assert after["env_steps"] == 500
    assert after["resumes"] == 1
    # update_credit carries over: one update per env step from learning_starts on.
    assert after["gradient_updates"] == expected_updates(500, LEARNING_STARTS, 1.0) == 401
    assert after["gradient_updates"] > before["gradient_updates"]
    assert after["episodes"] > before["episodes"]
    assert after["wall_time_s"] >= before["wall_time_s"]
    # Earlier evaluations kept, new ones appended (at 450 and at the end, 500).
    assert after["evals"][: len(before["evals"])] == before["evals"]
    assert [e["env_steps"] for e in after["evals"]] == [150, 300, 450, 500]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["total_steps"] == 500
    assert cfg["agent_config"]["batch_size"] == BATCH  # the rest of the config is kept
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("replay-*.pt")) == [
        "replay-500.pt"
    ]


@pytest.mark.parametrize(
    "change",
    [
        ["--seed", "3"],
        ["--env", "MountainCarContinuous-v0"],
        ["--utd", "2"],
        ["--set", "actor_lr=0.1"],
        ["--run-dir", "elsewhere"],
    ],
    ids=["seed", "env", "utd", "set", "run-dir"],
)
def test_resume_refuses_changed_flags(base_run, tmp_path, capsys, change):
    run_dir = copy_run(base_run, tmp_path / "run")
    before = snapshot(run_dir)
    change = [str(tmp_path / c) if c == "elsewhere" else c for c in change]
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--total-steps", "500", *change]) == 2
    line = assert_one_line_error(capsys)
    assert "--resume" in line
    assert snapshot(run_dir) == before
    assert not (tmp_path / "elsewhere").exists()


def test_resume_may_switch_compile_and_nothing_else_of_the_agent(
    base_run, tmp_path, capsys, monkeypatch
):
    """`compile` is a speed-only setting (a long run on a slow machine may take it up half
    way): --resume accepts --set compile=..., builds the agent with it and records it in
    config.yaml; a bad value is one error line and leaves the folder as it was."""
    run_dir = copy_run(base_run, tmp_path / "run")
    before = snapshot(run_dir)
    resume = ["--resume", str(run_dir), "--total-steps", "500", "--progress", "off"]
    capsys.readouterr()
    assert train.main([*resume, "--set", "compile=maybe"]) == 2
    assert "compile" in assert_one_line_error(capsys)
    assert snapshot(run_dir) == before
    compiled = []  # torch.compile stood in for: the agent's losses pass through it
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or fn)
    assert train.main([*resume, "--set", "compile=true"]) == 0
    assert len(compiled) >= 1
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["agent_config"]["compile"] is True and cfg["total_steps"] == 500
    assert read_summary(run_dir)["env_steps"] == 500


# ---------------------------------------------------------------------- 5. Ctrl-C


def _default_sigint() -> None:
    # A child of a shell that ignores SIGINT would inherit SIG_IGN; make Ctrl-C reach Python.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_saves_and_resume_finishes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest.pt"
    cmd = [
        sys.executable,
        "train.py",
        *tiny_args(run_dir, "--checkpoint-every", "200", "--eval-every", "100000", total=200_000),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 90
        while not latest.exists():
            if proc.poll() is not None:
                pytest.fail(f"train.py exited early ({proc.returncode}): {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint within 90 s")
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "--resume" in err
    assert latest.is_file()
    assert not (run_dir / "checkpoints" / "final.pt").exists()  # it did not finish
    ckpt = torch.load(latest, map_location="cpu", weights_only=False)
    saved = ckpt["counters"]["env_steps"]
    assert 200 <= saved < 200_000
    assert read_summary(run_dir)["env_steps"] == saved
    assert (run_dir / "checkpoints" / f"replay-{saved}.pt").is_file()

    capsys.readouterr()
    resume = ["--resume", str(run_dir), "--total-steps", str(saved + 50), "--progress", "off"]
    code = train.main(resume)
    assert code == 0, capsys.readouterr().err
    summary = read_summary(run_dir)
    assert summary["env_steps"] == saved + 50
    assert summary["resumes"] == 1
    # The saved update_credit carries over (it is 1.0 when Ctrl-C landed inside an update).
    counters = ckpt["counters"]
    added = math.floor(counters["update_credit"] + 50)
    assert summary["gradient_updates"] == counters["gradient_updates"] + added
    assert (run_dir / "checkpoints" / "final.pt").is_file()


def test_ctrl_c_during_update_saves_consistent_checkpoint(tmp_path, capsys):
    trainer = launch.prepare_new_run(train.build_parser().parse_args(tiny_args(tmp_path / "run")))
    # a real Ctrl-C, arriving as the 50th update returns
    trainer.agent.update = ctrl_c_after(50, trainer.agent.update)
    assert exit_code_of(trainer.train) == 130
    assert "--resume" in capsys.readouterr().err
    ckpt = torch.load(
        trainer.run_dir / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False
    )
    assert ckpt["agent_state"]["updates"] == 50  # the agent did take 50 updates
    assert ckpt["counters"]["gradient_updates"] == ckpt["agent_state"]["updates"]


# ---------------------------------------------------------------------- 6. evaluate.py


def test_evaluate_json_and_determinism(base_run, tmp_path, capsys):
    outs = []
    for k in range(2):
        out = tmp_path / f"eval{k}.json"
        assert evaluate.main([str(base_run), "--episodes", "3", "--json", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    result = outs[0]
    assert len(result["returns"]) == 3
    assert result["lengths"] == [200, 200, 200]
    assert result["return_mean"] == pytest.approx(float(np.mean(result["returns"])), rel=1e-12)
    assert result["return_std"] == pytest.approx(float(np.std(result["returns"])), rel=1e-12)
    assert result["checkpoint"].endswith("final.pt")  # a finished run uses final.pt
    assert result["env"] == "Pendulum-v1" and result["env_steps"] == TOTAL
    # Different start states per episode (seed + k): the returns are not all the same.
    assert len(set(result["returns"])) == 3
    assert outs[1]["returns"] == result["returns"]

    # A checkpoint file directly: latest.pt holds the same agent, so the same returns.
    out = tmp_path / "latest.json"
    latest = base_run / "checkpoints" / "latest.pt"
    assert evaluate.main([str(latest), "--episodes", "3", "--json", str(out)]) == 0
    direct = json.loads(out.read_text())
    assert direct["returns"] == result["returns"]
    assert direct["checkpoint"] == str(latest)

    # The harness is the one train.py used: its last evaluation is reproduced exactly.
    out = tmp_path / "train_seed.json"
    args = [str(base_run), "--episodes", "1", "--seed", str(EVAL_SEED_OFFSET), "--json", str(out)]
    assert evaluate.main(args) == 0
    assert json.loads(out.read_text())["returns"] == [read_summary(base_run)["eval_return_mean"]]


# ---------------------------------------------------------------------- 7. save -> load


def test_save_load_gives_identical_actions(tmp_path):
    args = train.build_parser().parse_args(tiny_args(tmp_path / "run"))
    trainer = launch.prepare_new_run(args)
    trainer.train()
    obs = sample_obs()
    trained = trainer.agent.act(obs, deterministic=True)
    assert np.all(np.abs(trained) <= 1.0)
    assert not np.allclose(trained, trained[0])  # the policy depends on the observation

    run_dir = trainer.run_dir
    loaded = [evaluate.load_agent(run_dir, None)[0] for _ in range(2)]
    loaded += [
        evaluate.load_agent(run_dir / "checkpoints" / n, None)[0] for n in ("final.pt", "latest.pt")
    ]
    for agent in loaded:
        np.testing.assert_array_equal(agent.act(obs, deterministic=True), trained)
    # The critics came back too.
    o, a = torch.as_tensor(obs), torch.as_tensor(trained)
    torch.testing.assert_close(loaded[0].q_value(o, a), trainer.agent.q_value(o, a), rtol=0, atol=0)


# ---------------------------------------------------------------------- 8. bad input


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--env", "NoSuchEnv-v9"], "NoSuchEnv-v9"),
        (["--agent", "nope"], "nope"),
        (["--set", "no_such_key=1"], "no_such_key"),
        (["--set", "batch_size=abc"], "batch_size"),
        (["--set", "actor_lr=fast"], "actor_lr"),
        (["--set", "actor_hidden=64"], "actor_hidden"),
        (["--set", "novalue"], "KEY=VALUE"),
        (["--total-steps", "0"], "total_steps"),
        (["--utd", "0"], "utd"),
        (["--env", "CartPole-v1"], "CartPole-v1"),
        (["--precision", "fp16"], "precision"),
        (["--device", "tpu"], "device"),
    ],
    ids=[
        "unknown-env",
        "unknown-agent",
        "unknown-key",
        "int-type",
        "float-type",
        "list-type",
        "set-syntax",
        "zero-steps",
        "zero-utd",
        "discrete-actions",
        "precision",
        "device",
    ],
)
def test_train_bad_input_is_one_line_error(tmp_path, capsys, extra, needle):
    run_dir = tmp_path / "new"
    capsys.readouterr()
    assert train.main(tiny_args(run_dir, *extra)) == 2
    line = assert_one_line_error(capsys)
    assert needle in line
    assert not run_dir.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "preset, needle",
    [
        ("no_such_key: 1\n", "no_such_key"),
        ("agent_config:\n  no_such_agent_key: 1\n", "no_such_agent_key"),
        ("total_steps: many\n", "total_steps"),
        ("agent_config: [1, 2]\n", "agent_config"),
        ("- just\n- a list\n", "mapping"),
        ("agent: [td3\nenv: Pendulum-v1\n", "invalid YAML"),
    ],
    ids=["unknown-key", "unknown-agent-key", "wrong-type", "agent-config-list", "list", "yaml"],
)
def test_train_bad_preset_is_one_line_error(tmp_path, capsys, preset, needle):
    path = tmp_path / "preset.yaml"
    path.write_text(preset)
    run_dir = tmp_path / "new"
    capsys.readouterr()
    assert train.main(tiny_args(run_dir, "--config", str(path))) == 2
    line = assert_one_line_error(capsys)
    assert needle in line
    assert not run_dir.exists()


def test_train_missing_preset_is_one_line_error(tmp_path, capsys):
    capsys.readouterr()
    assert train.main(tiny_args(tmp_path / "new", "--config", str(tmp_path / "no.yaml"))) == 2
    assert "not found" in assert_one_line_error(capsys)
    assert not (tmp_path / "new").exists()


def test_train_refuses_existing_run_folder(base_run, tmp_path, capsys):
    run_dir = copy_run(base_run, tmp_path / "run")
    before = snapshot(run_dir)
    capsys.readouterr()
    assert train.main(tiny_args(run_dir, "--seed", "5")) == 2
    line = assert_one_line_error(capsys)
    assert "already exists" in line and "--resume" in line
    assert snapshot(run_dir) == before


def test_evaluate_missing_path(tmp_path, capsys):
    out = tmp_path / "out.json"
    capsys.readouterr()
    assert evaluate.main([str(tmp_path / "missing"), "--json", str(out)]) == 2
    assert "missing" in assert_one_line_error(capsys)
    assert not out.exists()


def test_evaluate_run_folder_without_checkpoint(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    capsys.readouterr()
    assert evaluate.main([str(tmp_path / "empty_run")]) == 2
    assert "no checkpoint" in assert_one_line_error(capsys)


def _random_bytes(_: bytes) -> bytes:
    return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()


def _truncated(real: bytes) -> bytes:
    return real[: len(real) // 2]


def _flipped_byte(real: bytes) -> bytes:
    # One corrupted byte inside the pickled dict (the format string), as disk corruption would.
    i = real.index(b"ogzoo-checkpoint-1")
    return real[:i] + b"\xff" + real[i + 1 :]


def _bad_float_pickle(_: bytes) -> bytes:
    return b"Fnot-a-float\n."  # a pickle FLOAT opcode with a non-number: ValueError in load


CORRUPTIONS = [
    pytest.param(_random_bytes, id="random-bytes"),
    pytest.param(_truncated, id="truncated"),
    pytest.param(_flipped_byte, id="flipped-byte"),
    pytest.param(_bad_float_pickle, id="bad-float-pickle"),
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_evaluate_corrupt_checkpoint(base_run, tmp_path, capsys, corrupt):
    path = tmp_path / "bad.pt"
    path.write_bytes(corrupt((base_run / "checkpoints" / "latest.pt").read_bytes()))
    capsys.readouterr()
    assert evaluate.main([str(path)]) == 2
    assert "corrupt" in assert_one_line_error(capsys)


def test_evaluate_foreign_torch_file(tmp_path, capsys):
    path = tmp_path / "other.pt"
    torch.save({"a": 1}, path)
    capsys.readouterr()
    assert evaluate.main([str(path)]) == 2
    assert "not an ogzoo checkpoint" in assert_one_line_error(capsys)


@pytest.mark.parametrize("env", ["HalfCheetah-v5", "MountainCarContinuous-v0"])
def test_evaluate_on_env_with_other_spaces(base_run, tmp_path, capsys, monkeypatch, env):
    # (Python-level stderr: HalfCheetah-v5's MuJoCo model compile also prints a C-level
    # 'settotalmass is deprecated' warning to fd 2, which is not ogzoo's output, and appends
    # it to MUJOCO_LOG.TXT in the working directory: keep that file out of the repository.)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.json"
    capsys.readouterr()
    assert evaluate.main([str(base_run), "--env", env, "--json", str(out)]) == 2
    line = assert_one_line_error(capsys)
    assert env in line and "Pendulum-v1" in line
    assert not out.exists()


def test_evaluate_unknown_env_and_bad_episodes(base_run, capsys):
    capsys.readouterr()
    assert evaluate.main([str(base_run), "--env", "NoSuchEnv-v9"]) == 2
    assert "NoSuchEnv-v9" in assert_one_line_error(capsys)
    assert evaluate.main([str(base_run), "--episodes", "0"]) == 2
    assert "episodes" in assert_one_line_error(capsys)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(_random_bytes, id="random-bytes"),
        pytest.param(_bad_float_pickle, id="bad-float-pickle"),
    ],
)
def test_resume_corrupt_checkpoint(base_run, tmp_path, capsys, corrupt):
    run_dir = copy_run(base_run, tmp_path / "run")
    latest = run_dir / "checkpoints" / "latest.pt"
    latest.write_bytes(corrupt(latest.read_bytes()))
    before = snapshot(run_dir)
    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--total-steps", "500"]) == 2
    assert "corrupt" in assert_one_line_error(capsys)
    assert snapshot(run_dir) == before


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert train.main(["--resume", str(tmp_path / "empty")]) == 2
    assert "not a run folder" in assert_one_line_error(capsys)
    assert list((tmp_path / "empty").iterdir()) == []


# ---------------------------------------------------------------------- 9. --help


def test_help_documents_every_run_flag_with_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps to the terminal width
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        train.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    blocks: dict[str, str] = {}
    for block in re.split(r"\n(?=  -)", text.split("options:", 1)[1]):
        if not block.strip():
            continue
        flag = block.split()[0].rstrip(",")
        blocks[flag] = " ".join(block.split())
    defaults = RunConfig()
    for field in dataclasses.fields(RunConfig):
        flag = "--" + field.name.replace("_", "-")
        assert flag in blocks, f"{flag} not in --help"
        assert f"(default: {getattr(defaults, field.name)})" in blocks[flag], blocks[flag]
    for flag in ("--config", "--set", "--run-dir", "--resume", "--show-config", "--progress"):
        assert "default:" in blocks[flag], blocks[flag]


def test_killed_run_resumes_from_its_last_periodic_checkpoint(tmp_path, capsys):
    """SIGKILL gives no chance to save: resume starts from the last periodic checkpoint and
    still reaches the run's own total steps."""
    run_dir = tmp_path / "run"
    total = 1000
    args = tiny_args(run_dir, "--checkpoint-every", "200", "--eval-every", "250", total=total)
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    replay = run_dir / "checkpoints" / "replay-400.pt"
    try:
        deadline = time.monotonic() + 90
        while not replay.exists():  # the second periodic checkpoint is being written
            if proc.poll() is not None:
                pytest.fail(f"train.py exited early ({proc.returncode}): {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no second checkpoint within 90 s")
            time.sleep(0.02)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    saved = ckpt["counters"]["env_steps"]
    assert saved in (200, 400)  # whichever checkpoint was complete when the process died
    assert (run_dir / "checkpoints" / ckpt["replay_file"]).is_file()

    capsys.readouterr()
    assert train.main(["--resume", str(run_dir), "--progress", "off"]) == 0, capsys.readouterr().err
    summary = read_summary(run_dir)
    assert summary["env_steps"] == total and summary["resumes"] == 1
    steps = [e["env_steps"] for e in summary["evals"]]
    assert all(a < b for a, b in zip(steps, steps[1:])) and steps[-1] == total
    assert [s for s in steps if s <= saved] == [s for s in (250,) if s <= saved]


def test_finished_run_resumed_further_is_unfinished_until_it_ends(base_run, tmp_path, monkeypatch):
    run_dir = copy_run(base_run, tmp_path / "run")
    final = run_dir / "checkpoints" / "final.pt"
    assert final.is_file()

    def interrupt(self, writer):
        raise KeyboardInterrupt  # as Ctrl-C does between steps

    monkeypatch.setattr(training.Trainer, "evaluate", interrupt)
    with pytest.raises(SystemExit) as stopped:
        train.main(["--resume", str(run_dir), "--total-steps", "500", "--progress", "off"])
    assert stopped.value.code == 130
    assert not final.exists()  # benches must not count the interrupted run as finished
    assert read_summary(run_dir)["env_steps"] < 500
    monkeypatch.undo()
    assert train.main(["--resume", str(run_dir), "--total-steps", "500", "--progress", "off"]) == 0
    assert final.is_file() and read_summary(run_dir)["env_steps"] == 500


@pytest.mark.parametrize("native", [True, False])
def test_bf16_without_native_kernels_warns_once(tmp_path, capsys, monkeypatch, native):
    """--precision bf16 where the device has no native bfloat16 kernels (an AVX2-only CPU:
    the IMPALA step ran 8x slower than fp32) says so in one line at the start, and trains."""
    import training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "native_bf16", lambda device: native)
    assert train.main(tiny_args(tmp_path / "run", "--precision", "bf16")) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("warning: --precision bf16")]  # fmt: skip
    assert len(warnings) == (0 if native else 1)
    if not native:
        assert "without AVX-512 BF16 or AMX" in warnings[0]


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_resolved_once_and_kept(tmp_path, capsys, monkeypatch, native):
    """--precision auto becomes bf16 where the kernels are native, else fp32, without the
    warning, and the run's config.yaml keeps the resolved value for resume and readers."""
    import agents.nets
    import training.trainer as trainer_module

    monkeypatch.setattr(agents.nets, "native_bf16", lambda device: native)
    monkeypatch.setattr(trainer_module, "native_bf16", lambda device: native)
    run_dir = tmp_path / "run"
    assert train.main(tiny_args(run_dir, "--precision", "auto")) == 0
    assert "warning: --precision" not in capsys.readouterr().out
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["precision"] == ("bf16" if native else "fp32")
