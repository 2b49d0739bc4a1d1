"""REValueD / DecQN: decomposition, greedy actions, targets, the regularisation loss, the
ensemble, exploration, and a smoke run with save/load and determinism."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import evaluate
import train
from agents import revalued
from agents.nets import ImpalaCNN
from core.config import load_yaml
from tests.batches import make_batch

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.MultiDiscrete([2, 2])  # D = 2 dimensions x 2 bins


class Fixed(torch.nn.Module):
    """An 'ensemble' whose output is the same K x (D * bins) table for every state."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table, dtype=torch.float32)  # K x (D * bins)

    def forward(self, obs):
        return self.table[:, None, :].expand(-1, obs.shape[0], -1)


def make_agent(**overrides) -> revalued.Agent:
    torch.manual_seed(0)
    cfg = {"hidden": [16], "n_members": 2, **overrides}
    return revalued.Agent(revalued.Config(**cfg), OBS, ACT)


def test_decomposition_and_greedy_actions_by_hand():
    agent = make_agent()
    # member 0: dim 0 bins (1, 5), dim 1 bins (2, 0); member 1: (3, 1), (0, 4)
    agent.critic = Fixed([[1, 5, 2, 0], [3, 1, 0, 4]])
    obs = torch.zeros(2, 3)
    # mean over members: dim 0 (2, 3) -> bin 1; dim 1 (1, 2) -> bin 1
    assert agent.greedy(obs).tolist() == [[1, 1], [1, 1]]
    # Q(s, a=(0, 1)) = mean_k mean_i U: member 0 (1 + 0) / 2, member 1 (3 + 4) / 2 -> 2.0
    # Q(s, a=(1, 1)): member 0 (5 + 0) / 2, member 1 (1 + 4) / 2 -> 2.5
    # Q(s, a=(0, 0)): member 0 (1 + 2) / 2, member 1 (3 + 0) / 2 -> 1.5
    # Each row's value differs, so a row's action applied to another row shows.
    obs = torch.zeros(3, 3)
    actions = torch.tensor([[0, 1], [1, 1], [0, 0]])
    q = agent.q_value(obs, actions.float())  # the harness passes float actions
    assert q.tolist() == pytest.approx([2.0, 2.5, 1.5])


def test_target_with_termination_and_n_step_discount_by_hand():
    agent = make_agent()
    agent.critic_target = Fixed([[1, 5, 2, 0], [3, 1, 0, 4]])
    # the ensemble's mean utilities: dim 0 (2, 3), dim 1 (1, 2); max per dim (3, 2) -> 2.5.
    # Each member's own target, max per dim first: member 0 (5, 2) -> 3.5, member 1 (3, 4)
    # -> 3.5 (their mean, 3.5, is not the target: it maximises before averaging)
    batch = make_batch(3, rewards=torch.tensor([1.0, 1.0, 0.5]),
                       discounts=torch.tensor([0.99**3, 0.99**3, 0.99]),
                       terminated=torch.tensor([0.0, 1.0, 0.0]))  # fmt: skip
    y, per_member = agent.compute_target(batch)
    torch.testing.assert_close(y, torch.tensor([1 + 0.99**3 * 2.5, 1.0, 0.5 + 0.99 * 2.5]))
    torch.testing.assert_close(per_member, torch.full((2, 3), 3.5))


def test_double_q_target_values_the_online_choice_with_the_target_critics():
    agent = make_agent(double_q=True)
    # Online critics: mean over members dim 0 (2, 3) -> bin 1; dim 1 (1, 2) -> bin 1.
    agent.critic = Fixed([[1, 5, 2, 0], [3, 1, 0, 4]])
    # Target critics prefer the other bins: mean dim 0 (6, 1), dim 1 (5, 2); a max would give
    # (6 + 5) / 2 = 5.5, the online choice (1, 1) gives (1 + 2) / 2 = 1.5.
    agent.critic_target = Fixed([[8, 0, 4, 3], [4, 2, 6, 1]])
    batch = make_batch(2, rewards=torch.tensor([1.0, 0.0]), discounts=torch.tensor([0.9, 0.9]),
                       terminated=torch.tensor([0.0, 1.0]))  # fmt: skip
    y, per_member = agent.compute_target(batch)
    torch.testing.assert_close(y, torch.tensor([1 + 0.9 * 1.5, 0.0]))
    # member 0 at bins (1, 1): (0 + 3) / 2; member 1: (2 + 1) / 2
    torch.testing.assert_close(per_member, torch.full((2, 2), 1.5))
    agent.cfg.double_q = False
    torch.testing.assert_close(agent.compute_target(batch)[0], torch.tensor([1 + 0.9 * 5.5, 0.0]))


