"""The bias harness on a chain whose true Q is known in closed form, and on MuJoCo states."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import harness.bias as bias_module
from agents.buffer import ReplayBuffer
from envs import get_sim_state, make_env, set_sim_state
from harness.bias import BiasMeter, States, horizon_for, start_states, states_from_buffer


class Chain(gym.Env):
    """Position x = 0..length; every step moves right with reward 1 and terminates at `length`.

    Q(x, a) = sum_{t < length - x} gamma^t = (1 - gamma^(length - x)) / (1 - gamma) for any a.
    The state is restorable through the get_sim_state / set_sim_state protocol.
    """

    observation_space = gym.spaces.Box(0.0, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length: int, start: int = 0):
        self.length, self.start, self.x = length, start, start

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.start
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += 1
        return np.array([self.x], np.float32), 1.0, self.x >= self.length, False, {}

    def get_sim_state(self):
        return np.array([self.x], np.float64)

    def set_sim_state(self, state):
        self.x = int(state[0])
        return np.array([self.x], np.float32)


def true_q(x: np.ndarray, length: int, gamma: float) -> np.ndarray:
    return (1.0 - gamma ** (length - x)) / (1.0 - gamma)


class HandCritic:
    """A policy and critic set by hand: Q = true value + offset (and variants)."""

    device = torch.device("cpu")

    def __init__(self, length: int, gamma: float, offset: float):
        self.length, self.gamma, self.offset = length, gamma, offset

    def act(self, obs, deterministic):
        return np.zeros((len(obs), 1), np.float32)

    def q_value(self, obs, actions):
        x = obs[:, 0].double().numpy()
        return torch.as_tensor(true_q(x, self.length, self.gamma) + self.offset)

    def q_estimates(self, obs, actions):
        q = self.q_value(obs, actions)
        return {"same": q, "low": q - 3 * self.offset}


def chain_meter(length: int, gamma: float, **kw) -> BiasMeter:
    return BiasMeter(lambda limit: gym.wrappers.TimeLimit(Chain(length), limit), gamma, **kw)


def chain_states(xs: list[int]) -> States:
    return States(
        obs=np.array([[x] for x in xs], np.float32),
        sim_states=np.array([[x] for x in xs], np.float64),
        reset_seeds=np.arange(len(xs)),
    )


def test_critic_at_truth_plus_c_has_bias_exactly_c():
    length, gamma, c = 10, 0.9, 0.75
    result = chain_meter(length, gamma).measure(
        HandCritic(length, gamma, c), chain_states([0, 3, 7, 9])
    )
    g = true_q(np.array([0, 3, 7, 9]), length, gamma)
    assert result["mc_return_mean"] == pytest.approx(g.mean(), abs=1e-12)
    assert result["bias_mean"] == pytest.approx(c, abs=1e-12)
    assert result["bias_std"] == pytest.approx(0.0, abs=1e-12)
    assert result["bias_normalized_mean"] == pytest.approx(c / abs(g.mean()), abs=1e-12)
    assert result["q_mean"] == pytest.approx(g.mean() + c, abs=1e-12)
    assert result["estimates"]["low"]["bias_mean"] == pytest.approx(-2 * c, abs=1e-12)
    assert result["restored_states"] and result["n_states"] == 4 and result["time_limit_cuts"] == 0


def test_termination_ends_the_discounted_sum():
    # From x = 8 of 10: rewards at two steps, then termination: 1 + 0.9.
    result = chain_meter(10, 0.9).measure(HandCritic(10, 0.9, 0.0), chain_states([8]))
    assert result["mc_return_mean"] == pytest.approx(1.9, abs=1e-12)


def test_horizon_cuts_where_gamma_power_is_negligible():
    assert horizon_for(0.5, 1e-3) == 10  # 0.5^10 = 0.00098 <= 1e-3 < 0.5^9
    assert horizon_for(0.99, 1e-3) == 688
    # A chain far longer than the horizon: exactly 10 rewards, sum 0.5^t for t < 10.
    result = chain_meter(1000, 0.5).measure(HandCritic(1000, 0.5, 0.0), chain_states([0]))
    assert result["mc_return_mean"] == pytest.approx((1 - 0.5**10) / 0.5, abs=1e-12)
    assert result["time_limit_cuts"] == 0  # the env copies' time limit exceeds the horizon


def test_time_limits_shorter_than_the_horizon_are_counted():
    meter = BiasMeter(lambda limit: gym.wrappers.TimeLimit(Chain(1000), 3), 0.5)
    result = meter.measure(HandCritic(1000, 0.5, 0.0), chain_states([0, 5]))
    assert result["time_limit_cuts"] == 2
    assert result["mc_return_mean"] == pytest.approx(1.75, abs=1e-12)


def test_start_state_fallback_says_states_were_not_restored():
    meter = BiasMeter(lambda limit: gym.wrappers.TimeLimit(Chain(5, start=1), limit), 0.9)
    states = start_states(Chain(5, start=1), 3, seed=0)
    assert states.sim_states is None
    result = meter.measure(HandCritic(5, 0.9, 0.5), states)
    assert not result["restored_states"]
    assert result["mc_return_mean"] == pytest.approx(true_q(np.array(1), 5, 0.9), abs=1e-12)
    assert result["bias_mean"] == pytest.approx(0.5, abs=1e-12)


class SoftHandCritic(HandCritic):
    """A stochastic policy with log pi = `log_prob` at every step and temperature `alpha`;
    its first action is +-1 at random (torch's RNG), and Q = the true soft value + offset * a.

    The soft value on the chain: Q(x, a) = sum_{t < n} gamma^t - alpha * log_prob *
    sum_{1 <= t < n} gamma^t with n = length - x (no entropy term for the first action)."""

    def __init__(self, length, gamma, offset, alpha, log_prob):
        super().__init__(length, gamma, offset)
        self.alpha, self.log_prob = alpha, log_prob
        self.draws: list[np.ndarray] = []

    def entropy_alpha(self):
        return self.alpha

    def act_with_log_prob(self, obs):
        a = torch.randint(0, 2, (len(obs), 1)).double().numpy() * 2 - 1
        self.draws.append(a[:, 0])
        return a.astype(np.float32), np.full(len(obs), self.log_prob)

    def soft_q(self, x):
        n = self.length - np.asarray(x)
        rewards = true_q(np.asarray(x), self.length, self.gamma)
        later = rewards - 1.0  # sum_{1 <= t < n} gamma^t
        return rewards - self.alpha * self.log_prob * np.where(n > 0, later, 0.0)

    def q_value(self, obs, actions):
        x = obs[:, 0].double().numpy()
        return torch.as_tensor(self.soft_q(x) + self.offset * actions[:, 0].double().numpy())


def test_soft_return_adds_the_entropy_bonus_of_every_later_step():
    # alpha 0.5, log pi -2 everywhere: each step after the first adds +1 * gamma^t.
    length, gamma = 10, 0.9
    agent = SoftHandCritic(length, gamma, offset=0.0, alpha=0.5, log_prob=-2.0)
    result = chain_meter(length, gamma, rollouts=2).measure(agent, chain_states([0, 7, 9]))
    g = agent.soft_q(np.array([0, 7, 9]))
    assert g[2] == pytest.approx(1.0) and g[1] == pytest.approx(1 + 2 * (0.9 + 0.81))
    assert result["bias_target"] == "soft" and result["alpha"] == 0.5
    assert result["mc_return_mean"] == pytest.approx(g.mean(), abs=1e-12)
    assert result["mc_entropy_mean"] == pytest.approx(
        (g - true_q(np.array([0, 7, 9]), length, gamma)).mean(), abs=1e-12
    )
    assert result["bias_mean"] == pytest.approx(0.0, abs=1e-12)  # Q is exactly the soft value
    assert result["rollouts"] == 2 and result["n_states"] == 3


def test_soft_bias_pairs_each_rollout_with_its_own_first_action():
    # Q = soft value + offset * a0: the bias of state i is offset * mean_r a0[i, r].
    agent = SoftHandCritic(10, 0.9, offset=0.3, alpha=0.1, log_prob=1.0)
    result = chain_meter(10, 0.9, rollouts=3).measure(agent, chain_states([2, 6]))
    first = agent.draws[0].reshape(2, 3)  # the first call: every rollout's first action
    per_state = 0.3 * first.mean(axis=1)
    assert result["bias_mean"] == pytest.approx(per_state.mean(), abs=1e-12)
    assert result["bias_std"] == pytest.approx(per_state.std(), abs=1e-12)


def test_soft_agents_also_get_the_deterministic_measurement_and_keep_torch_rng():
    agent = SoftHandCritic(10, 0.9, offset=0.0, alpha=0.5, log_prob=-2.0)
    before = torch.get_rng_state()
    result = chain_meter(10, 0.9, rollouts=3).measure(agent, chain_states([0, 5]))
    assert torch.equal(torch.get_rng_state(), before)  # training's random stream is untouched
    det = result["deterministic"]
    assert det["bias_target"] == "reward" and det["rollouts"] == 1 and "alpha" not in det
    reward_only = true_q(np.array([0, 5]), 10, 0.9)
    assert det["mc_return_mean"] == pytest.approx(reward_only.mean(), abs=1e-12)
    # The critic holds the soft value, so against the reward-only return it looks biased by
    # exactly the entropy bonus it (rightly) includes.
    soft = agent.soft_q(np.array([0, 5]))
    assert det["bias_mean"] == pytest.approx((soft - reward_only).mean(), abs=1e-12)
    again = chain_meter(10, 0.9, rollouts=3).measure(agent, chain_states([0, 5]))
    assert np.array_equal(agent.draws[0], agent.draws[len(agent.draws) // 2])  # same draws
    assert again["bias_mean"] == result["bias_mean"]


def test_deterministic_agents_make_one_rollout_per_state():
    result = chain_meter(10, 0.9, rollouts=3).measure(
        HandCritic(10, 0.9, 0.2), chain_states([2, 6])
    )
    assert result["rollouts"] == 1 and result["n_states"] == 2
    assert result["bias_target"] == "reward" and "deterministic" not in result
    assert result["bias_mean"] == pytest.approx(0.2, abs=1e-12)


def test_redq_normalization_is_per_state_with_a_floor_of_ten():
    # gamma 0.99 on a 100-step chain: G(0) = 63.40 (above the floor), G(95) = 4.90 (below).
    length, gamma, c = 100, 0.99, 2.0
    xs = np.array([0, 95])
    result = chain_meter(length, gamma).measure(HandCritic(length, gamma, c), chain_states(xs))
    g = true_q(xs, length, gamma)
    assert g[0] > 10 > g[1]
    assert result["bias_normalized_redq_mean"] == pytest.approx((c / g[0] + c / 10) / 2, abs=1e-12)
    assert result["bias_normalized_mean"] == pytest.approx(c / g.mean(), abs=1e-12)


def test_mujoco_restore_round_trip_from_buffer_states():
    # Record Hopper transitions with their states, restore one in a fresh env, replay the
    # recorded action: the next observation is the recorded one.
    env = make_env("Hopper-v5")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(30):
        state = get_sim_state(env)
        action = rng.uniform(-1, 1, 3).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, reward, next_obs, terminated, truncated, state))
        obs = env.reset()[0] if terminated or truncated else next_obs
    cols = list(zip(*rows))
    buffer = ReplayBuffer.from_arrays(
        *map(np.asarray, cols[:6]), extras={"sim_state": np.asarray(cols[6])}
    )
    states = states_from_buffer(buffer, 5, seed=1)
    assert states.sim_states.shape == (5, 12)
    for i in range(5):
        fresh = make_env("Hopper-v5")
        fresh.reset(seed=99)
        restored = set_sim_state(fresh, states.sim_states[i])
        np.testing.assert_allclose(restored, states.obs[i], rtol=1e-6, atol=1e-7)  # float32 copy
        k = states.indices[i]
        stepped, *_ = fresh.step(rows[k][1])
        np.testing.assert_allclose(stepped, rows[k][3], atol=1e-12)


def test_buffer_transitions_do_not_touch_the_sampling_rng():
    def make(with_states: bool) -> ReplayBuffer:
        n = 20
        extras = {"sim_state": np.arange(n, dtype=np.float64)[:, None]} if with_states else None
        return ReplayBuffer.from_arrays(
            np.arange(n, dtype=np.float32)[:, None], np.zeros((n, 1), np.float32), np.zeros(n),
            np.zeros((n, 1), np.float32), np.zeros(n, bool), np.zeros(n, bool), extras=extras,
        )  # fmt: skip

    buffer, twin = make(True), make(True)
    assert buffer.transitions([3, 7]).obs[:, 0].tolist() == [3.0, 7.0]
    states = states_from_buffer(buffer, 5, seed=0)
    np.testing.assert_array_equal(states.sim_states[:, 0], states.obs[:, 0])  # same rows
    assert torch.equal(buffer.sample(8).indices, twin.sample(8).indices)
    with pytest.raises(IndexError):
        buffer.transitions([20])
    with pytest.raises(ValueError, match="no simulator states"):
        states_from_buffer(make(False), 5, seed=0)


def test_gamma_must_allow_a_finite_horizon():
    with pytest.raises(ValueError, match="gamma"):
        horizon_for(1.0)
    assert math.isfinite(horizon_for(0.0))


def test_redq_per_sample_normalization_divides_each_rollout_by_its_own_return():
    # One state, four rollouts, one of which falls: G = 300, 300, 300, 5 and Q = 250 at each
    # rollout's first action. Per state: mean(Q - G) = (-50 * 3 + 245) / 4 = 23.75, divided by
    # max(|mean G|, 10) = 226.25. REDQ per sample: (-50/300 * 3 + 245/10) / 4 = 6.0.
    class Constant:
        device = torch.device("cpu")

        def q_value(self, obs, actions):
            return torch.full((len(obs),), 250.0)

    g_runs = np.array([[300.0, 300.0, 300.0, 5.0]])
    result = bias_module._result(Constant(), torch.zeros(4, 1), torch.zeros(4, 1), g_runs,
                                 "soft", 688, 0.99, True, 0, {})  # fmt: skip
    assert result["bias_normalized_redq_mean"] == pytest.approx(23.75 / 226.25, abs=1e-12)
    assert result["bias_normalized_redq_sample_mean"] == pytest.approx(6.0, abs=1e-12)
    spread = np.array([-50 / 300] * 3 + [24.5])
    assert result["bias_normalized_redq_sample_std"] == pytest.approx(spread.std(), abs=1e-12)
    # a state whose rollouts agree gives the same number both ways
    agree = np.array([[200.0, 200.0]])
    same = bias_module._result(Constant(), torch.zeros(2, 1), torch.zeros(2, 1), agree,
                               "soft", 688, 0.99, True, 0, {})  # fmt: skip
    assert same["bias_normalized_redq_sample_mean"] == pytest.approx(
        same["bias_normalized_redq_mean"], abs=1e-12)  # fmt: skip
