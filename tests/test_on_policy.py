"""The on-policy loop (training/on_policy.py) with PPO: exact counters over rollouts, resume,
determinism, Procgen's train-vs-held-out evaluation, and bad input as one line."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

import evaluate
import train
from core.runs import load_checkpoint
from tests.test_cli import REPO, assert_one_line_error
from tests.test_faults import same

T, N = 32, 4  # rollout steps per env, envs
EPOCHS, MINIBATCHES = 2, 4


def cartpole(run_dir, *extra: str) -> list[str]:
    return [
        "--agent", "ppo", "--env", "CartPole-v1", "--seed", "0", "--num-envs", str(N),
        "--set", "encoder=mlp", "--set", f"num_steps={T}", "--set", f"epochs={EPOCHS}",
        "--set", f"minibatches={MINIBATCHES}", "--eval-every", str(T * N), "--eval-episodes", "2",
        "--device", "cpu", "--progress", "off", "--run-dir", str(run_dir), *extra,
    ]  # fmt: skip


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_rollouts_updates_and_resume_count_exactly(tmp_path):
    run = tmp_path / "run"
    assert train.main(cartpole(run, "--total-steps", str(2 * T * N))) == 0
    first = summary(run)
    # Two rollouts of T x N steps, each followed by epochs x minibatches gradient steps.
    assert first["env_steps"] == 2 * T * N
    assert first["gradient_updates"] == 2 * EPOCHS * MINIBATCHES
    assert [e["env_steps"] for e in first["evals"]] == [T * N, 2 * T * N]
    assert {"loss/policy", "loss/value", "policy/approx_kl"} <= set(first["last_update_metrics"])
    argv = ["--resume", str(run), "--total-steps", str(3 * T * N), "--progress", "off"]
    assert train.main(argv) == 0
    again = summary(run)
    assert again["env_steps"] == 3 * T * N and again["resumes"] == 1
    assert again["gradient_updates"] == 3 * EPOCHS * MINIBATCHES
    assert train.main(["--resume", str(run)]) == 0  # finished: nothing to do


def rerun_from_best(*argv: str) -> subprocess.CompletedProcess:
    script = REPO / "bench" / "rerun_from_best.sh"
    return subprocess.run(["bash", str(script), *argv], capture_output=True, text=True)


def test_rerun_from_best_starts_from_that_state_once_per_precision(tmp_path):
    """bench/rerun_from_best.sh (the collapse check of docs/procgen.md): each precision's
    rerun starts from RUN's best.pt, so an fp32 rerun from a state is bitwise the run's own
    fp32 continuation from it; a rerun that exists is resumed, not started again."""
    run, out = tmp_path / "run", tmp_path / "out"
    fp32 = ("--precision", "fp32")
    assert train.main(cartpole(run, "--total-steps", str(2 * T * N), *fp32)) == 0
    middle = (run / "checkpoints" / "latest.pt").read_bytes()  # made best.pt below
    assert train.main(["--resume", str(run), "--total-steps", str(4 * T * N), *fp32]) == 0
    (run / "checkpoints" / "best.pt").write_bytes(middle)
    more = ("--", "--total-steps", str(4 * T * N))  # best.pt's own budget was 2 rollouts
    done = rerun_from_best(str(run), str(out), "fp32", "bf16", *more)
    assert done.returncode == 0, done.stderr
    for precision in ("fp32", "bf16"):
        rerun = summary(out / precision)
        assert rerun["env_steps"] == 4 * T * N and rerun["resumes"] == 1
        assert rerun["evals"][:2] == summary(run)["evals"][:2]  # the state's own evaluations
    assert "fp32 -> bf16 from env step 256 on" in (out / "bf16.log").read_text()
    theirs = load_checkpoint(run / "checkpoints" / "final.pt")["agent_state"]
    mine = load_checkpoint(out / "fp32" / "checkpoints" / "final.pt")
    assert same(mine["agent_state"], theirs)
    bf16 = load_checkpoint(out / "bf16" / "checkpoints" / "final.pt")["agent_state"]
    assert not same(bf16["net"], theirs["net"])
    assert rerun_from_best(str(run), str(out), "fp32", *more).returncode == 0  # resumed as is
    again = load_checkpoint(out / "fp32" / "checkpoints" / "final.pt")
    assert again["counters"] == mine["counters"] and same(again["agent_state"], theirs)
    for bad in ([str(tmp_path / "nothing"), str(out), "fp32"], [str(run), str(out)]):
        done = rerun_from_best(*bad)
        assert done.returncode == 2 and done.stderr.startswith("error: "), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_ctrl_c_is_heard_between_the_gradient_steps_of_one_update(tmp_path, capsys):
    """An update of the paper's 64 x 256 rollout takes minutes on a CPU: a stop is heard after
    the gradient step in progress, and the checkpoint counts the steps taken."""
    from tests.test_faults import ctrl_c_after

    run = tmp_path / "run"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = ctrl_c_after(4.0)
    started = time.monotonic()
    try:  # one rollout, then 20,000 epochs of 4 minibatch steps each
        with pytest.raises(SystemExit) as stopped:
            train.main(cartpole(run, "--total-steps", str(T * N), "--set", "epochs=20000"))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert stopped.value.code == 130 and time.monotonic() - started < 60
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    steps = ckpt["counters"]["gradient_updates"]
    assert steps == ckpt["agent_state"]["updates"] and 0 < steps < 20_000 * MINIBATCHES
    assert ckpt["counters"]["env_steps"] == T * N


def test_same_seed_same_run(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert train.main(cartpole(run, "--total-steps", str(2 * T * N))) == 0
    a, b = (summary(r) for r in runs)
    assert a["evals"] == b["evals"] and a["last_update_metrics"] == b["last_update_metrics"]


def test_same_seed_same_procgen_run(tmp_path):
    pytest.importorskip("procgen")
    runs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for run, seed in zip(runs, (3, 3, 4)):
        argv = ["--agent", "ppo", "--env", "procgen:starpilot", "--train-levels", "4",
                "--num-envs", "2", "--set", "num_steps=16", "--set", "minibatches=2",
                "--set", "epochs=1", "--total-steps", "64", "--eval-every", "64",
                "--eval-episodes", "2", "--seed", str(seed), "--device", "cpu",
                "--progress", "off", "--run-dir", str(run)]  # fmt: skip
        assert train.main(argv) == 0
    a, b, c = (summary(r) for r in runs)
    assert a["evals"] == b["evals"] and a["last_update_metrics"] == b["last_update_metrics"]
    assert a["last_update_metrics"] != c["last_update_metrics"]  # the seed matters


def test_the_evaluation_that_stops_a_procgen_run_is_a_report(tmp_path):
    pytest.importorskip("procgen")
    run = tmp_path / "stop"
    argv = ["--agent", "ppo", "--env", "procgen:starpilot", "--train-levels", "4",
            "--num-envs", "2", "--set", "num_steps=16", "--set", "minibatches=2",
            "--set", "epochs=1", "--total-steps", "96", "--eval-every", "32",
            "--gen-every", "64", "--eval-episodes", "2", "--stop-at-return", "-1",
            "--device", "cpu", "--progress", "off", "--run-dir", str(run)]  # fmt: skip
    assert train.main(argv) == 0
    done = summary(run)
    # stopped by the first evaluation (any return >= -1), at 32 < gen_every: still the report
    (entry,) = done["evals"]
    assert entry["env_steps"] == 32 and done["env_steps"] == 32
    assert entry["gap"] == pytest.approx(entry["train_normalized"] - entry["test_normalized"])
    assert [g["env_steps"] for g in done["generalization"]] == [32]


def test_procgen_evaluation_reports_training_and_held_out_levels(tmp_path, capsys):
    pytest.importorskip("procgen")
    run = tmp_path / "pg"
    argv = ["--agent", "ppo", "--env", "procgen:leaper", "--train-levels", "5", "--num-envs", "2",
            "--set", "num_steps=16", "--set", "minibatches=2", "--set", "epochs=1",
            "--total-steps", "96", "--eval-every", "32", "--gen-every", "64",
            "--eval-episodes", "2", "--device", "cpu", "--progress", "off",
            "--run-dir", str(run)]  # fmt: skip
    assert train.main(argv) == 0
    done = summary(run)
    evals = done["evals"]
    assert [e["env_steps"] for e in evals] == [32, 64, 96]
    # the held-out side at the first evaluation past a multiple of gen_every, and the last
    assert ["gap" in e for e in evals] == [False, True, True]
    for entry in evals:  # leaper's easy range [1.5, 10]: normalized = (R - 1.5) / 8.5
        assert entry["train_normalized"] == pytest.approx((entry["return_mean"] - 1.5) / 8.5)
    for entry in evals[1:]:
        assert {"test_return_mean", "test_normalized", "gap"} <= set(entry)
        assert entry["test_normalized"] == pytest.approx((entry["test_return_mean"] - 1.5) / 8.5)
        assert entry["gap"] == pytest.approx(entry["train_normalized"] - entry["test_normalized"])
    # summary.json's "generalization" and TensorBoard's gen/* hold the reports, under the
    # report's names; eval/* keeps the training side
    gen = done["generalization"]
    assert [g["env_steps"] for g in gen] == [64, 96]
    for g, e in zip(gen, evals[1:]):
        assert g["train_return_mean"] == e["return_mean"] and g["gap"] == e["gap"]
        assert (g["train_normalized"], g["test_normalized"]) == (
            e["train_normalized"], e["test_normalized"])  # fmt: skip
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"gen/train_return_mean", "gen/test_return_mean", "gen/train_normalized",
            "gen/test_normalized", "gen/gap"} <= tags  # fmt: skip
    assert not {"eval/gap", "eval/test_return_mean", "eval/test_normalized"} & tags
    assert [(s.step, s.value) for s in acc.Scalars("gen/gap")] == [
        (g["env_steps"], pytest.approx(g["gap"])) for g in gen]  # fmt: skip
    assert [s.step for s in acc.Scalars("eval/train_normalized")] == [32, 64, 96]
    out = tmp_path / "gen.json"
    assert evaluate.main([str(run), "--generalization", "--episodes", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    keys = {"train_return_mean", "test_return_mean", "train_normalized", "test_normalized",
            "gap", "n_train_levels", "n_episodes"}  # fmt: skip
    assert keys <= set(report) and report["n_train_levels"] == 5 and report["n_episodes"] == 2
    assert all(0 <= level < 5 for level in report["train_levels_seen"])
    assert all(level >= 5 for level in report["test_levels_seen"])
    assert report["held_out"] == "above"
    # --held-out: a finite range disjoint from levels 0-4, or the protocol's stream
    argv = [str(run), "--episodes", "4", "--json", str(out), "--held-out", "1000:2"]
    assert evaluate.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["held_out"] == "1000:2" and set(report["test_levels_seen"]) <= {1000, 1001}
    assert report["test_split"] == [1000, 1002] and report["test_levels_in_train"] == 0
    assert evaluate.main([*argv[:-1], "stream"]) == 0
    report = json.loads(out.read_text())
    assert report["held_out"] == "stream" and report["test_split"] == [0, 2**31 - 1]
    assert max(report["test_levels_seen"]) > 1000  # drawn from the whole int32 range
    capsys.readouterr()
    for bad, needle in (
        ("3:4", "overlap the training levels [0, 5)"),
        ("below", "above, stream or START:COUNT"),
        ("10:0", "COUNT >= 1"),
    ):
        out.unlink(missing_ok=True)
        assert evaluate.main([*argv[:-1], bad]) == 2
        assert needle in assert_one_line_error(capsys) and not out.exists()


def test_evaluate_refuses_what_does_not_apply(tmp_path, capsys):
    run = tmp_path / "run"
    assert train.main(cartpole(run, "--total-steps", str(T * N))) == 0
    capsys.readouterr()
    assert evaluate.main([str(run), "--generalization"]) == 2
    assert "needs an env with levels" in assert_one_line_error(capsys)
    assert evaluate.main([str(run), "--bias"]) == 2
    assert "no critic Q" in assert_one_line_error(capsys)
    assert evaluate.main([str(run), "--held-out", "stream"]) == 2
    assert "--held-out chooses Procgen levels" in assert_one_line_error(capsys)
    assert evaluate.main([str(run), "--bias-epsilon", "0.05"]) == 2
    assert "--bias-epsilon measures an agent acting greedily" in assert_one_line_error(capsys)
    assert evaluate.main([str(run), "--bias-epsilon", "0"]) == 2
    assert "--bias-epsilon must be in (0, 1], got 0.0" in assert_one_line_error(capsys)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--agent", "td3", "--env", "procgen:coinrun"], "Box"),
        (["--agent", "ppo", "--env", "procgen:nosuchgame"], "unknown Procgen env id"),
        (
            ["--agent", "ppo", "--env", "procgen:coinrun", "--distribution-mode", "medium"],
            "easy or hard",
        ),
        (["--agent", "ppo", "--env", "procgen:coinrun", "--bins", "3"], "--bins"),
        (
            ["--agent", "ppo", "--env", "procgen:coinrun", "--train-levels", "-3"],
            "train_levels must be >= 0, got -3",
        ),
        (
            ["--agent", "revalued", "--env", "procgen:coinrun", "--start-level", "-1"],
            "start_level must be >= 0, got -1",
        ),
        (["--agent", "ppo", "--env", "CartPole-v1", "--bias-every", "100"], "no critic Q"),
        (["--agent", "ppo", "--env", "CartPole-v1"], "encoder"),  # impala needs frames
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, needle):
    capsys.readouterr()
    assert train.main([*argv, "--run-dir", str(tmp_path / "r"), "--progress", "off"]) == 2
    assert needle in assert_one_line_error(capsys)
    assert not (tmp_path / "r").exists()