def test_regularisation_loss_by_hand():
    agent = make_agent(n_members=1, reg_weight=0.5)
    agent.critic = Fixed([[1, 0, 0, 3]])  # U(a=(0, 1)) = (1, 3): Q = 2
    batch = make_batch(1, actions=torch.tensor([[0, 1]]), rewards=torch.tensor([2.0]),
                       terminated=torch.tensor([1.0]))  # y = 2, no bootstrap  # fmt: skip
    loss, metrics = agent.losses(batch)
    w = 1 - math.exp(-1.0)  # |delta| = 1 in both dimensions
    assert metrics["loss/td"].item() == pytest.approx(0.0)  # Q = y
    assert metrics["loss/reg"].item() == pytest.approx(w * 0.5)  # Huber(1) = 0.5
    assert loss.item() == pytest.approx(0.5 * w * 0.5)


def test_regularisation_weights_are_not_differentiated():
    agent = make_agent(n_members=1, reg_weight=1.0)
    table = torch.tensor([[1.0, 0.0, 0.0, 3.0]], requires_grad=True)
    agent.critic = lambda obs: table[:, None, :].expand(-1, obs.shape[0], -1)
    batch = make_batch(1, actions=torch.tensor([[0, 1]]), rewards=torch.tensor([2.0]),
                       terminated=torch.tensor([1.0]))  # fmt: skip
    loss, _ = agent.losses(batch)
    (grad,) = torch.autograd.grad(loss, table)
    w = 1 - math.exp(-1.0)
    # d reg / dU_i = w * (U_i - y) / D for |U_i - y| <= 1 (no term through w); TD: 0 at Q = y.
    torch.testing.assert_close(grad, torch.tensor([[-w / 2, 0.0, 0.0, w / 2]]))


def test_ensemble_equals_separate_networks():
    big = make_agent(n_members=3)
    obs = torch.randn(5, 3)
    u = big.utilities(big.critic, obs)  # 3 x 5 x 2 x 2
    for k in range(3):
        single = make_agent(n_members=1)
        single.critic.load_state_dict({n: p[k : k + 1] for n, p in big.critic.state_dict().items()})
        torch.testing.assert_close(single.utilities(single.critic, obs)[0], u[k])


def test_epsilon_decays_linearly_and_explores_every_bin():
    agent = make_agent(epsilon_decay_steps=100, epsilon_start=1.0, epsilon_end=0.05)
    assert agent.epsilon() == 1.0
    actions = agent.act(np.zeros((50, 3), np.float32), deterministic=False)
    assert agent.epsilon() == pytest.approx(1.0 - 0.5 * 0.95)
    assert set(np.unique(actions)) == {0, 1}
    agent.act(np.zeros((80, 3), np.float32), deterministic=False)
    assert agent.epsilon() == pytest.approx(0.05)


def test_discrete_space_is_one_dimension():
    torch.manual_seed(0)
    agent = revalued.Agent(revalued.Config(hidden=[8], n_members=2), OBS, gym.spaces.Discrete(4))
    assert (agent.dims, agent.bins) == (1, 4)
    assert agent.act(np.zeros((6, 3), np.float32), deterministic=True).shape == (6,)
    assert agent.q_value(torch.zeros(6, 3), torch.zeros(6)).shape == (6,)


def run(tmp_path, name, seed=0):
    argv = ["--agent", "revalued", "--env", "Hopper-v5", "--bins", "3", "--total-steps", "600",
            "--set", "learning_starts=300", "--set", "hidden=[16]", "--set", "n_members=3",
            "--eval-every", "600", "--eval-episodes", "1", "--seed", str(seed),
            "--run-dir", str(tmp_path / name), "--progress", "off"]  # fmt: skip
    assert train.main(argv) == 0
    return torch.load(tmp_path / name / "checkpoints" / "final.pt", weights_only=True)


def test_smoke_determinism_and_reload(tmp_path):
    a, b = run(tmp_path, "a"), run(tmp_path, "b")
    assert a["counters"]["gradient_updates"] == 301  # updates ran past the warm-up
    for name, value in a["agent_state"]["critic"].items():
        torch.testing.assert_close(b["agent_state"]["critic"][name], value, rtol=0, atol=0)
    agent = evaluate.load_agent(tmp_path / "a", None)[0]
    obs = np.random.default_rng(0).normal(size=(20, 11)).astype(np.float32)
    fresh = revalued.Agent(agent.cfg, gym.spaces.Box(-np.inf, np.inf, (11,)),
                           gym.spaces.MultiDiscrete([3, 3, 3]))  # fmt: skip
    fresh.load_state_dict(a["agent_state"])
    np.testing.assert_array_equal(fresh.act(obs, True), agent.act(obs, True))


