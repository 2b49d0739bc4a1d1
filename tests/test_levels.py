"""MuJoCo levels of physical parameters (envs/levels.py) and what the zoo does with them:
the level of every transition in the buffer, states restored in their level, the
generalization report and the bias on each side's levels, and one-line errors.

The draws are checked by hand: level L's scale is exp(log lo + u (log hi - log lo)) with u from
numpy's PCG64 seeded with (SALT, L), applied to the model fields named in the module doc.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
import train
from agents.buffer import ReplayBuffer
from envs import VecEnv, get_sim_state, make_env, set_sim_state
from envs.levels import (
    EXTRAPOLATION_BASE,
    INTERPOLATION_BASE,
    PARAMETERS,
    SALT,
    LevelSpec,
)
from harness.bias import BiasMeter, States, states_from_buffer

REPO = Path(__file__).resolve().parents[1]
ALL = ",".join(PARAMETERS)


def by_hand(level: int, low: float, high: float, index: int) -> float:
    u = np.random.default_rng([SALT, level]).random((len(PARAMETERS), 2))[index, 0]
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))


def test_scales_are_the_hand_computed_log_uniform_draws():
    spec = LevelSpec.parse("mass,friction", "mass=0.5:2,friction=0.8:1.25", 20, 0)
    for level in (0, 7, INTERPOLATION_BASE + 3):
        scales = spec.scales(level)
        assert scales["mass"] == pytest.approx(by_hand(level, 0.5, 2.0, 0), rel=1e-12)
        assert scales["friction"] == pytest.approx(by_hand(level, 0.8, 1.25, 1), rel=1e-12)
        assert scales["gravity"] == scales["damping"] == scales["actuator"] == 1.0
    # a level's mass does not depend on what else varies
    assert LevelSpec.parse("mass").scales(5)["mass"] == spec.scales(5)["mass"]


def test_interpolation_inside_and_extrapolation_outside_the_training_range():
    spec = LevelSpec.parse(ALL, "0.8:1.25", 10, 0)
    inside = [spec.scales(level) for level in spec.levels("interpolation", 200)]
    outside = [spec.scales(level) for level in spec.levels("extrapolation", 200)]
    for name in PARAMETERS:
        values = np.array([s[name] for s in inside])
        assert values.min() >= 0.8 and values.max() <= 1.25
        far = np.array([s[name] for s in outside])
        assert np.all((far < 0.8) | (far > 1.25))
        assert far.min() >= 0.8 / 1.5 and far.max() <= 1.25 * 1.5
        assert (far < 0.8).any() and (far > 1.25).any()  # both sides are drawn


def test_reset_applies_the_scales_to_the_model_fields():
    spec = LevelSpec.parse(ALL, "0.5:2", 5, 0)
    env = make_env("Hopper-v5", levels=spec)
    model = env.unwrapped.model
    nominal = {
        "mass": model.body_mass.copy(),
        "inertia": model.body_inertia.copy(),
        "friction": model.geom_friction.copy(),
        "gravity": model.opt.gravity.copy(),
        "damping": model.dof_damping.copy(),
        "gear": model.actuator_gear.copy(),
    }
    for level in (3, EXTRAPOLATION_BASE + 1, 2):  # and back: scales apply to the nominal
        _, info = env.reset(seed=0, options={"level": level})
        assert info["level"] == env.level == level
        s = spec.scales(level)
        np.testing.assert_allclose(model.body_mass, nominal["mass"] * s["mass"], rtol=1e-12)
        np.testing.assert_allclose(model.body_inertia, nominal["inertia"] * s["mass"], rtol=1e-12)
        np.testing.assert_allclose(model.geom_friction, nominal["friction"] * s["friction"])
        np.testing.assert_allclose(model.opt.gravity, nominal["gravity"] * s["gravity"])
        np.testing.assert_allclose(model.dof_damping, nominal["damping"] * s["damping"])
        np.testing.assert_allclose(model.actuator_gear, nominal["gear"] * s["actuator"])
    assert model.opt.gravity[2] == pytest.approx(-9.81 * spec.scales(2)["gravity"])


def test_same_id_same_parameters_in_another_process():
    code = (
        "import json; from envs.levels import LevelSpec; "
        "s = LevelSpec.parse('mass,friction,gravity', '0.5:2', 20, 0); "
        "print(json.dumps([s.scales(i) for i in (0, 19, 1000000, 2000005)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)  # fmt: skip
    here = LevelSpec.parse("mass,friction,gravity", "0.5:2", 20, 0)
    assert json.loads(out.stdout) == [here.scales(i) for i in (0, 19, 1000000, 2000005)]


def test_training_levels_never_include_a_held_out_id():
    spec = LevelSpec.parse("mass", "", 20, 30)
    env = make_env("Hopper-v5", levels=spec)
    drawn = {env.reset(seed=s)[1]["level"] for s in range(5)}
    drawn |= {env.reset()[1]["level"] for _ in range(300)}
    assert drawn == set(range(30, 50))  # all 20, nothing else
    for side in ("interpolation", "extrapolation"):
        assert not spec.contains(spec.levels(side, 1000)).any()
    unlimited = LevelSpec.parse("mass", "", 0, 0)  # a new level every episode
    assert unlimited.high == INTERPOLATION_BASE
    assert not unlimited.contains(unlimited.levels("interpolation", 10)).any()
    with pytest.raises(ValueError, match="held-out ids begin"):
        LevelSpec.parse("mass", "", 10, INTERPOLATION_BASE - 5)


def test_spec_round_trips_through_plain_values():
    spec = LevelSpec.parse("friction,mass", "mass=0.6:1.5", 7, 3)
    assert spec.context == ("mass", "friction")  # canonical order
    assert LevelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_vec_env_schedules_and_finished_levels():
    spec = LevelSpec.parse("mass", "", 4, 0)
    env = VecEnv("Hopper-v5", 2, 0, levels=spec, schedules=[[5, 6], [9]])
    env.reset(0)
    assert env.current_levels().tolist() == [5, 9]
    ended = []
    for _ in range(2000):
        step = env.step(np.ones((2, 3), dtype=np.float32))  # full torque: Hopper falls fast
        done = np.flatnonzero(step.terminated | step.truncated)
        ended += [(int(i), lv) for i, lv in zip(done, env.finished_levels)]
        if len([e for e in ended if e[0] == 0]) >= 3:
            break
    assert [lv for i, lv in ended if i == 0][:3] == [5, 6, 5]  # the schedule cycles
    assert {lv for i, lv in ended if i == 1} == {9}
    env.reset(0)  # a seeded reset restarts the schedules
    assert env.current_levels().tolist() == [5, 9]


@pytest.fixture(scope="module")
def level_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("levels") / "run"
    code = train.main([
        "--agent", "td3", "--env", "Hopper-v5", "--context", "mass,friction",
        "--train-levels", "3", "--start-level", "4", "--total-steps", "900",
        "--eval-every", "300", "--gen-every", "600", "--eval-episodes", "2",
        "--bias-every", "900", "--bias-states", "5",
        "--set", "learning_starts=200", "--set", "batch_size=32",
        "--set", "actor_hidden=[32,32]", "--set", "critic_hidden=[32,32]",
        "--progress", "off", "--run-dir", str(run),
    ])  # fmt: skip
    assert code == 0
    return run


def test_the_buffer_stores_each_transitions_level(level_run):
    buffer = ReplayBuffer.load(next((level_run / "checkpoints").glob("replay-*.pt")))
    batch = buffer.transitions(np.arange(len(buffer)))
    levels = batch.extras["level"].numpy()
    assert len(levels) == 900
    # one level per episode: it changes only right after an episode ended
    ends = (batch.terminated + batch.truncated).numpy() > 0
    changes = np.flatnonzero(levels[1:] != levels[:-1])
    assert len(changes) > 0 and np.all(ends[changes])
    # the one env, reset with seed 0, draws episode k's level as the k-th integer in [4, 7)
    # of PCG64 seeded (SALT, 0); ~80 short episodes of an untrained Hopper see all three
    starts = np.r_[0, np.flatnonzero(ends[:-1]) + 1]
    rng = np.random.default_rng([SALT, 0])
    drawn = [int(rng.integers(4, 7)) for _ in starts]
    assert levels[starts].tolist() == drawn and len(starts) > 50
    assert set(levels.tolist()) == {4, 5, 6}


def test_restoring_a_state_in_its_level_reproduces_the_next_obs(level_run):
    buffer = ReplayBuffer.load(next((level_run / "checkpoints").glob("replay-*.pt")))
    spec = LevelSpec.parse("mass,friction", "", 3, 4)
    env = make_env("Hopper-v5", levels=spec)
    idx = np.arange(20, 900, 97)
    batch = buffer.transitions(idx)
    for j in range(len(idx)):
        level = int(batch.extras["level"][j])
        state = batch.extras["sim_state"][j].numpy()
        action = batch.actions[j].numpy()
        env.reset(seed=0, options={"level": level})
        np.testing.assert_allclose(set_sim_state(env, state), batch.obs[j].numpy(), rtol=1e-5)
        next_obs = env.step(action)[0]
        np.testing.assert_allclose(next_obs, batch.next_obs[j].numpy(), rtol=1e-5, atol=1e-6)
        other = next(lv for lv in (4, 5, 6) if lv != level)  # another level's physics differ
        env.reset(seed=0, options={"level": other})
        set_sim_state(env, state)
        assert not np.allclose(env.step(action)[0], batch.next_obs[j].numpy(), atol=1e-6)
    states = states_from_buffer(buffer, 5, seed=1)
    assert states.levels is not None and set(states.levels.tolist()) <= {4, 5, 6}


def test_evaluations_report_held_out_levels_every_gen_every(level_run):
    summary = json.loads((level_run / "summary.json").read_text())
    evals = summary["evals"]
    assert [e["env_steps"] for e in evals] == [300, 600, 900]
    held = ["test_return_mean" in e for e in evals]
    assert held == [False, True, True]  # the one at 600, and the last
    for e in evals[1:]:
        assert e["gap"] == pytest.approx(e["return_mean"] - e["test_return_mean"])
        assert e["gap_extrapolation"] == pytest.approx(
            e["return_mean"] - e["extrapolation_return_mean"]
        )
    # the reports again under their own names: summary.json's "generalization" (and gen/*)
    gen = summary["generalization"]
    assert [g["env_steps"] for g in gen] == [600, 900]
    for g, e in zip(gen, evals[1:]):
        assert g["train_return_mean"] == e["return_mean"]
        assert (g["test_return_mean"], g["extrapolation_return_mean"]) == (
            e["test_return_mean"], e["extrapolation_return_mean"])  # fmt: skip
        assert (g["gap"], g["gap_extrapolation"]) == (e["gap"], e["gap_extrapolation"])


def test_evaluate_gives_the_report_with_bias_per_side(level_run, tmp_path, monkeypatch):
    measured = []  # (levels of the states, result) of every measurement, in order
    measure = BiasMeter.measure

    def recording(meter, agent, states):
        measured.append((states.levels.tolist(), measure(meter, agent, states)))
        return measured[-1][1]

    monkeypatch.setattr(BiasMeter, "measure", recording)
    out = tmp_path / "report.json"
    assert evaluate.main([str(level_run), "--episodes", "3", "--bias", "--bias-states", "4",
                          "--json", str(out)]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["train_levels"] == [4, 5, 6]
    assert report["test_levels"] == [INTERPOLATION_BASE + k for k in range(3)]
    assert report["extrapolation_levels"] == [EXTRAPOLATION_BASE + k for k in range(3)]
    assert report["test_levels_in_train"] == 0 and report["extrapolation_levels_in_train"] == 0
    assert report["n_train_levels"] == 3 and report["train_split"] == [4, 7]
    assert report["gap"] == pytest.approx(report["train_return_mean"] - report["test_return_mean"])
    assert set(report["bias"]) == {"train", "test", "extrapolation"}
    for side in report["bias"].values():
        assert side["n_states"] == 4 and side["restored_states"] is True
    # each side measured on states of its own 3 evaluation levels, and reported as its own
    own = {"train": {4, 5, 6}, "test": {INTERPOLATION_BASE + k for k in range(3)},
           "extrapolation": {EXTRAPOLATION_BASE + k for k in range(3)}}  # fmt: skip
    assert len(measured) == 3
    for (levels, result), side in zip(measured, ("train", "test", "extrapolation")):
        assert len(levels) == 4 and set(levels) <= own[side], (side, levels)
        assert report["bias"][side]["mc_return_mean"] == result["mc_return_mean"]
        assert report["bias"][side]["q_mean"] == result["q_mean"]
    assert report["levels"]["context"] == ["mass", "friction"]


class ZeroBins:
    """A greedy agent over 3 bins per action dimension that always picks bin 0."""

    bins = 3

    def act(self, obs, deterministic):
        return np.zeros((len(obs), 3), dtype=np.int64)


def test_level_evaluations_play_epsilon_greedy_with_the_runs_eval_epsilon():
    from training.levels import LevelEvaluation

    spec = LevelSpec.parse("mass", "", 2, 0)
    plain = LevelEvaluation("Hopper-v5", 3, spec, 4)
    greedy = [plain.train_side(ZeroBins(), 1), plain.report(ZeroBins(), 1)]
    plain.close()
    noisy = LevelEvaluation("Hopper-v5", 3, spec, 4, epsilon=1.0)
    runs = [noisy.report(ZeroBins(), 1) for _ in range(2)]
    side = noisy.train_side(ZeroBins(), 1)
    noisy.close()
    assert greedy[1]["deterministic"] is True and greedy[1]["eval_epsilon"] == 0.0
    assert runs[0]["deterministic"] is False and runs[0]["eval_epsilon"] == 1.0
    # every action random: the episodes are not the constant greedy ones, and the same seed
    # replays the same random actions (harness.evaluation.sampling_rng)
    assert runs[0]["train_returns"] != greedy[1]["train_returns"]
    assert side["return_mean"] != greedy[0]["return_mean"]
    for key in ("train_returns", "test_returns", "extrapolation_returns"):
        assert runs[0][key] == runs[1][key]
    assert side["return_mean"] == pytest.approx(np.mean(runs[0]["train_returns"]))


def test_bias_on_a_level_state_uses_that_levels_physics():
    """The meter's truth G from a restored state equals a rollout by hand in that level."""
    spec = LevelSpec.parse("mass,gravity", "0.5:2", 2, 0)

    class Still:  # zero torque: the hopper falls; G depends on mass and gravity only
        device = torch.device("cpu")

        def act(self, obs, deterministic):
            return np.zeros((len(obs), 3), dtype=np.float32)

        def q_value(self, obs, actions):
            return torch.zeros(len(obs))

    def fall(env) -> float:
        g, discount, done = 0.0, 1.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(np.zeros(3, dtype=np.float32))
            g += discount * reward
            discount *= 0.99
            done = terminated or truncated
        return g

    env = make_env("Hopper-v5", levels=spec)
    # the meter resets with the state's seed 3, which alone draws level 1 (PCG64 seeded
    # (SALT, 3)): the state is taken in level 0, so a meter that lost the level plays level 1
    assert env.reset(seed=3)[1]["level"] == 1
    obs, _ = env.reset(seed=3, options={"level": 0})
    state = get_sim_state(env)
    g0 = fall(env)
    env.reset(seed=3, options={"level": 1})
    set_sim_state(env, state)
    g1 = fall(env)
    assert g0 != pytest.approx(g1, rel=1e-6)  # the levels' physics differ
    meter = BiasMeter(lambda limit: make_env("Hopper-v5", max_episode_steps=limit, levels=spec),
                      0.99)  # fmt: skip
    states = States(obs=obs[None] * 0, sim_states=state[None], reset_seeds=np.array([3]),
                    levels=np.array([0]))  # fmt: skip
    result = meter.measure(Still(), states)
    assert result["mc_return_mean"] == pytest.approx(g0, rel=1e-9)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--context", "mass,wind"], "unknown context parameter 'wind'"),
        (["--context", "mass", "--context-range", "1:1"], "empty or not positive"),
        (["--context", "mass", "--context-range", "2:0.5"], "empty or not positive"),
        (["--context", "mass", "--context-range", "big"], "must be LOW:HIGH"),
        (["--context", "mass", "--context-range", "friction=0.5:2"], "does not vary"),
        (["--context", "mass", "--train-levels", "-3"], "train_levels must be"),
        (["--context", "mass", "--start-level", "-1"], "start_level must be"),
        (["--train-levels", "20"], "need levels"),
        (["--context", "mass", "--gen-every", "0"], "gen_every"),
        (["--context", "mass", "--env", "Pendulum-v1"], "need a MuJoCo env"),
    ],
)
def test_bad_level_input_is_one_line(flags, message, tmp_path, capsys):
    run = tmp_path / "run"
    code = train.main(["--agent", "td3", "--env", "Hopper-v5", "--total-steps", "100",
                       "--run-dir", str(run), "--progress", "off", *flags])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not run.exists()


