"""envs/procgen.py: level splits, observations, episode ends, sim states, bad input.

The input checks run without procgen; everything that steps a game skips when the procgen2
wheel is not installed (it exists for Python 3.11 only; `make test` installs it there).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from core.errors import UserError
from envs.procgen import MAX_SEED, ProcgenVecEnv, procgen_fix, state_header
from harness.bias import States, horizon_for, measure_restored_vector

try:
    import procgen  # noqa: F401

    HAVE_PROCGEN = True
except ImportError:
    HAVE_PROCGEN = False

needs_procgen = pytest.mark.skipif(
    not HAVE_PROCGEN, reason="procgen not installed (make test installs procgen2 on Python 3.11)"
)


def run_random(env: ProcgenVecEnv, steps: int, seed: int = 0):
    """Step `env` with uniform random actions; yield (step result, current levels)."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        result = env.step(rng.integers(0, env.action_space.n, env.num_envs))
        yield result, env.level_seeds()


@needs_procgen
def test_training_levels_stay_in_their_range():
    # leaper with random actions ends an episode every ~15 steps: many new levels drawn
    env = ProcgenVecEnv("procgen:leaper", 8, seed=0, num_levels=5, start_level=50)
    assert env.split.contains(env.level_seeds()).all()
    seen, ends = set(env.level_seeds().tolist()), 0
    for result, levels in run_random(env, 300):
        assert ((levels >= 50) & (levels < 55)).all(), levels
        assert all(50 <= level < 55 for level in env.finished_levels)
        assert len(env.finished_levels) == len(result.finished)
        seen |= set(levels.tolist())
        ends += len(result.finished)
    env.close()
    assert ends > 20 and len(seen) > 1  # the check saw many episodes and levels


@needs_procgen
def test_held_out_levels_avoid_the_training_range():
    # the default: every seed above the training range [1000, 1005)
    env = ProcgenVecEnv.held_out("procgen:leaper", 8, seed=0, train_levels=5, train_start=1000)
    assert (env.split.low, env.split.high) == (1005, MAX_SEED)
    for _, levels in run_random(env, 150):
        assert (levels >= 1005).all(), levels
        assert all(level >= 1005 for level in env.finished_levels)
    env.close()
    # a disjoint finite range below the training levels
    env = ProcgenVecEnv.held_out(
        "procgen:leaper", 8, seed=0, train_levels=5, train_start=10, start_level=0, num_levels=10
    )
    for _, levels in run_random(env, 150):
        assert ((levels >= 0) & (levels < 10)).all(), levels
    env.close()
    # the protocol's exact stream: num_levels=0, which Procgen draws from all of [0, 2^31 - 1)
    env = ProcgenVecEnv.held_out("procgen:leaper", 4, seed=0, full_stream=True)
    assert (env.split.num_levels, env.split.low, env.split.high) == (0, 0, MAX_SEED)
    env.close()


@needs_procgen
def test_observations_and_spaces():
    env = ProcgenVecEnv("procgen:coinrun", 3, seed=1)
    assert env.split.num_levels == 200 and env.split.start_level == 0  # easy-mode default
    assert env.observation_space.shape == (64, 64, 3)
    assert env.observation_space.dtype == np.uint8 and env.action_space.n == 15
    obs = env.reset()
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
    result = env.step(np.array([1, 4, 7]))
    for frames in (result.obs, result.next_obs):
        assert frames.shape == (3, 64, 64, 3) and frames.dtype == np.uint8
    assert result.rewards.dtype == np.float32 and result.rewards.shape == (3,)
    assert result.terminated.dtype == bool and result.truncated.dtype == bool
    env.close()
    assert ProcgenVecEnv("procgen:coinrun", 1, 0, mode="hard").split.num_levels == 500


