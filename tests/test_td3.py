"""TD3 maths on hand-made tensors, update schedule, and checkpoint round trips."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from agents.td3 import Agent, Config
from tests.batches import make_batch

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def make_agent(**overrides) -> Agent:
    torch.manual_seed(0)
    cfg = Config(**{"actor_hidden": [16, 16], "critic_hidden": [16, 16], **overrides})
    return Agent(cfg, OBS_SPACE, ACT_SPACE)


class FixedCritic(nn.Module):
    """Stands in for the target critic: returns fixed values (E x B x 1), records its input."""

    def __init__(self, values: list[list[float]]):
        super().__init__()
        self.values = torch.tensor(values).unsqueeze(-1)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return self.values


class FixedActor(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.full((obs.shape[0], 2), self.value)


def test_target_uses_min_of_twin_critics_and_stops_only_at_termination():
    agent = make_agent(policy_noise=0.0)
    agent.actor_target = FixedActor(0.3)
    agent.critic_target = FixedCritic([[10.0, 4.0, 5.0], [8.0, 6.0, 5.0]])
    batch = make_batch(
        3,
        rewards=torch.tensor([1.0, 2.0, -1.0]),
        terminated=torch.tensor([0.0, 1.0, 0.0]),
        truncated=torch.tensor([1.0, 0.0, 0.0]),  # a time-limit cut still bootstraps
        discounts=torch.tensor([0.99, 0.99, 0.99**3]),  # n-step discount from the buffer
    )
    y = agent.compute_target(batch)
    expected = torch.tensor([1.0 + 0.99 * 8.0, 2.0, -1.0 + 0.99**3 * 5.0])
    torch.testing.assert_close(y, expected)
    # Without noise the target action is the target actor's action.
    torch.testing.assert_close(agent.critic_target.seen[:, 3:], torch.full((3, 2), 0.3))


def test_single_critic_ablation_uses_its_only_critic():
    agent = make_agent(policy_noise=0.0, n_critics=1)
    agent.actor_target = FixedActor(0.0)
    agent.critic_target = FixedCritic([[10.0, 4.0]])
    batch = make_batch(2, rewards=torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(
        agent.compute_target(batch), torch.tensor([1.0 + 0.99 * 10.0, 0.5 + 0.99 * 4.0])
    )


def test_target_policy_noise_is_clipped_then_action_clamped():
    agent = make_agent(policy_noise=100.0, noise_clip=0.5)
    agent.actor_target = FixedActor(0.0)
    agent.critic_target = FixedCritic([[0.0] * 512, [0.0] * 512])
    agent.compute_target(make_batch(512))
    noisy = agent.critic_target.seen[:, 3:]
    # Noise of std 100 clipped to +-0.5: nearly every entry sits at a clip bound.
    assert noisy.abs().max() <= 0.5
    assert (noisy.abs() == 0.5).float().mean() > 0.95
    agent.actor_target = FixedActor(0.9)
    agent.compute_target(make_batch(512))
    assert agent.critic_target.seen[:, 3:].max() == 1.0  # 0.9 + 0.5 clamped to the bound


def test_policy_delay_updates_actor_and_targets_every_second_step():
    agent = make_agent()
    actor0 = copy.deepcopy(agent.actor.state_dict())
    critic0 = copy.deepcopy(agent.critic.state_dict())
    target0 = copy.deepcopy(agent.critic_target.state_dict())

    metrics = agent.update(make_batch(8, seed=1))
    assert "loss/actor" not in metrics and "loss/critic" in metrics
    assert all(torch.equal(v, agent.actor.state_dict()[k]) for k, v in actor0.items())
    assert all(torch.equal(v, agent.critic_target.state_dict()[k]) for k, v in target0.items())
    assert not all(torch.equal(v, agent.critic.state_dict()[k]) for k, v in critic0.items())

    metrics = agent.update(make_batch(8, seed=2))
    assert "loss/actor" in metrics
    assert not all(torch.equal(v, agent.actor.state_dict()[k]) for k, v in actor0.items())
    # Polyak step: target moved by tau towards the online critic.
    new_target = agent.critic_target.state_dict()
    for k, v in target0.items():
        expected = v + 0.005 * (agent.critic.state_dict()[k] - v)
        torch.testing.assert_close(new_target[k], expected)


def test_actor_loss_gives_no_gradient_to_critic():
    agent = make_agent()
    loss, _ = agent.actor_loss(make_batch(8))
    loss.backward(inputs=agent._actor_params)
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())


def test_critic_loss_is_sum_of_each_critic_mse():
    agent = make_agent(policy_noise=0.0)
    batch = make_batch(6, seed=3)
    torch.manual_seed(5)
    loss, _ = agent.critic_loss(batch)
    torch.manual_seed(5)
    y = agent.compute_target(batch)
    q = agent.critic(torch.cat([batch.obs, batch.actions], -1)).squeeze(-1)
    expected = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    torch.testing.assert_close(loss, expected)


def test_act_is_bounded_and_deterministic_mode_has_no_noise():
    agent = make_agent(exploration_noise=5.0)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    a1, a2 = agent.act(obs, deterministic=True), agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    noisy = agent.act(obs, deterministic=False)
    assert noisy.shape == (5, 2) and np.abs(noisy).max() <= 1.0
    assert not np.array_equal(noisy, a1)


def test_state_dict_round_trip_gives_identical_actions_and_updates():
    agent = make_agent()
    for seed in range(3):
        agent.update(make_batch(8, seed=seed))
    clone = make_agent()
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))
    obs = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs, True), clone.act(obs, True))
    # Optimizer state and the update counter came along: the next update matches exactly.
    batch = make_batch(8, seed=9)
    torch.manual_seed(7)
    agent.update(batch)
    torch.manual_seed(7)
    clone.update(batch)
    theirs = clone.state_dict()["actor"]
    for k, v in agent.state_dict()["actor"].items():
        assert torch.equal(v, theirs[k]), k


def test_q_value_is_q1_and_min_is_below_it():
    agent = make_agent()
    # Critic 1 says [1, 5], critic 2 says [3, 2]: Q1 and the min differ in each row.
    agent.critic = FixedCritic([[1.0, 5.0], [3.0, 2.0]])
    batch = make_batch(2)
    est = agent.q_estimates(batch.obs, batch.actions)
    torch.testing.assert_close(est["q1"], torch.tensor([1.0, 5.0]))
    torch.testing.assert_close(est["min"], torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(agent.q_value(batch.obs, batch.actions), torch.tensor([1.0, 5.0]))
    # The critic saw (s, a) for the given actions.
    torch.testing.assert_close(agent.critic.seen, torch.cat([batch.obs, batch.actions], -1))


def test_rejects_discrete_action_space():
    with pytest.raises(ValueError, match="Box"):
        Agent(Config(), OBS_SPACE, gym.spaces.Discrete(3))


def test_simba_switch_normalizes_identically_when_acting_and_learning():
    agent = make_agent(arch="simba", actor_hidden=[16], critic_hidden=[16, 16])
    rng = np.random.default_rng(2)
    env_obs = rng.normal(5.0, 3.0, size=(64, 3)).astype(np.float32)
    agent.observe(env_obs)
    mean = agent.obs_norm.mean.clone()
    np.testing.assert_allclose(mean.numpy(), env_obs.mean(0), rtol=1e-3, atol=1e-3)

    obs = env_obs[:4]
    normed = (torch.as_tensor(obs) - mean.float()) / (agent.obs_norm.var.float() + 1e-8).sqrt()
    expected = agent.actor(normed).detach().numpy()
    np.testing.assert_allclose(agent.act(obs, deterministic=True), expected, rtol=1e-5, atol=1e-6)
    actions = torch.zeros(4, 2)
    q = agent.critic(torch.cat([normed, actions], -1))[0, :, 0]
    torch.testing.assert_close(agent.q_value(torch.as_tensor(obs), actions), q)

    # Learning from replayed batches never moves the statistics.
    for seed in range(2):
        agent.update(make_batch(8, seed=seed))
    assert torch.equal(agent.obs_norm.mean, mean)

    clone = make_agent(arch="simba", actor_hidden=[16], critic_hidden=[16, 16])
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))
    np.testing.assert_array_equal(clone.act(obs, True), agent.act(obs, True))


def test_unknown_arch_is_rejected():
    with pytest.raises(ValueError, match="unknown arch 'resnet'"):
        make_agent(arch="resnet")
