"""Typed config overrides and the environment layer (rescaling, vector env, sim state)."""

from pathlib import Path

import numpy as np
import pytest

from agents import get_agent_module
from agents.td3 import Config
from core.config import RunConfig, apply_overrides, field_docs, parse_set
from core.errors import UserError
from envs import VecEnv, get_sim_state, make_env, set_sim_state
from envs.procgen import is_procgen_id, procgen_spaces


def test_overrides_are_type_checked_and_converted():
    cfg = apply_overrides(
        Config(), parse_set(["actor_lr=1e-3", "batch_size=128", "critic_hidden=[64,32]"]), "td3"
    )
    assert cfg.actor_lr == 1e-3 and isinstance(cfg.actor_lr, float)
    assert cfg.batch_size == 128 and cfg.critic_hidden == [64, 32]
    # YAML reads 25e3 as a string and 25000.0 as a float: both are honest integers.
    assert apply_overrides(Config(), {"learning_starts": "25e3"}, "td3").learning_starts == 25000
    assert apply_overrides(Config(), {"learning_starts": 2.5e4}, "td3").learning_starts == 25000


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"no_such_key": 1}, "unknown td3 key 'no_such_key'"),
        ({"batch_size": "abc"}, "'batch_size' expects an integer"),
        ({"batch_size": 2.5}, "'batch_size' expects an integer"),
        ({"batch_size": True}, "'batch_size' expects an integer"),
        ({"actor_lr": "fast"}, "'actor_lr' expects a number"),
        ({"critic_hidden": 5}, "'critic_hidden' expects a list"),
        ({"compile": "maybe"}, "'compile' expects true/false"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(Config(), overrides, "td3")


def test_set_requires_key_value():
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_set(["batch_size"])


def test_every_config_field_is_documented():
    from agents import sac, tqc

    for cls in (Config, RunConfig, sac.Config, tqc.Config):
        docs = field_docs(cls)
        missing = [f for f in cls.__dataclass_fields__ if not docs.get(f)]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_box_actions_are_rescaled_to_unit_interval():
    env = make_env("Pendulum-v1")  # native torque bounds are [-2, 2]
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    env.reset(seed=0)
    env.unwrapped.state = np.array([0.0, 0.0])
    env.step(np.array([1.0], dtype=np.float32))
    assert env.unwrapped.last_u == pytest.approx(2.0)  # +1 maps to the native upper bound


def test_make_env_seed_fixes_the_first_episode():
    a, b, c = make_env("Hopper-v5", seed=4), make_env("Hopper-v5", seed=4), make_env("Hopper-v5")
    a_obs = a.unwrapped._get_obs()
    np.testing.assert_array_equal(a_obs, b.unwrapped._get_obs())
    c.reset(seed=5)
    assert not np.array_equal(a_obs, c.unwrapped._get_obs())
    np.testing.assert_array_equal(a.action_space.sample(), b.action_space.sample())


def test_unknown_env_id_is_a_value_error():
    with pytest.raises(ValueError, match="unknown environment id 'NoSuchEnv-v0'"):
        make_env("NoSuchEnv-v0")


def test_vec_env_keeps_final_obs_and_seeds_each_env():
    envs = VecEnv("Pendulum-v1", num_envs=2, seed=3)
    obs = envs.reset()
    again = VecEnv("Pendulum-v1", num_envs=2, seed=3).reset()
    np.testing.assert_array_equal(obs, again)  # seeded
    assert not np.array_equal(obs[0], obs[1])  # env i gets seed + i
    actions = np.zeros((2, 1), dtype=np.float32)
    for _ in range(200):  # Pendulum's time limit is 200 steps
        step = envs.step(actions)
    assert step.truncated.all() and not step.terminated.any()
    assert len(step.finished) == 2 and all(length == 200 for _, length in step.finished)
    # next_obs is the final observation; obs is the first of the new episode. A twin single env
    # (seeded seed + i, same actions) says what each should be: its last step's observation,
    # then its next reset, which is unseeded (the env continues its own RNG).
    for i in range(2):
        twin = make_env("Pendulum-v1")
        twin.reset(seed=3 + i)
        total = 0.0
        for _ in range(200):
            last, reward, *_ = twin.step(actions[i])
            total += reward
        first, _ = twin.reset()
        np.testing.assert_array_equal(step.next_obs[i], last)
        np.testing.assert_array_equal(step.obs[i], first)
        assert step.finished[i][0] == pytest.approx(total, rel=1e-12)


def test_mujoco_state_restore_reproduces_the_next_observation():
    env = make_env("Hopper-v5")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        env.step(rng.uniform(-1, 1, 3).astype(np.float32))
    state = get_sim_state(env)
    action = rng.uniform(-1, 1, 3).astype(np.float32)
    expected, reward, *_ = env.step(action)
    for _ in range(30):  # wander elsewhere, then come back
        env.step(rng.uniform(-1, 1, 3).astype(np.float32))
    set_sim_state(env, state)
    got, reward2, *_ = env.step(action)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    assert reward2 == pytest.approx(reward)
    assert get_sim_state(make_env("Pendulum-v1")) is None


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    "preset",
    sorted(str(p) for p in CONFIGS.rglob("*.yaml") if p.parent.name != "sweeps"),
)
def test_every_preset_resolves_and_builds_its_agent(preset):
    import train
    from training import launch

    run_cfg, agent_cfg = launch.resolve_config(
        train.build_parser().parse_args(["--config", preset])
    )
    if is_procgen_id(run_cfg.env):  # every game's spaces, known without procgen itself
        obs_space, act_space = procgen_spaces()
        obs = obs_space.sample()
    else:
        env = make_env(run_cfg.env, bins=run_cfg.bins)
        obs_space, act_space = env.observation_space, env.action_space
        obs, _ = env.reset(seed=0)
    agent = get_agent_module(run_cfg.agent).Agent(agent_cfg, obs_space, act_space)
    assert agent.act(obs[None], deterministic=True).shape == (1, *act_space.shape)
    if "-cpu" in Path(preset).stem:  # the shrunk presets say so in their first line
        assert Path(preset).read_text().startswith("# -cpu PRESET")