DECQN = {"n_members": 1, "reg_weight": 0.0, "double_q": True}  # the authors' DecQN


@pytest.mark.parametrize(
    ("full_name", "ablation_name", "changes"),
    [
        ("hopper-cpu", "hopper-cpu-decqn", DECQN),
        ("walker2d-cpu", "walker2d-cpu-decqn", DECQN),
        ("hopper-cpu", "hopper-cpu-noreg", {"reg_weight": 0.0}),
    ],
)
def test_ablation_presets_change_only_what_they_ablate(full_name, ablation_name, changes):
    """The study's ablations (DecQN; the regularisation loss alone) of the REValueD presets."""
    root = Path(__file__).resolve().parents[1] / "configs" / "revalued"
    full = load_yaml(root / f"{full_name}.yaml")
    ablation = load_yaml(root / f"{ablation_name}.yaml")
    agent_full, agent_ablation = full.pop("agent_config"), ablation.pop("agent_config")
    assert full == ablation  # env, bins, budget, utd: identical
    assert agent_ablation == {**agent_full, **changes}
    assert agent_full["n_members"] > 1
    assert agent_full.get("reg_weight", revalued.Config().reg_weight) > 0


# ---- pixels: the shared IMPALA-CNN encoder (issue 20, item 5) --------------------------------
def test_reward_scale_scales_the_target_and_q_value_reports_env_units():
    agent = make_agent(reward_scale=0.1)
    table = [[1, 5, 2, 0], [3, 1, 0, 4]]
    agent.critic, agent.critic_target = Fixed(table), Fixed(table)
    batch = make_batch(2, rewards=torch.tensor([10.0, 10.0]), discounts=torch.tensor([0.9, 0.9]),
                       terminated=torch.tensor([0.0, 1.0]))  # fmt: skip
    # the target ensemble's max-of-mean is 2.5 (test above); the reward enters as 0.1 x 10
    torch.testing.assert_close(agent.compute_target(batch)[0], torch.tensor([1 + 0.9 * 2.5, 1.0]))
    # the critics output 2.0 at a = (0, 1) (first test): 2.0 / 0.1 in the env's units
    q = agent.q_value(torch.zeros(1, 3), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(q, torch.tensor([20.0]))


def test_reward_scale_c_learns_what_scale_1_learns_on_c_times_the_rewards():
    """Same initial weights and batches: scale 0.1 on rewards r updates the critics exactly as
    scale 1 on rewards 0.1 r, and reports that agent's estimates divided by 0.1."""
    scaled, plain = make_agent(reward_scale=0.1), make_agent()
    for i in range(3):
        batch = make_batch(16, seed=i, bins=2, rewards=torch.linspace(-10, 10, 16))
        logged = scaled.update(batch)
        logged_plain = plain.update(dataclasses.replace(batch, rewards=batch.rewards * 0.1))
        for key in ("q/mean", "target/member_std"):  # logged in the env's reward units
            torch.testing.assert_close(logged[key], logged_plain[key] / 0.1)
    for (name, a), b in zip(scaled.critic.named_parameters(), plain.critic.parameters()):
        assert torch.equal(a, b), name
    obs, actions = torch.randn(5, 3), torch.randint(0, 2, (5, 2)).float()
    torch.testing.assert_close(scaled.q_value(obs, actions), plain.q_value(obs, actions) / 0.1)


def test_reward_scale_must_be_positive():
    with pytest.raises(ValueError, match="reward_scale > 0"):
        make_agent(reward_scale=0.0)


FRAMES = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)  # Procgen's observations
BUTTONS = gym.spaces.Discrete(15)  # Procgen's actions: one dimension of 15 bins


def pixel_agent(seed=0, **overrides) -> revalued.Agent:
    torch.manual_seed(seed)
    cfg = {"encoder": "impala", "hidden": [32], "n_members": 3, "double_q": True, **overrides}
    return revalued.Agent(revalued.Config(**cfg), FRAMES, BUTTONS)


def frames(b, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 64, 64, 3), dtype=torch.uint8, generator=g)