# ---- offline: datasets made across levels ---------------------------------------------------
@pytest.fixture(scope="module")
def level_dataset(tmp_path_factory) -> Path:
    from datagen import generate

    spec = LevelSpec.parse("mass,friction", "", 5, 0)
    return generate.make("hopper-random-v5", size=800, seed=2,
                         root=tmp_path_factory.mktemp("data"), levels=spec)  # fmt: skip


def test_a_levels_tag_in_a_dataset_name_is_its_spec(tmp_path):
    from datagen import generate
    from envs.datasets.names import is_ogzoo_name, level_tag, split_levels

    spec = LevelSpec.parse("friction,mass", "mass=0.8:1.25", 7, 3)
    name = f"hopper-random-v5-{level_tag(spec)}"
    assert name == "hopper-random-v5-levels7-mass-friction-from3-range0.8:1.25_0.5:2"
    assert split_levels(name) == ("hopper-random-v5", spec) and is_ogzoo_name(name)
    assert split_levels("hopper-random-v5") == ("hopper-random-v5", None)
    assert not is_ogzoo_name("hopper-random-v5-levels7-wind")
    path = generate.make(name, size=50, seed=0, root=tmp_path)  # the name alone makes it
    assert path == tmp_path / f"{name}.hdf5"


def test_a_dataset_made_across_levels_stores_each_transitions_level(level_dataset):
    from envs.datasets.d4rl import read_d4rl

    assert level_dataset.name == "hopper-random-v5-levels5-mass-friction.hdf5"
    data = read_d4rl(level_dataset)
    spec = LevelSpec.from_dict(json.loads(data.metadata["levels"]))
    assert spec == LevelSpec.parse("mass,friction", "", 5, 0)
    bounds = data.episode_bounds()
    env = make_env("Hopper-v5", levels=spec)
    for k, (start, stop) in enumerate(bounds[:6]):
        assert len(set(data.levels[start:stop].tolist())) == 1  # one level per episode
        # episode k is the seeded reset seed + k, whose draw picks its level
        assert data.levels[start] == env.reset(seed=2 + k)[1]["level"]
    buffer = ReplayBuffer.from_dataset(data)
    j = int(bounds[2][0]) + 3
    batch = buffer.transitions(np.array([j]))
    assert int(batch.extras["level"][0]) == data.levels[j]
    env.reset(seed=0, options={"level": int(data.levels[j])})
    set_sim_state(env, batch.extras["sim_state"][0].numpy())
    np.testing.assert_allclose(env.step(batch.actions[0].numpy())[0],
                               data.next_observations[j], rtol=1e-5, atol=1e-6)  # fmt: skip