@pytest.mark.parametrize("spec", sorted(str(p) for p in (CONFIGS / "sweeps").glob("*.yaml")))
def test_every_sweep_spec_loads_and_its_points_resolve(spec):
    """configs/sweeps/ holds harness.sweep specs: each point's train.py arguments resolve."""
    import train
    from harness.sweep import load_spec
    from training import launch

    sweep = load_spec(spec)
    for point in sweep.points()[:: max(1, len(sweep.points()) // 4)]:
        args = train.build_parser().parse_args([*sweep.argv(point), "--device", "cpu"])
        run_cfg, agent_cfg = launch.resolve_config(args)
        values = dict(point.values)
        assert run_cfg.utd == float(values["utd"]) and run_cfg.seed == point.seed
        assert agent_cfg.batch_size == values.get("batch_size", agent_cfg.batch_size)


def test_describe_indents_every_line_of_a_multi_line_field_doc():
    from dataclasses import dataclass

    from core import config as cfglib

    @dataclass
    class Cfg:
        steps: int = 3
        """First line of the doc,
        and its second line."""

    assert cfglib.describe(Cfg()) == (
        "  steps (int, default 3)\n      First line of the doc,\n      and its second line."
    )


def test_which_tasks_can_terminate():
    from envs import can_terminate

    assert not any(map(can_terminate, ["HalfCheetah-v5", "Pendulum-v1", "Swimmer-v5"]))
    assert all(map(can_terminate, ["Hopper-v5", "Walker2d-v5", "Ant-v5", "CartPole-v1"]))
    # What the ids claim, checked on the envs: random HalfCheetah steps never terminate, while
    # Hopper's falls end in termination.
    for env_id, ends in (("HalfCheetah-v5", False), ("Hopper-v5", True)):
        env, rng, terminated = make_env(env_id, seed=0), np.random.default_rng(0), False
        for _ in range(300):
            *_, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
            terminated |= term
            if term or trunc:
                env.reset()
        assert terminated is ends


@pytest.mark.parametrize(
    ("argv", "critics"),
    [
        (["--agent", "sac", "--env", "HalfCheetah-v5"], 1),  # SimBa: no clipped double Q
        (["--agent", "sac", "--env", "Hopper-v5"], 2),  # an episodic task keeps it
        (["--agent", "sac", "--env", "HalfCheetah-v5", "--arch", "mlp"], 2),  # classic SAC
        (["--agent", "sac", "--env", "HalfCheetah-v5", "--set", "n_critics=2"], 2),  # asked
        (["--agent", "tqc", "--env", "HalfCheetah-v5"], 5),  # TQC's own count
        (
            ["--config", str(Path(__file__).resolve().parents[1] / "configs/sac/halfcheetah.yaml")],
            1,
        ),
    ],
)
def test_simba_sac_takes_one_critic_where_the_task_cannot_terminate(argv, critics):
    import train
    from training import launch

    _, agent_cfg = launch.resolve_config(train.build_parser().parse_args(argv))
    assert agent_cfg.n_critics == critics


def resolved(argv):
    import train
    from core.config import to_dict
    from training import launch

    run_cfg, agent_cfg = launch.resolve_config(train.build_parser().parse_args(argv))
    return {**to_dict(run_cfg), **to_dict(agent_cfg)}


def test_the_value_based_agent_on_procgen_is_the_pixel_agent_of_its_preset():
    """`train.py --agent revalued --env procgen:coinrun` needs no preset: it gets the IMPALA
    encoder and the preset's agent and loop settings; only the budget and the evaluations'
    cadence are the preset's own."""
    plain = resolved(["--agent", "revalued", "--env", "procgen:coinrun", "--train-levels", "200"])
    preset = resolved(["--config", str(CONFIGS / "revalued/procgen-coinrun-cpu.yaml"),
                       "--train-levels", "200"])  # fmt: skip
    assert (plain["encoder"], plain["n_members"], plain["num_envs"]) == ("impala", 5, 8)
    differ = {k for k in preset if preset[k] != plain[k]}
    assert differ == {"total_steps", "eval_every"}
    assert resolved(["--agent", "revalued", "--env", "Hopper-v5", "--bins", "3"])["encoder"] == (
        "simba"
    )  # vector observations keep the class defaults
    # flags still win over the Procgen defaults
    flags = ["--agent", "revalued", "--env", "procgen:coinrun", "--num-envs", "2",
             "--set", "n_members=3"]  # fmt: skip
    assert (resolved(flags)["num_envs"], resolved(flags)["n_members"]) == (2, 3)


def test_ppo_on_procgen_steps_the_paper_s_64_envs_unless_told():
    assert resolved(["--agent", "ppo", "--env", "procgen:coinrun"])["num_envs"] == 64
    assert resolved(["--agent", "ppo", "--env", "procgen:coinrun", "--num-envs", "16"])[
        "num_envs"] == 16  # fmt: skip
    cartpole = ["--agent", "ppo", "--env", "CartPole-v1", "--set", "encoder=mlp"]
    assert resolved(cartpole)["num_envs"] == 1
