"""Generated datasets: names, determinism, episode structure and restorable states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import train
from agents.buffer import ReplayBuffer
from core.errors import UserError
from datagen import generate
from datagen.__main__ import main as dataset_cli
from datagen.policies import export_policy, load_policy
from envs import make_env, set_sim_state
from envs.datasets import names, read_d4rl


def test_names_parse_and_unknown_names_are_user_errors():
    assert names.parse_name("halfcheetah-random-expert-5-v5") == (
        "HalfCheetah-v5",
        "random-expert-5",
    )
    assert names.parse_name("hopper-medium-replay-v5") == ("Hopper-v5", "medium-replay")
    for bad in ("hopper-random-v2", "ant-random-v5", "hopper-noisy-v5", "hopper"):
        with pytest.raises(UserError, match="unknown dataset"):
            names.parse_name(bad)


def test_make_is_deterministic_byte_for_byte(tmp_path):
    a = generate.make("hopper-random-v5", size=400, seed=3, root=tmp_path / "a")
    b = generate.make("hopper-random-v5", size=400, seed=3, root=tmp_path / "b")
    c = generate.make("hopper-random-v5", size=400, seed=4, root=tmp_path / "c")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_random_dataset_is_whole_episodes_with_restorable_states(tmp_path):
    data = read_d4rl(generate.make("hopper-random-v5", size=300, seed=0, root=tmp_path))
    assert len(data) == 300 and data.metadata["kind"] == "random"
    assert data.metadata["env_id"] == "Hopper-v5" and data.metadata["seed"] == 0
    # Every episode but the last ends by termination; the last is cut at the size limit.
    ends = np.flatnonzero(data.terminals | data.timeouts)
    assert ends[-1] == 299 and data.timeouts[299] and data.timeouts.sum() == 1
    # Within an episode, next_obs[i] == obs[i+1]; restoring qpos/qvel gives obs back.
    inside = np.setdiff1d(np.arange(299), ends)
    np.testing.assert_array_equal(data.next_observations[inside], data.observations[inside + 1])
    env = make_env("Hopper-v5")
    env.reset(seed=0)
    for i in (0, 57, 298):
        obs = set_sim_state(env, np.concatenate([data.qpos[i], data.qvel[i]]))
        np.testing.assert_allclose(obs, data.observations[i], rtol=1e-6, atol=1e-6)
    assert data.metadata["ref_min_score"] < 100  # a uniform-random Hopper falls fast


def test_cli_reports_missing_and_policy_kinds_in_one_line(tmp_path, capsys, monkeypatch):
    # No policies at all, whichever ones the package ships.
    monkeypatch.setenv("OGZOO_POLICIES", str(tmp_path / "no-policies"))
    root = ["--root", str(tmp_path / "data")]
    assert dataset_cli([*root, "info", "hopper-random-v5"]) == 2
    assert "make it with" in capsys.readouterr().err
    assert dataset_cli([*root, "make", "walker2d-expert-v5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no expert policy for walker2d" in err
    data = tmp_path / "data"  # nothing written by the failed commands
    assert not data.exists() or not any(data.iterdir())


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A tiny TQC run on Hopper exported as the medium policy, and with one actor weight
    perturbed as the expert policy: two policies, so a kind acting with the other one shows."""
    root = tmp_path_factory.mktemp("policies")
    run = root / "run"
    argv = [
        "--agent", "tqc", "--env", "Hopper-v5", "--total-steps", "120", "--eval-every", "120",
        "--eval-episodes", "1", "--progress", "off", "--run-dir", str(run),
        "--set", "learning_starts=64", "--set", "batch_size=32", "--set", "n_critics=2",
        "--set", "n_quantiles=5", "--set", "critic_hidden=[16]", "--set", "actor_hidden=[16]",
        "--set", "arch=simba",  # its observation normalization travels with the policy
    ]  # fmt: skip
    assert train.main(argv) == 0
    best = run / "checkpoints" / "best.pt"
    export_policy(best, "hopper-medium", root, episodes=3)  # medium-replay needs the run's actor
    ckpt = torch.load(best, weights_only=True)
    actor = ckpt["agent_state"]["actor"]
    first = next(iter(actor))
    actor[first] = actor[first] + 0.1
    torch.save(ckpt, root / "perturbed.pt")
    export_policy(root / "perturbed.pt", "hopper-expert", root, episodes=3)
    return root