@needs_procgen
def test_same_seed_same_levels_and_frames():
    runs = []
    for _ in range(2):
        env = ProcgenVecEnv("procgen:coinrun", 4, seed=7, num_levels=50)
        first = env.level_seeds()
        frames = [r.obs for r, _ in run_random(env, 20, seed=3)]
        runs.append((first, np.stack(frames)))
        env.close()
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@needs_procgen
def test_the_number_of_native_threads_does_not_change_the_episodes():
    from core.config import RunConfig
    from training.procgen import procgen_envs

    runs = []
    for threads in (0, 3):  # the calling thread; three stepping threads
        cfg = RunConfig(env="procgen:starpilot", train_levels=10, env_threads=threads)
        env = procgen_envs(cfg, False, 6, seed=2)
        assert env.num_threads == threads
        steps = list(run_random(env, 120, seed=5))
        runs.append([(r.obs, r.rewards, r.terminated, levels) for r, levels in steps])
        env.close()
    for a, b in zip(*runs):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert any(r[2].any() for r in runs[0])  # episodes ended (and levels changed) meanwhile


@needs_procgen
def test_timeout_is_truncation_and_game_ends_are_terminations():
    # maze's timeout is 500 steps; doing nothing (action 4) never reaches the cheese
    env = ProcgenVecEnv("procgen:maze", 4, seed=0, num_levels=20)
    assert env.timeout == 500
    for t in range(1, 501):
        result = env.step(np.full(4, 4))
        if t < 500:
            assert not (result.terminated | result.truncated).any()
    assert result.truncated.all() and not result.terminated.any()
    assert [length for _, length in result.finished] == [500] * 4
    assert [ret for ret, _ in result.finished] == [0.0] * 4
    env.close()
    # leaper's random episodes end by death (or success) well before its 500-step timeout
    env = ProcgenVecEnv("procgen:leaper", 8, seed=0, num_levels=20)
    ends = 0
    for result, _ in run_random(env, 100):
        assert not result.truncated.any()
        ended = np.flatnonzero(result.terminated)
        assert len(ended) == len(result.finished)
        assert all(length < env.timeout for _, length in result.finished)
        ends += len(ended)
    assert ends > 5
    assert ProcgenVecEnv("procgen:coinrun", 1, 0).timeout == 1000  # the default timeout
    env.close()


@needs_procgen
def test_state_header_reads_the_game_level_and_step_counter():
    env = ProcgenVecEnv("procgen:coinrun", 2, seed=0, num_levels=10, start_level=30)
    for _ in range(3):
        env.step(np.array([4, 4]))
    header = state_header(env._env.callmethod("get_state")[0])
    assert header["version"] == 0 and header["game"] == "coinrun"
    assert (header["seed_low"], header["seed_high"]) == (30, 40)
    assert header["level_seed"] == env.level_seeds()[0] and header["cur_time"] == 3
    env.close()


