"""harness/generalization.py: Procgen-normalized scores against hand-computed values, and the
train / held-out report on a scripted vector env (exact means, std, gap, episode counts) and on
real Procgen levels (skips without procgen)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import harness.generalization as gen
from core import stop as core_stop
from envs import LevelSplit, StepResult
from harness.generalization import generalization_report, normalized_score, quotas, score_range

try:
    import procgen  # noqa: F401

    HAVE_PROCGEN = True
except ImportError:
    HAVE_PROCGEN = False


@pytest.mark.parametrize(
    "game, mode, ret, expected",
    [
        ("coinrun", "easy", 10.0, 1.0),
        ("coinrun", "easy", 7.5, 0.5),
        ("coinrun", "easy", 0.0, -1.0),  # below R_min: negative, not clipped
        ("procgen:maze", "easy", 7.5, 0.5),  # env ids are accepted
        ("starpilot", "easy", 33.25, 0.5),  # (33.25 - 2.5) / 61.5
        ("fruitbot", "easy", 0.0, 1.5 / 33.9),  # R_min -1.5, R_max 32.4
        ("jumper", "easy", 5.5, 0.5),  # released file's [1, 10]; the paper's [3, 10] gives 5/14
        ("leaper", "easy", 5.75, 0.5),  # released file's [1.5, 10]
        ("starpilot", "hard", 18.25, 0.5),  # (18.25 - 1.5) / 33.5
        ("bigfish", "hard", 10.0, 0.25),  # [0, 40]
        ("maze", "hard", 7.0, 0.5),  # [4, 10]
    ],
)
def test_normalized_scores_by_hand(game, mode, ret, expected):
    assert normalized_score(ret, game, mode) == pytest.approx(expected, abs=1e-12)


def test_normalized_arrays_and_every_game_has_both_modes():
    np.testing.assert_allclose(normalized_score([5.0, 10.0, 6.0], "coinrun"), [0.0, 1.0, 0.2])
    assert set(gen.GAME_RANGES["easy"]) == set(gen.GAME_RANGES["hard"])
    assert len(gen.GAME_RANGES["easy"]) == 16
    for mode in ("easy", "hard"):
        assert all(low < high for low, high in gen.GAME_RANGES[mode].values())


def test_unknown_game_and_mode_are_one_line_errors():
    with pytest.raises(ValueError, match="no Procgen normalization range for game 'pong'"):
        score_range("pong")
    with pytest.raises(ValueError, match="no Procgen normalization ranges for mode 'memory'"):
        normalized_score(5.0, "coinrun", "memory")


def test_quotas_spread_k_over_the_envs():
    assert quotas(7, 3).tolist() == [3, 2, 2]
    assert quotas(2, 4).tolist() == [1, 1, 0, 0]
    assert quotas(8, 4).tolist() == [2, 2, 2, 2]


class ScriptedVecEnv:
    """A vector env whose env i plays the scripted episodes (return, length, level) of
    `scripts[i]` in order (the whole return paid on the last step), then one endless episode."""

    def __init__(self, scripts, split=None, game=None, mode=None):
        self.scripts = scripts
        self.num_envs = len(scripts)
        self.split, self.game, self.mode = split, game, mode
        self.finished_levels: list[int] = []
        self.closed = False
        self.reset(0)

    def reset(self, seed=None):
        self.episode = [0] * self.num_envs
        self.t = [0] * self.num_envs
        return self._obs()

    def _obs(self):
        return np.arange(self.num_envs, dtype=np.float32)[:, None]

    def step(self, actions):
        assert np.asarray(actions).shape == (self.num_envs,)
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        ended = np.zeros(self.num_envs, dtype=bool)
        finished, self.finished_levels = [], []
        for i, script in enumerate(self.scripts):
            if self.episode[i] >= len(script):
                continue  # the endless episode: never finishes
            ret, length, level = script[self.episode[i]]
            self.t[i] += 1
            if self.t[i] == length:
                rewards[i], ended[i] = ret, True
                finished.append((float(ret), length))
                self.finished_levels.append(level)
                self.episode[i] += 1
                self.t[i] = 0
        return StepResult(self._obs(), self._obs(), rewards, ended, np.zeros_like(ended), finished)

    def close(self):
        self.closed = True


class ZeroAgent:
    def __init__(self):
        self.calls = 0

    def act(self, obs, deterministic):
        assert deterministic is True
        self.calls += 1
        return np.zeros(len(obs), dtype=np.int64)


# K = 7 over 3 envs: quotas 3, 2, 2. All three envs end episodes at steps 2 and 4 at once; the
# 100-return one-step episodes of envs 1 and 2 end before env 0's third (step 6), so counting
# "the first 7 to finish" would take them.
TRAIN = [
    [(10, 2, 0), (6, 2, 1), (8, 2, 2), (100, 1, 3)],
    [(7, 2, 4), (9, 2, 5), (100, 1, 6)],
    [(7, 2, 7), (9, 2, 8), (100, 1, 9), (100, 1, 9)],
]
TEST = [  # env 2's second episode is on training level 3 (as the full stream can draw)
    [(5, 1, 20), (7, 1, 21), (6, 1, 22)],
    [(6, 3, 23), (6, 3, 24), (100, 1, 25)],
    [(8, 2, 26), (4, 5, 3)],
]


def report_for(train, test, **kwargs):
    envs = {
        "train": ScriptedVecEnv(train, split=LevelSplit(0, 10)),
        "test": ScriptedVecEnv(test, split=LevelSplit(10, 100)),
    }
    agent = ZeroAgent()
    report = generalization_report(
        agent, lambda: envs["train"], lambda: envs["test"], episodes=7, seed=3, **kwargs
    )
    return report, envs, agent


def test_report_on_scripted_levels_is_exact():
    report, envs, agent = report_for(TRAIN, TEST, game="coinrun")
    assert report["train_returns"] == [10, 6, 8, 7, 9, 7, 9]  # env order, quotas 3, 2, 2
    assert report["test_returns"] == [5, 7, 6, 6, 6, 8, 4]
    assert report["n_episodes"] == 7 and report["n_train_levels"] == 10
    assert report["train_return_mean"] == pytest.approx(8.0)  # 56 / 7
    assert report["test_return_mean"] == pytest.approx(6.0)  # 42 / 7
    # deviations from 8: 2 -2 0 -1 1 -1 1 -> variance 12 / 7; from 6: -1 1 0 0 0 2 -2 -> 10 / 7
    assert report["train_return_std"] == pytest.approx(math.sqrt(12 / 7))
    assert report["test_return_std"] == pytest.approx(math.sqrt(10 / 7))
    assert report["train_normalized"] == pytest.approx(0.6)  # (8 - 5) / 5
    assert report["test_normalized"] == pytest.approx(0.2)  # (6 - 5) / 5
    assert report["train_normalized_std"] == pytest.approx(math.sqrt(12 / 7) / 5)
    assert report["gap"] == pytest.approx(0.4) and report["gap_of"] == "normalized"
    assert report["train_levels"] == [0, 1, 2, 4, 5, 7, 8]
    assert report["test_levels_seen"] == [3, 20, 21, 22, 23, 24, 26]
    assert report["test_levels_in_train"] == 1
    assert report["train_split"] == [0, 10] and report["test_split"] == [10, 110]
    assert report["train_length_mean"] == pytest.approx(2.0)
    # the last counted episodes end at step 6 (train: env 0) and step 7 (test: env 2)
    assert (report["train_steps"], report["test_steps"]) == (6, 7)
    assert agent.calls == 13
    assert envs["train"].closed and envs["test"].closed
    assert (report["game"], report["mode"], report["seed"]) == ("coinrun", "easy", 3)


def test_without_a_game_the_gap_is_of_returns():
    report, _, _ = report_for(TRAIN, TEST)
    assert report["gap"] == pytest.approx(2.0) and report["gap_of"] == "return"
    assert "train_normalized" not in report and report["game"] is None


def test_identical_sides_give_no_gap():
    report, _, _ = report_for(TRAIN, TRAIN, game="coinrun")
    assert report["gap"] == 0.0 and report["train_returns"] == report["test_returns"]


def test_stop_is_checked_once_per_vector_step(monkeypatch):
    checks = []
    monkeypatch.setattr(core_stop, "check", lambda: checks.append(1))
    report, _, _ = report_for(TRAIN, TEST)
    assert len(checks) == report["train_steps"] + report["test_steps"] == 13


def test_mode_comes_from_the_env_and_must_agree():
    script = [[(18.25, 1, 0)], [(18.25, 2, 1)]]

    def env(**kw):
        return lambda: ScriptedVecEnv(script, game="starpilot", **kw)

    report = generalization_report(
        ZeroAgent(), env(mode="hard"), env(mode="hard"), 2, 0, "starpilot"
    )
    assert report["mode"] == "hard" and report["train_normalized"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="mode 'easy' given, but the train env plays 'hard'"):
        generalization_report(
            ZeroAgent(), env(mode="hard"), env(mode="hard"), 2, 0, "starpilot", "easy"
        )
    with pytest.raises(ValueError, match="game 'coinrun' given, but the train env plays"):
        generalization_report(ZeroAgent(), env(), env(), 2, 0, "coinrun")
    with pytest.raises(ValueError, match="for game 'pong'"):
        generalization_report(ZeroAgent(), env(), env(), 2, 0, "pong")


def test_envs_that_never_finish_fail_and_are_closed():
    made = []

    def endless():
        made.append(ScriptedVecEnv([[], []]))
        return made[-1]

    with pytest.raises(RuntimeError, match="0 of 2 episodes finished in 5 vector steps"):
        generalization_report(ZeroAgent(), endless, endless, 2, 0, max_steps=5)
    assert len(made) == 2 and all(env.closed for env in made)
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        generalization_report(ZeroAgent(), endless, endless, 0, 0)


class RandomAgent:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def act(self, obs, deterministic):
        return self.rng.integers(0, 15, len(obs))


@pytest.mark.skipif(not HAVE_PROCGEN, reason="procgen not installed")
def test_procgen_coinrun_train_and_held_out_levels():
    from envs import ProcgenVecEnv

    report = generalization_report(
        RandomAgent(0),
        lambda: ProcgenVecEnv("procgen:coinrun", 4, seed=0, num_threads=1),
        lambda: ProcgenVecEnv.held_out("procgen:coinrun", 4, seed=0, num_threads=1),
        episodes=4,
        seed=0,
        game="procgen:coinrun",
    )
    assert report["n_episodes"] == 4 and report["n_train_levels"] == 200
    assert len(report["train_levels"]) == len(report["test_levels"]) == 4
    assert all(0 <= level < 200 for level in report["train_levels"]), report["train_levels"]
    assert all(level >= 200 for level in report["test_levels"]), report["test_levels"]
    assert report["test_levels_in_train"] == 0
    assert set(report["train_returns"] + report["test_returns"]) <= {0.0, 10.0}  # coinrun pays 10
    assert report["train_normalized"] == pytest.approx((report["train_return_mean"] - 5) / 5)
    assert report["gap"] == pytest.approx(report["train_normalized"] - report["test_normalized"])
    assert report["gap_of"] == "normalized" and report["mode"] == "easy"


def test_vector_evaluation_plays_the_one_env_protocols_starts():
    """With as many envs as episodes, episode k starts from reset(seed + k) as in the one-env
    protocol; a per-row policy (no batched rounding) then gives the same returns exactly."""
    from envs import VecEnv, make_env
    from harness.evaluation import evaluate_policy, evaluate_vector

    class RowPolicy:  # each row's action from that row alone
        def act(self, obs, deterministic):
            return np.clip(-2.0 * obs[:, 2:3], -1.0, 1.0).astype(np.float32)

    one = evaluate_policy(RowPolicy(), make_env("Pendulum-v1"), 5, seed=40)
    vec = VecEnv("Pendulum-v1", 5, 0)
    together = evaluate_vector(RowPolicy(), vec, 5, seed=40)
    assert together["returns"] == one["returns"] and together["lengths"] == [200] * 5
    more = evaluate_vector(RowPolicy(), VecEnv("Pendulum-v1", 3, 0), 7, seed=40)
    assert len(more["returns"]) == 7 and more["returns"][0] == one["returns"][0]
    assert more == evaluate_vector(RowPolicy(), VecEnv("Pendulum-v1", 3, 0), 7, seed=40)


class CoinAgent:
    """Acts 0 when deterministic, else a fair coin from torch's global RNG."""

    def act(self, obs, deterministic):
        if deterministic:
            return np.zeros(len(obs), dtype=np.int64)
        return torch.randint(0, 2, (len(obs),)).numpy()