def pixel_batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed + 100)
    return make_batch(b, seed=seed, obs=frames(b, seed), next_obs=frames(b, seed + 1),
                      actions=torch.randint(0, 15, (b,), generator=g),
                      terminated=torch.tensor([0.0, 1.0] * (b // 2)))  # fmt: skip


def params(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def test_impala_members_share_one_encoder_and_differ_in_their_heads():
    agent = pixel_agent()
    out = agent.critic(frames(5, 0))
    assert out.shape == (3, 5, 15) and out.dtype == torch.float32  # K x B x (D * bins)
    assert agent.utilities(agent.critic, frames(5, 0)).shape == (3, 5, 1, 15)
    encoders = [m for m in agent.critic.modules() if isinstance(m, ImpalaCNN)]
    assert len(encoders) == 1  # one set of encoder parameters for all K members
    n_encoder = sum(p.numel() for p in encoders[0].parameters())
    n_heads = sum(p.numel() for p in agent.critic.heads.parameters())
    assert sum(p.numel() for p in agent.critic.parameters()) == n_encoder + n_heads
    assert n_encoder == 622_144
    assert n_heads == 3 * (256 * 32 + 32 + 32 * 15 + 15)  # K heads 256 -> 32 -> 15
    for layer in agent.critic.heads.layers:  # independently initialised members
        assert not torch.equal(layer.weight[0], layer.weight[1])
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


def test_impala_smoke_update_changes_weights_and_moves_the_target_encoder():
    agent = pixel_agent()
    before, target_before = params(agent.critic), params(agent.critic_target)
    for name, p in target_before.items():  # the target starts as a copy
        torch.testing.assert_close(p, before[name], rtol=0, atol=0)
    metrics = agent.update(pixel_batch())
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in metrics.values())
    after, target_after = params(agent.critic), params(agent.critic_target)
    assert not torch.equal(after["encoder.dense.weight"], before["encoder.dense.weight"])
    assert not torch.equal(after["encoder.stages.0.conv.weight"],
                           before["encoder.stages.0.conv.weight"])  # fmt: skip
    assert not torch.equal(after["heads.layers.0.weight"], before["heads.layers.0.weight"])
    tau = agent.cfg.tau
    for name in ("encoder.stages.0.conv.weight", "encoder.dense.weight", "heads.layers.1.weight"):
        assert not torch.equal(target_after[name], target_before[name])  # Polyak moved it
        expected = (1 - tau) * target_before[name] + tau * after[name]
        torch.testing.assert_close(target_after[name], expected)
    assert agent.act(frames(4, 3).numpy(), deterministic=False).shape == (4,)


def test_impala_update_under_bf16_autocast_keeps_losses_in_fp32():
    agent = pixel_agent()
    batch = pixel_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = agent.critic.encoder(batch.obs)
        loss, metrics = agent.losses(batch)
        y, _ = agent.compute_target(batch)
        update_metrics = agent.update(batch)
    assert features.dtype == torch.bfloat16  # the encoder really ran in bf16
    assert loss.dtype == y.dtype == torch.float32
    assert metrics["loss/td"].dtype == metrics["loss/reg"].dtype == torch.float32
    assert update_metrics["loss/td"].dtype == torch.float32
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in update_metrics.values())


def test_impala_state_dict_round_trip_gives_identical_greedy_actions():
    agent = pixel_agent(seed=0)
    for seed in range(2):
        agent.update(pixel_batch(seed=seed))
    fresh = pixel_agent(seed=1)
    obs = frames(16, 7).numpy()
    assert not np.array_equal(fresh.critic(torch.as_tensor(obs)).detach().numpy(),
                              agent.critic(torch.as_tensor(obs)).detach().numpy())  # fmt: skip
    fresh.load_state_dict(agent.state_dict())
    np.testing.assert_array_equal(fresh.act(obs, True), agent.act(obs, True))
    for name, p in agent.critic_target.state_dict().items():
        torch.testing.assert_close(fresh.critic_target.state_dict()[name], p, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("encoder", "space", "hint"),
    [
        ("impala", OBS, "--set encoder=simba"),
        ("impala", gym.spaces.Box(0.0, 1.0, (64, 64, 3), np.float32), "--set encoder=simba"),
        ("simba", FRAMES, "--set encoder=impala"),
        ("cnn", OBS, "use simba or impala"),
    ],
)
def test_wrong_encoder_for_the_observations_is_one_error_line(encoder, space, hint):
    with pytest.raises(ValueError, match=hint) as info:
        revalued.Agent(revalued.Config(encoder=encoder, hidden=[8]), space, BUTTONS)
    assert "\n" not in str(info.value)