@needs_procgen
def test_sim_state_round_trip():
    # leaper ends an episode every ~15 random steps: the restored rollout crosses level ends
    env = ProcgenVecEnv("procgen:leaper", 4, seed=2, num_levels=10)
    rng = np.random.default_rng(0)
    for _ in range(7):
        frames = env.step(rng.integers(0, 15, 4)).obs
    states = env.sim_states()
    assert len(states) == 4 and all(isinstance(s, bytes) for s in states)
    actions = rng.integers(0, 15, (40, 4))

    def rollout():
        steps = [env.step(a) for a in actions]
        return (
            np.stack([s.obs for s in steps]),
            np.stack([s.rewards for s in steps]),
            np.stack([s.terminated | s.truncated for s in steps]),
            [s.finished for s in steps],
            env.level_seeds(),
        )

    first = rollout()
    assert sum(map(len, first[3])) > 0  # episodes ended, counters restored with the state
    np.testing.assert_array_equal(env.set_sim_states(states), frames)
    second = rollout()
    for a, b in zip(first[:3], second[:3]):
        np.testing.assert_array_equal(a, b)
    assert first[3] == second[3]  # (return, length) of each ended episode
    np.testing.assert_array_equal(first[4], second[4])
    other = ProcgenVecEnv("procgen:maze", 4, seed=2)
    with pytest.raises(ValueError, match="not a sim state of a leaper"):
        env.set_sim_states(other.sim_states())
    with pytest.raises(ValueError, match="expected 4 sim states"):
        env.set_sim_states(states[:2])
    other.close()
    env.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"env_id": "coinrun"}, "unknown Procgen env id"),
        ({"env_id": "procgen:pong"}, "unknown Procgen env id"),
        ({"mode": "extreme"}, "mode must be easy or hard"),
        ({"mode": "Easy"}, "mode must be easy or hard"),
        ({"start_level": -1}, "start_level must be an integer >= 0"),
        ({"num_levels": -5}, "num_levels must be an integer >= 0"),
        ({"num_levels": 2.5}, "num_levels must be an integer >= 0"),
        ({"start_level": MAX_SEED - 10, "num_levels": 11}, "pass the largest level seed"),
        ({"num_envs": 0}, "num_envs must be >= 1"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, message):
    args = {"env_id": "procgen:coinrun", "num_envs": 2, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message) as caught:
        ProcgenVecEnv(**args)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"train_levels": -1}, "num_levels must be an integer >= 0"),
        ({"start_level": 100, "num_levels": 200}, "overlap the training levels"),
        ({"start_level": 0, "num_levels": 1}, "overlap the training levels"),
        ({"mode": "memory"}, "mode must be easy or hard"),
    ],
)
def test_bad_held_out_splits_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as caught:
        ProcgenVecEnv.held_out("procgen:coinrun", 2, 0, **kwargs)
    assert "\n" not in str(caught.value)


@needs_procgen
def test_bad_actions_are_one_line_errors():
    env = ProcgenVecEnv("procgen:coinrun", 2, seed=0)
    for actions, message in (([0, 15], "must be in"), ([-1, 0], "must be in"), ([0], "expected 2")):
        with pytest.raises(ValueError, match=message) as caught:
            env.step(np.array(actions))
        assert "\n" not in str(caught.value)
    env.close()


def test_missing_procgen_is_one_user_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "procgen", None)  # import procgen now raises ImportError
    with pytest.raises(UserError, match="procgen is not installed.*") as caught:
        ProcgenVecEnv("procgen:coinrun", 2, seed=0)
    assert "\n" not in str(caught.value)
    assert procgen_fix(sys.version_info) in str(caught.value)
    # through the command line: one line, exit 2, no run folder
    import train

    run = tmp_path / "run"
    argv = ["--agent", "ppo", "--env", "procgen:coinrun", "--num-envs", "2", "--run-dir", str(run),
            "--progress", "off"]  # fmt: skip
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: procgen is not installed") and err.count("\n") == 1
    assert not run.exists()


@needs_procgen
def test_a_build_without_state_save_still_plays_and_says_so(monkeypatch, capsys, tmp_path):
    from procgen import ProcgenGym3Env

    import envs.procgen as procgen_env

    class NoStates:  # procgen before 0.10.5: no get_state / set_state
        def __init__(self, **kwargs):
            self.env = ProcgenGym3Env(**kwargs)

        def __getattr__(self, name):
            return getattr(self.env, name)

        def callmethod(self, method, *args):
            if method in ("get_state", "set_state"):
                raise AttributeError(method)
            return self.env.callmethod(method, *args)

    monkeypatch.setattr(procgen_env, "import_procgen", lambda: NoStates)
    monkeypatch.setattr(ProcgenVecEnv, "_said_no_states", False)
    capsys.readouterr()
    env = ProcgenVecEnv("procgen:maze", 2, seed=0, num_levels=20)
    assert env.timeout is None and not env.saves_states
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no get_state/set_state" in err
    ProcgenVecEnv("procgen:maze", 2, seed=0, num_levels=20).close()
    assert capsys.readouterr().err == ""  # said once
    for _ in range(500):  # maze's 500-step timeout, standing still: now a termination
        result = env.step(np.full(2, 4))
    assert result.terminated.all() and not result.truncated.any()
    for call in (env.sim_states, lambda: env.set_sim_states([b"", b""])):
        with pytest.raises(UserError, match="cannot save or restore states.*procgen2 0.10.7"):
            call()
    env.close()
    # a run that would measure the critic's bias on such a build is refused before it trains
    import train

    run = tmp_path / "run"
    argv = ["--agent", "revalued", "--env", "procgen:maze", "--bias-every", "100",
            "--run-dir", str(run), "--progress", "off"]  # fmt: skip
    assert train.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --bias-every restores Procgen states") and err.count("\n") == 1
    assert not run.exists()


