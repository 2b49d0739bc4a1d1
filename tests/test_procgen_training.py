"""The value-based pixel agent (REValueD on the IMPALA encoder) trained through train.py on
Procgen: uint8 frames in the replay buffer, updates past the warm-up, the generalization
report at each evaluation, the critic's bias on training and held-out levels, resume, and
evaluate.py's report (with --bias) on the checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import evaluate
import train
from agents.buffer import ReplayBuffer
from core.config import RunConfig
from training.procgen import ProcgenEvaluation

pytest.importorskip("procgen")


def test_pixel_revalued_trains_evaluates_and_resumes_on_procgen(tmp_path):
    run = tmp_path / "run"
    argv = [
        "--config", "configs/revalued/procgen-coinrun-cpu.yaml", "--train-levels", "3",
        "--env", "procgen:starpilot",  # short episodes: the bias plays whole ones
        "--num-envs", "2", "--total-steps", "200", "--eval-every", "200", "--eval-episodes", "2",
        "--set", "n_members=2", "--set", "hidden=[16]", "--set", "batch_size=8",
        "--set", "learning_starts=100", "--set", "buffer_size=1000", "--utd", "0.5",
        "--device", "cpu", "--progress", "off", "--run-dir", str(run),
        "--bias-every", "200", "--bias-states", "3", "--set", "gamma=0.5",  # horizon 10
    ]  # fmt: skip
    assert train.main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    # vector steps land on env steps 2, 4, ..., 200; from 100 on (51 of them) each earns
    # utd x num_envs = 0.5 x 2 = 1 update
    assert summary["env_steps"] == 200 and summary["gradient_updates"] == 51
    (entry,) = summary["evals"]
    assert entry["gap"] == pytest.approx(entry["train_normalized"] - entry["test_normalized"])
    # the frames are stored as the env gives them, uint8 (4x smaller than float32)
    storage = ReplayBuffer.load(run / "checkpoints" / "replay-200.pt").state_dict()["storage"]
    assert storage["obs"].dtype == storage["next_obs"].dtype == torch.uint8
    assert storage["obs"].shape[-3:] == (64, 64, 3) and storage["obs"].max() > 0
    (bias,) = summary["bias"]
    for side in ("train", "test"):  # states the greedy policy reached there, restored
        assert bias[side]["n_states"] == 3 and bias[side]["restored_states"]
        assert bias[side]["horizon"] == 10 and bias[side]["bias_target"] == "reward"
    resume = ["--resume", str(run), "--total-steps", "300", "--progress", "off"]
    assert train.main(resume) == 0
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 300
    out = tmp_path / "gen.json"
    assert evaluate.main([str(run), "--episodes", "2", "--bias", "--bias-states", "2",
                          "--bias-epsilon", "0.5", "--rollouts", "3",
                          "--json", str(out)]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    for side in ("train", "test"):  # the same states, against the epsilon-greedy return too
        greedy, noisy = report["bias"][side], report["bias_epsilon"][side]
        assert (greedy["rollouts"], greedy["rollout_policy"]) == (1, "greedy")
        assert (noisy["rollouts"], noisy["rollout_policy"]) == (3, "epsilon-greedy 0.5")
        assert noisy["n_states"] == greedy["n_states"] == 2
    # the preset evaluates epsilon-greedy, as EDE's Procgen DQN (eval_eps 0.05)
    assert report["eval_epsilon"] == 0.05 and report["deterministic"] is False
    assert all(0 <= level < 3 for level in report["train_levels_seen"])
    assert all(level >= 3 for level in report["test_levels_seen"])
    assert {side: report["bias"][side]["n_states"] for side in ("train", "test")} == {
        "train": 2, "test": 2}  # fmt: skip


def test_a_procgen_timeout_is_stored_as_terminal(tmp_path):
    # Procgen never renders an ended episode's last frame: a timed-out transition's next_obs is
    # the next level's first frame, so the off-policy loop stores the end as terminal (no
    # bootstrap from it). maze times out at 500 steps; 4 envs of random actions for 510 steps
    # each end at least one episode by the timeout with this seed (asserted).
    run = tmp_path / "run"
    argv = [
        "--config", "configs/revalued/procgen-coinrun-cpu.yaml", "--env", "procgen:maze",
        "--train-levels", "20", "--num-envs", "4", "--total-steps", "2040",
        "--eval-every", "100000", "--eval-episodes", "1",
        "--set", "learning_starts=100000",  # random actions only
        "--set", "n_members=2", "--set", "hidden=[16]", "--set", "buffer_size=2040",
        "--device", "cpu", "--progress", "off", "--run-dir", str(run), "--seed", "0",
    ]  # fmt: skip
    assert train.main(argv) == 0
    (replay,) = (run / "checkpoints").glob("replay-*.pt")
    storage = ReplayBuffer.load(replay).state_dict()["storage"]
    truncated, terminated = storage["truncated"] > 0, storage["terminated"] > 0
    assert truncated.sum() >= 1  # some episode reached the timeout
    assert torch.equal(terminated & truncated, truncated)  # and every such end is terminal
    assert (terminated & ~truncated).sum() >= 1  # the maze solved by chance: a plain terminal


class FrameScripted:
    """Acts from what it sees (a hash of the frame), so its episodes differ with the levels,
    seeds and frames an evaluation plays."""

    def act(self, obs, deterministic=True):
        return obs.reshape(len(obs), -1)[:, ::97].astype(np.int64).sum(1) % 15


def test_an_evaluation_between_reports_plays_the_reports_training_episodes():
    cfg = RunConfig(env="procgen:starpilot", train_levels=3, start_level=20)
    evaluation = ProcgenEvaluation(cfg, episodes=5)
    side = evaluation.train_side(FrameScripted(), seed=11)
    report = evaluation.report(FrameScripted(), seed=11)
    assert set(report["train_levels"]) <= {20, 21, 22}
    assert side["return_mean"] == report["train_return_mean"]
    assert side["return_std"] == report["train_return_std"]
    assert side["length_mean"] == report["train_length_mean"]
    # starpilot's easy range [2.5, 64]
    assert side["train_normalized"] == pytest.approx((side["return_mean"] - 2.5) / 61.5)
    assert side["train_normalized"] == pytest.approx(report["train_normalized"])
    other = evaluation.train_side(FrameScripted(), seed=12)
    assert other["length_mean"] != side["length_mean"]  # the seed decides the episodes