def test_exported_policy_acts_like_the_checkpoint_and_records_its_return(shipped):
    from evaluate import load_agent

    policy, info = load_policy("hopper", "expert", shipped)
    meta = info["metadata"]
    agent, env, _, ckpt = load_agent(meta["source_checkpoint"], None)
    for key, value in ckpt["agent_state"]["actor"].items():
        assert torch.equal(policy.actor.state_dict()[key], value)
    assert meta["return_episodes"] == 3 and info["agent"] == "tqc"
    # The same actions as the checkpoint's agent on a few states (observation normalization
    # included): the mean action, and the sampled one from the same seed.
    states = np.random.default_rng(0).normal(0.0, 2.0, (8, *env.observation_space.shape))
    np.testing.assert_array_equal(policy.act(states, True), agent.act(states, True))
    sampled = []
    for actor in (policy, agent):
        with torch.random.fork_rng():
            torch.manual_seed(1)
            sampled.append(actor.act(states, False))
    np.testing.assert_array_equal(*sampled)
    # Its return, replayed with the checkpoint's agent as the module doc says it is measured:
    # sampled actions from torch seeded with return_seed, episode k from reset(return_seed + k).
    seed, returns = meta["return_seed"], []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for k in range(3):
            obs, _ = env.reset(seed=seed + k)
            done, total = False, 0.0
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.act(obs[None], False)[0])
                total, done = total + float(reward), terminated or truncated
            returns.append(total)
    assert meta["return_mean"] == pytest.approx(np.mean(returns), rel=1e-12)
    with pytest.raises(UserError, match="level"):
        export_policy(shipped / "run", "hopper-good", shipped)