def test_the_fix_for_a_missing_procgen_depends_on_the_python():
    assert "make test" in procgen_fix((3, 11, 7)) and "python3.11" not in procgen_fix((3, 11, 7))
    other = procgen_fix((3, 12, 1))
    assert "this is Python 3.12" in other and "make PYTHON=python3.11 test" in other


# ---- the critic's bias on Procgen states (harness.bias.measure_restored_vector) -------------
class ConstantAgent:
    """A deterministic agent that always takes one action and estimates Q = q everywhere;
    it checks that frames reach it as uint8 (the encoder scales only uint8)."""

    def __init__(self, action: int, q: float):
        self.device, self.action, self.q = torch.device("cpu"), action, q

    def act(self, obs, deterministic):
        assert deterministic and obs.dtype == np.uint8
        return np.full(len(obs), self.action)

    def q_value(self, obs, actions):
        assert obs.dtype == torch.uint8 and actions.shape == (len(obs),)
        return torch.full((len(obs),), self.q)


@needs_procgen
def test_bias_on_restored_states_is_q_minus_the_rest_of_the_episode():
    """One bigfish episode under a constant action (four rewards in 204 steps); restored at five
    of its states, each rollout must earn what the episode earned from there, discounted and
    cut at the horizon: G_t = sum_{t <= j < min(end, t + H)} gamma^(j - t) r_j."""
    gamma, q = 0.95, 2.0
    horizon = horizon_for(gamma)  # 135
    env = ProcgenVecEnv("procgen:bigfish", 1, 3, "easy", 10, 0, num_threads=0)
    obs, frames, states, rewards = env.reset(3), [], [], []
    while True:
        frames.append(obs[0])
        states.append(env.sim_states()[0])
        step = env.step(np.array([7]))
        rewards.append(float(step.rewards[0]))
        obs = step.obs
        if step.terminated[0] or step.truncated[0]:
            break
    assert sum(rewards) >= 2  # the episode this test needs: rewards inside and past a horizon
    picked = [0, 40, 90, 150, len(rewards) - 1]
    truth = [sum(gamma ** (j - t) * rewards[j] for j in range(t, min(len(rewards), t + horizon)))
             for t in picked]  # fmt: skip
    sims = np.empty(len(picked), dtype=object)
    sims[:] = [states[t] for t in picked]
    chosen = States(obs=np.stack([frames[t] for t in picked]), sim_states=sims,
                    reset_seeds=np.arange(len(picked)))  # fmt: skip
    restorer = ProcgenVecEnv("procgen:bigfish", len(picked), 9, "easy", 10, 0, num_threads=0)
    result = measure_restored_vector(ConstantAgent(7, q), restorer, chosen, gamma)
    assert result["mc_return_mean"] == pytest.approx(np.mean(truth), abs=1e-6)
    assert result["bias_mean"] == pytest.approx(q - np.mean(truth), abs=1e-6)
    redq = [(q - g) / max(abs(g), 10.0) for g in truth]
    assert result["bias_normalized_redq_mean"] == pytest.approx(np.mean(redq), abs=1e-6)
    assert result["bias_target"] == "reward" and result["restored_states"]
    assert result["n_states"] == len(picked) and result["horizon"] == horizon


class ActionValued(ConstantAgent):
    """Q(s, a) = a: what the measurement reads shows which first action it was read at."""

    def q_value(self, obs, actions):
        return actions.double()