def test_offline_training_on_levels_reports_held_out_levels_and_resumes(level_dataset, tmp_path):
    run = tmp_path / "offline"
    common = ["--progress", "off"]
    assert train.main(["--agent", "td3_bc", "--dataset", str(level_dataset),
                       "--total-steps", "200", "--eval-every", "100", "--gen-every", "200",
                       "--eval-episodes", "2", "--set", "batch_size=32",
                       "--run-dir", str(run), *common]) == 0  # fmt: skip
    config = (run / "config.yaml").read_text()
    assert "context: mass,friction" in config and "train_levels: 5" in config
    assert train.main(["--resume", str(run), "--total-steps", "300", *common]) == 0
    evals = json.loads((run / "summary.json").read_text())["evals"]
    assert [("test_return_mean" in e) for e in evals] == [False, True, True]
    out = tmp_path / "report.json"
    assert evaluate.main([str(run), "--episodes", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["train_levels"] == [0, 1] and report["n_train_levels"] == 5


def test_context_on_a_plain_dataset_is_one_line(tmp_path, capsys):
    from datagen import generate

    plain = generate.make("hopper-random-v5", size=300, seed=0, root=tmp_path)
    code = train.main(["--agent", "td3_bc", "--dataset", str(plain), "--context", "mass",
                       "--run-dir", str(tmp_path / "run"), "--progress", "off"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "was not made across levels" in err[0]