def test_policy_kinds_mix_and_concatenate_as_specified(shipped, tmp_path):
    def make(name, size):
        return read_d4rl(generate.make(name, size=size, seed=0, root=tmp_path, policies=shipped))

    def replayed(observations, *policies):
        """The sampled actions of `policies` (each for its share of the observations, in order)
        from torch's RNG seeded as make seeds it (seed 0), one step at a time as collect acts."""
        share = len(observations) // len(policies)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            if len(policies) > 1:  # make loads the medium policy after seeding: its init draws
                load_policy("hopper", "medium", shipped)
            return np.stack([policies[i // share].act(obs[None], False)[0]
                             for i, obs in enumerate(observations)])  # fmt: skip

    medium, medium_info = load_policy("hopper", "medium", shipped)
    expert_policy, expert_info = load_policy("hopper", "expert", shipped)
    expert_return = expert_info["metadata"]["return_mean"]
    assert expert_return != medium_info["metadata"]["return_mean"]  # two policies (fixture)
    expert = make("hopper-expert-v5", 150)
    assert len(expert) == 150 and expert.metadata["ref_max_score"] == expert_return
    np.testing.assert_array_equal(expert.actions, replayed(expert.observations, expert_policy))
    both = make("hopper-medium-expert-v5", 100)
    assert len(both) == 200  # size medium + size expert, as D4RL's medium-expert doubles
    medium_data = make("hopper-medium-v5", 100)  # the first half, the same size and seed
    for name in ("observations", "actions", "rewards", "terminals", "timeouts", "qpos", "qvel"):
        np.testing.assert_array_equal(getattr(both, name)[:100], getattr(medium_data, name))
    np.testing.assert_array_equal(both.actions, replayed(both.observations, medium, expert_policy))
    mix = make("hopper-random-expert-10-v5", 500)
    n_expert = int(mix.metadata["expert_transitions"])
    assert 50 <= n_expert < 50 + 1000  # whole expert episodes until 10% of 500 is reached
    ends = np.flatnonzero(mix.terminals | mix.timeouts)
    assert n_expert - 1 in ends  # the expert part ends with a whole episode
    assert len(mix) == max(500, n_expert + 1)
    again = generate.make("hopper-random-expert-10-v5", size=500, seed=0, root=tmp_path / "again",
                          policies=shipped)  # fmt: skip
    assert again.read_bytes() == names.path_of("hopper-random-expert-10-v5", tmp_path).read_bytes()


def test_medium_replay_is_the_medium_runs_own_replay_buffer(shipped, tmp_path):
    data = read_d4rl(generate.make("hopper-medium-replay-v5", seed=0, root=tmp_path,
                                   policies=shipped))  # fmt: skip
    original = ReplayBuffer.load(next((shipped / "run" / "checkpoints").glob("replay-*.pt")))
    assert len(data) == len(original) == 120
    batch = original.transitions(np.arange(120))
    np.testing.assert_array_equal(data.observations, batch.obs.numpy())
    np.testing.assert_array_equal(data.actions, batch.actions.numpy())
    np.testing.assert_array_equal(data.terminals, batch.terminated.numpy().astype(bool))
    sim = batch.extras["sim_state"].numpy()
    np.testing.assert_array_equal(np.concatenate([data.qpos, data.qvel], 1), sim)
    assert data.timeouts[-1] or data.terminals[-1]  # the run's last episode is cut there
    # The same run's kept buffer (--replay-from) makes the same file byte for byte.
    kept = generate.make("hopper-medium-replay-v5", seed=0, root=tmp_path / "kept",
                         policies=shipped, replay_from=shipped / "run")  # fmt: skip
    assert kept.read_bytes() == names.path_of("hopper-medium-replay-v5", tmp_path).read_bytes()


def test_replay_from_refuses_a_run_that_did_not_train_the_medium_policy(shipped, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(shipped / "run" / "checkpoints", other / "checkpoints")
    final = torch.load(other / "checkpoints" / "final.pt", weights_only=True)
    first = next(iter(final["agent_state"]["actor"]))
    final["agent_state"]["actor"][first] = final["agent_state"]["actor"][first] + 1e-6
    torch.save(final, other / "checkpoints" / "final.pt")
    foreign = tmp_path / "foreign"
    (foreign / "checkpoints").mkdir(parents=True)
    torch.save({"counters": {}}, foreign / "checkpoints" / "final.pt")
    out = tmp_path / "data"
    for run, message in ((other, "not the shipped"), (tmp_path / "none", "no finished run"),
                         (foreign, "holds no actor")):  # fmt: skip
        with pytest.raises(UserError, match=message):
            generate.make("hopper-medium-replay-v5", seed=0, root=out, policies=shipped,
                          replay_from=run)  # fmt: skip
    with pytest.raises(UserError, match="for medium-replay datasets, not medium"):
        generate.make("hopper-medium-v5", root=out, policies=shipped, replay_from=other)
    assert not out.exists()  # nothing written


def test_train_makes_a_missing_ogzoo_dataset_once_on_first_use(tmp_path, monkeypatch):
    from envs.datasets.loading import load_dataset

    monkeypatch.setenv("OGZOO_DATASETS", str(tmp_path / "data"))
    made = []
    full_size_make = generate.make

    def small_make(name, root=None, **kwargs):
        made.append(name)
        return full_size_make(name, size=300, seed=0, root=root)

    monkeypatch.setattr(generate, "make", small_make)
    # envs/ only reads: a missing name is an error that names the command making it.
    with pytest.raises(UserError, match="python -m datagen make hopper-random-v5"):
        load_dataset("hopper-random-v5")
    assert made == []
    for run in ("first", "second"):
        argv = ["--agent", "td3_bc", "--dataset", "hopper-random-v5", "--total-steps", "10",
                "--eval-every", "10", "--eval-episodes", "1", "--progress", "off",
                "--run-dir", str(tmp_path / run)]  # fmt: skip
        assert train.main(argv) == 0
    assert made == ["hopper-random-v5"]  # made by the first run, read by the second
    assert len(read_d4rl(names.path_of("hopper-random-v5"))) == 300