def test_sampled_evaluation_is_seeded_and_leaves_the_callers_rng_alone():
    """PPO is evaluated with its sampling policy (the Procgen protocol): the samples come from
    a torch RNG seeded with the evaluation seed, so the same seed plays the same episodes, and
    the training run's RNG is where it was before the evaluation."""
    from envs import VecEnv
    from harness.evaluation import evaluate_vector

    def play(seed, deterministic):
        return evaluate_vector(CoinAgent(), VecEnv("CartPole-v1", 4, 0), 8, seed, deterministic)

    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = play(40, deterministic=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert play(40, deterministic=False) == first
    # A coin against always-left: left alone ends CartPole in about 10 steps from every start.
    greedy = play(40, deterministic=True)
    assert max(greedy["lengths"]) < min(20, max(first["lengths"]))
    assert play(41, deterministic=False)["returns"] != first["returns"]
    # the report says which policy it measured
    report = generalization_report(
        CoinAgent(), lambda: ScriptedVecEnv(TRAIN), lambda: ScriptedVecEnv(TEST), 7, 3,
        deterministic=False,
    )  # fmt: skip
    assert report["deterministic"] is False and report["train_returns"] == [10, 6, 8, 7, 9, 7, 9]


def test_ppo_is_evaluated_sampled_and_td3_deterministic():
    from agents import ppo, td3
    from harness.evaluation import acts_deterministic

    class Holder:
        def __init__(self, cfg):
            self.cfg = cfg

    assert acts_deterministic(Holder(ppo.Config())) is False
    assert acts_deterministic(Holder(ppo.Config(eval_sampled=False))) is True
    assert acts_deterministic(Holder(td3.Config())) is True
    assert acts_deterministic(CoinAgent()) is True  # no config: the deterministic action


class GreedyRows:
    """A greedy discrete agent: row i's action is i % 5 (N), or that in every dimension."""

    bins = 7

    def __init__(self, dims=0):
        self.dims = dims

    def act(self, obs, deterministic):
        assert deterministic is True  # EpsilonGreedy asks the agent for its greedy action only
        rows = np.arange(len(obs)) % 5
        return rows if self.dims == 0 else np.repeat(rows[:, None], self.dims, axis=1)


def test_epsilon_greedy_replaces_whole_actions_at_the_rate_epsilon():
    from harness.evaluation import EpsilonGreedy, evaluation_actor

    obs = np.zeros((40_000, 1), dtype=np.float32)
    greedy = GreedyRows().act(obs, True)
    torch.manual_seed(0)
    acted = EpsilonGreedy(GreedyRows(), 0.25, bins=7).act(obs, deterministic=False)
    assert acted.dtype == greedy.dtype and set(np.unique(acted)) <= set(range(7))
    # a random action equals the greedy one 1 time in 7: changed rows are 0.25 x 6/7 = 0.2143
    assert np.mean(acted != greedy) == pytest.approx(0.25 * 6 / 7, abs=0.01)
    assert np.array_equal(EpsilonGreedy(GreedyRows(), 0.25, 7).act(obs, True), greedy)
    # N x D bins (DecQN / REValueD on a MuJoCo task): a row is all greedy or all random
    two = EpsilonGreedy(GreedyRows(dims=3), 0.5, bins=7).act(obs[:2000], deterministic=False)
    kept = np.all(two == GreedyRows(dims=3).act(obs[:2000], True), axis=1)
    random_rows = two[~kept]
    assert 0.4 < kept.mean() < 0.6 and np.mean(random_rows[:, 0] == random_rows[:, 1]) < 0.3
    # who plays an evaluation: the agent itself unless eval_epsilon > 0
    agent = GreedyRows()
    assert evaluation_actor(agent) == (agent, True)
    actor, deterministic = evaluation_actor(agent, 0.05)
    assert isinstance(actor, EpsilonGreedy) and actor.epsilon == 0.05 and actor.bins == 7
    assert deterministic is False


def test_eval_epsilon_is_checked_before_a_run_starts(tmp_path, capsys):
    import train

    for extra, says in ((["--eval-epsilon", "1.5"], "eval_epsilon must be in [0, 1]"),
                        (["--agent", "td3", "--eval-epsilon", "0.05"],
                         "eval_epsilon applies to agents acting greedily")):  # fmt: skip
        argv = ["--env", "Pendulum-v1", "--total-steps", "10", "--run-dir", str(tmp_path / "r")]
        if "--agent" not in extra:
            argv += ["--agent", "revalued", "--bins", "3"]
        assert train.main(argv + extra) != 0
        err = capsys.readouterr().err.strip()
        assert says in err and "\n" not in err
        assert not (tmp_path / "r").exists()
