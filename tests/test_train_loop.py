"""The training loop with vector envs and MuJoCo: exact counters and stored simulator states."""

from __future__ import annotations

import json

import numpy as np
import torch

import train
from agents.buffer import ReplayBuffer
from envs import make_env, set_sim_state


def tiny(run_dir, *extra: str) -> list[str]:
    return [
        "--agent", "td3", "--seed", "0", "--eval-episodes", "1", "--device", "cpu",
        "--set", "learning_starts=100", "--set", "batch_size=32",
        "--set", "actor_hidden=[16]", "--set", "critic_hidden=[16]",
        "--set", "buffer_size=1000", "--progress", "off", "--run-dir", str(run_dir), *extra,
    ]  # fmt: skip


def test_vector_envs_count_every_env_step(tmp_path):
    run = tmp_path / "vec"
    args = ["--env", "Pendulum-v1", "--num-envs", "3", "--total-steps", "300"]
    assert train.main(tiny(run, *args, "--eval-every", "300")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 300
    # Vector steps land on 3, 6, ..., 300; updates start at the first one >= 100 (102) and
    # each vector step earns utd * 3 updates: 67 steps x 3.
    assert summary["gradient_updates"] == 67 * 3
    buffer = ReplayBuffer.load(run / "checkpoints" / "replay-300.pt")
    assert len(buffer) == 300 and buffer.num_envs == 3


def test_mujoco_runs_store_restorable_sim_states(tmp_path):
    run = tmp_path / "hopper"
    args = ["--env", "Hopper-v5", "--total-steps", "150", "--eval-every", "150"]
    assert train.main(tiny(run, *args)) == 0
    buffer = ReplayBuffer.load(run / "checkpoints" / "replay-150.pt")
    batch = buffer.sample(8)
    states = batch.extras["sim_state"]  # B x (nq + nv)
    assert states.shape == (8, 12) and states.dtype == torch.float64
    # Restoring a stored state and replaying the stored action reproduces the stored next_obs.
    env = make_env("Hopper-v5")
    env.reset(seed=0)
    for state, action, next_obs in zip(states, batch.actions, batch.next_obs):
        set_sim_state(env, state.numpy())
        got, *_ = env.step(action.numpy())
        np.testing.assert_allclose(got, next_obs.numpy(), rtol=1e-5, atol=1e-5)


def test_simba_statistics_count_every_env_observation(tmp_path):
    run = tmp_path / "simba"
    args = ["--env", "Pendulum-v1", "--num-envs", "2", "--total-steps", "300"]
    simba = ["--set", "arch=simba", "--eval-every", "300"]
    assert train.main(tiny(run, *args, *simba)) == 0
    state = torch.load(run / "checkpoints" / "final.pt", weights_only=True)["agent_state"]
    # One observe() per vector step of 2 envs: 300 observations, none from replay.
    assert abs(float(state["obs_norm"]["count"]) - 300.0) < 1e-3


def policy_actions_taken(tmp_path, agent: str, *sets: str) -> tuple[int, int]:
    """(env steps acted by the agent's policy, gradient updates) in a 150-step run."""
    args = tiny(tmp_path / agent, "--env", "Pendulum-v1", "--total-steps", "150")
    args[1] = agent
    trainer = train.prepare_new_run(train.build_parser().parse_args([*args, *sets]))
    calls = []
    act = trainer.agent.act

    def counting_act(obs, deterministic):
        if not deterministic:  # evaluation acts deterministically; collection does not
            calls.append(len(obs))
        return act(obs, deterministic)

    trainer.agent.act = counting_act
    trainer.train()
    return sum(calls), trainer.counters["gradient_updates"]


def test_warm_up_random_steps_and_learning_starts(tmp_path):
    # TD3: uniform-random actions for the first 100 steps, then the policy; updates from 100.
    assert policy_actions_taken(tmp_path, "td3") == (50, 51)
    # TQC's reference convention: the untrained policy acts from the first step, updates
    # begin once learning_starts transitions exist.
    tqc = ("--set", "random_steps=0", "--set", "n_critics=2", "--set", "n_quantiles=5")
    assert policy_actions_taken(tmp_path, "tqc", *tqc) == (150, 51)
