"""The training loop with vector envs and MuJoCo: exact counters and stored simulator states."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import train
from agents.buffer import ReplayBuffer
from envs import make_env, set_sim_state
from training import launch


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
    trainer = launch.prepare_new_run(train.build_parser().parse_args([*args, *sets]))
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


def test_warm_up_replay_and_env_draw_from_streams_apart(tmp_path):
    from training.trainer import REPLAY_STREAM, WARMUP_STREAM, stream_seed

    args = tiny(tmp_path / "r", "--env", "Pendulum-v1", "--total-steps", "100")
    trainer = launch.prepare_new_run(train.build_parser().parse_args(args))
    replay = np.random.default_rng(stream_seed(0, REPLAY_STREAM))
    assert trainer.buffer.sampler_state() == replay.bit_generator.state
    trainer.train()
    # The 100 warm-up actions (Pendulum's [-2, 2] rescaled to [-1, 1]) are the warm-up
    # stream's draws, not those of np.random.default_rng(0): that is the stream Gymnasium
    # seeds the env's resets with, and the replay stream is a third one.
    stored = trainer.buffer.state_dict()["storage"]["actions"][:100].reshape(-1).numpy()
    warmup = np.random.default_rng(stream_seed(0, WARMUP_STREAM)).uniform(-1, 1, 100)
    np.testing.assert_allclose(stored, warmup.astype(np.float32))
    env_stream = np.random.default_rng(0).uniform(-1, 1, 100)
    assert np.abs(stored - env_stream).min() > 0
    assert not np.allclose(replay.uniform(-1, 1, 100), warmup)


@pytest.mark.parametrize("agent", ["td3", "sac"])
def test_bias_measurement_during_training_leaves_training_unchanged(tmp_path, agent):
    base = ["--env", "Hopper-v5", "--total-steps", "200", "--eval-every", "200",
            "--agent", agent]  # fmt: skip
    runs = {
        "plain": [],
        "bias": ["--bias-every", "100", "--bias-states", "4", "--bias-rollouts", "2"],
    }
    for name, extra in runs.items():
        assert train.main(tiny(tmp_path / name, *base, *extra)) == 0
    plain, bias = (json.loads((tmp_path / n / "summary.json").read_text()) for n in runs)
    assert [b["env_steps"] for b in bias["bias"]] == [100, 200] and plain["bias"] == []
    soft = agent == "sac"  # SAC's critic is measured against the soft return
    for entry in bias["bias"]:
        assert entry["restored_states"] and entry["n_states"] == 4 and entry["horizon"] == 688
        assert entry["bias_target"] == ("soft" if soft else "reward")
        assert entry["rollouts"] == (2 if soft else 1)
        for part in [entry, entry["deterministic"]] if soft else [entry]:
            assert math.isclose(
                part["bias_mean"], part["q_mean"] - part["mc_return_mean"], abs_tol=1e-6
            )
            assert set(part["estimates"]) == {"q1", "min"}  # TD3's and SAC's variants
        if soft:
            assert entry["deterministic"]["bias_target"] == "reward"
            parts = entry["mc_reward_mean"] + entry["mc_entropy_mean"]
            assert math.isclose(entry["mc_return_mean"], parts, abs_tol=1e-9)
    assert plain["evals"] == bias["evals"]  # same learning: the harness draws no training RNG
    assert 0 < bias["bias_time_s"] < bias["wall_time_s"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "bias"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"bias/bias_mean", "bias/bias_normalized_mean", "bias/min/bias_mean",
            "bias/bias_normalized_redq_mean"} <= tags  # fmt: skip
    if soft:
        assert {"bias/deterministic/bias_mean", "bias/deterministic/min/bias_mean"} <= tags


def test_evaluate_bias_json_from_replay_states_and_start_state_fallback(tmp_path):
    import evaluate

    keys = {
        "bias_mean", "bias_std", "bias_normalized_mean", "bias_normalized_std", "q_mean",
        "mc_return_mean", "n_states", "restored_states",
    }  # fmt: skip
    for env, restored in (("Hopper-v5", True), ("Pendulum-v1", False)):
        run, out = tmp_path / env, tmp_path / f"{env}.json"
        assert (
            train.main(tiny(run, "--env", env, "--total-steps", "150", "--eval-every", "150")) == 0
        )
        argv = [str(run), "--episodes", "1", "--bias", "--bias-states", "3", "--json", str(out)]
        assert evaluate.main(argv) == 0
        result = json.loads(out.read_text())
        assert keys <= set(result) and result["n_states"] == 3
        assert result["restored_states"] is restored and result["bias_target"] == "reward"
        assert math.isclose(
            result["bias_mean"], result["q_mean"] - result["mc_return_mean"], abs_tol=1e-6
        )
    # Pendulum's fallback (the last result) by hand: the start states of reset seeds 0, 1, 2
    # (evaluate's --seed 0), the greedy policy for H steps with gamma^H <= 1e-3, no time limit
    # before that
    agent = evaluate.load_agent(str(tmp_path / "Pendulum-v1"), None)[0]
    gamma = agent.cfg.gamma
    horizon = math.ceil(math.log(1e-3) / math.log(gamma))
    envs = [make_env("Pendulum-v1", max_episode_steps=horizon + 1) for _ in range(3)]
    obs = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    start = torch.as_tensor(obs)
    q = agent.q_value(start, torch.as_tensor(agent.act(obs, deterministic=True)))
    g = np.zeros(3)
    for t in range(horizon):  # Pendulum never terminates
        actions = agent.act(obs, deterministic=True)
        for i, env in enumerate(envs):
            obs[i], reward, *_ = env.step(actions[i])
            g[i] += gamma**t * reward
    assert result["mc_return_mean"] == pytest.approx(g.mean(), rel=1e-6)
    assert result["q_mean"] == pytest.approx(float(q.mean()), rel=1e-6)


def test_best_checkpoint_holds_the_best_evaluated_policy(tmp_path):
    import evaluate

    run = tmp_path / "best"
    args = ["--env", "Pendulum-v1", "--total-steps", "300", "--eval-every", "100"]
    assert train.main(tiny(run, *args)) == 0
    summary = json.loads((run / "summary.json").read_text())
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["counters"]["env_steps"] == summary["best_eval_env_steps"]
    assert "replay_file" not in best  # a policy to act with, not a run to resume
    # Re-evaluating it on the same seeds gives the recorded best return exactly.
    out = tmp_path / "best.json"
    argv = [str(run / "checkpoints" / "best.pt"), "--episodes", "1", "--seed", "100000"]
    assert evaluate.main([*argv, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["return_mean"] == summary["best_eval_return_mean"]


def test_stop_at_return_ends_at_the_first_good_enough_evaluation(tmp_path):
    run = tmp_path / "stop"
    args = ["--env", "Pendulum-v1", "--total-steps", "400", "--eval-every", "100"]
    assert train.main(tiny(run, *args, "--stop-at-return=-1e9")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 100 and len(summary["evals"]) == 1
    final = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    assert final["counters"]["env_steps"] == 100
    # The default never stops, and survives the YAML round trip of config.yaml as infinity.
    assert train.main(tiny(tmp_path / "full", *args)) == 0
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["env_steps"] == 400
    assert "stop_at_return: .inf" in (tmp_path / "full" / "config.yaml").read_text()
    # With a window of 3 the first three evaluations must pass together: it stops at the third.
    assert train.main(tiny(tmp_path / "w", *args, "--stop-at-return=-1e9", "--stop-window=3")) == 0
    assert json.loads((tmp_path / "w" / "summary.json").read_text())["env_steps"] == 300


def test_stop_window_compares_the_mean_of_the_last_evaluations():
    from training.trainer import reaches_stop

    def stops(returns, window, threshold=1000.0):
        return reaches_stop(returns, window, threshold)

    assert stops([1500, 400, 1000], 1)  # the latest alone: 1000 >= 1000
    assert not stops([1500, 400, 1000], 2)  # (400 + 1000) / 2 = 700
    assert not stops([1500, 400, 1000], 3)  # 2900 / 3 = 966.7
    assert stops([1500, 600, 1000], 3)  # 3100 / 3 = 1033.3
    assert not stops([2000], 2)  # fewer evaluations than the window: never