@needs_procgen
def test_epsilon_greedy_rollouts_read_q_at_the_actions_taken_and_repeat_with_the_seed():
    from harness.evaluation import EpsilonGreedy

    env = ProcgenVecEnv("procgen:bigfish", 3, 3, "easy", 10, 0, num_threads=0)
    env.reset(3)
    for _ in range(5):
        env.step(np.array([7, 7, 7]))
    sims = np.empty(3, dtype=object)
    sims[:] = env.sim_states()
    chosen = States(obs=env.step(np.array([7, 7, 7])).obs, sim_states=sims,
                    reset_seeds=np.arange(3))  # fmt: skip
    env.close()
    restorer = ProcgenVecEnv("procgen:bigfish", 6, 9, "easy", 10, 0, num_threads=0)
    agent = ActionValued(7, 0.0)
    # epsilon 1: every first action is random, drawn after EpsilonGreedy's coin flips
    torch.manual_seed(11)
    torch.rand(6)
    first = torch.randint(0, 15, (6,))
    before = torch.get_rng_state()
    results = [measure_restored_vector(agent, restorer, chosen, 0.9,
                                       actor=EpsilonGreedy(agent, 1.0, 15), rollouts=2, seed=11)
               for _ in range(2)]  # fmt: skip
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left alone
    assert results[0] == results[1]  # the seed fixes the rollouts
    result = results[0]
    assert result["q_mean"] == pytest.approx(first.double().mean().item())
    assert (result["n_states"], result["rollouts"]) == (3, 2)
    assert result["rollout_policy"] == "epsilon-greedy 1"
    # epsilon near 0: the greedy policy twice a state, so the greedy measurement's numbers
    greedy = measure_restored_vector(agent, ProcgenVecEnv("procgen:bigfish", 3, 9, "easy", 10, 0,
                                                          num_threads=0), chosen, 0.9)  # fmt: skip
    near = measure_restored_vector(agent, restorer, chosen, 0.9,
                                   actor=EpsilonGreedy(agent, 1e-12, 15), rollouts=2)  # fmt: skip
    assert near["mc_return_mean"] == pytest.approx(greedy["mc_return_mean"])
    assert near["bias_mean"] == pytest.approx(greedy["bias_mean"]) and greedy["q_mean"] == 7.0
    with pytest.raises(ValueError, match="restorable states for 6 envs, 3 rollouts"):
        measure_restored_vector(agent, restorer, chosen, 0.9, actor=agent, rollouts=3)
    restorer.close()


@needs_procgen
def test_procgen_bias_measures_both_sides_on_policy_states(tmp_path, monkeypatch):
    """states_from_policy on Procgen keeps frames uint8 and states whole (bytes), and
    procgen_bias reports the training and the held-out side, each on its own levels."""
    import training.procgen
    from core.config import RunConfig
    from training.procgen import procgen_bias

    measured = []  # (level seeds of the states, result) of every measurement, in order
    measure = training.procgen.measure_restored_vector

    def recording(agent, env, states, *args, **kwargs):
        # a state: return and length (16 bytes), the 64 x 64 x 3 frame, then Procgen's own
        seeds = [state_header(s[16 + 64 * 64 * 3 :])["level_seed"] for s in states.sim_states]
        measured.append((seeds, measure(agent, env, states, *args, **kwargs)))
        return measured[-1][1]

    monkeypatch.setattr(training.procgen, "measure_restored_vector", recording)
    cfg = RunConfig(env="procgen:bigfish", train_levels=5)
    out = procgen_bias(ConstantAgent(7, 1.0), cfg, k=4, seed=0, gamma=0.9)
    assert set(out) == {"train", "test"}
    for side in out.values():
        assert side["n_states"] == 4 and side["restored_states"]
        assert side["bias_mean"] == pytest.approx(1.0 - side["mc_return_mean"])
    # the training side on levels [0, 5), the held-out side above them, each its own result
    assert len(measured) == 2
    (train_seeds, train_result), (test_seeds, test_result) = measured
    assert len(train_seeds) == 4 and all(0 <= seed < 5 for seed in train_seeds), train_seeds
    assert len(test_seeds) == 4 and all(seed >= 5 for seed in test_seeds), test_seeds
    assert out["train"] is train_result and out["test"] is test_result
