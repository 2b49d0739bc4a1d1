"""SAC and TQC: the maths against hand computation, then smoke, round trip and determinism."""

from __future__ import annotations

import copy
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import evaluate
import train
from agents import sac, tqc
from agents.nets import EnsembleMLP, mlp
from tests.batches import make_batch
from training import launch

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT_SPACE = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def make_agent(module, **overrides):
    torch.manual_seed(0)
    base = {"arch": "mlp", "actor_hidden": [16], "critic_hidden": [16]}
    return module.Agent(module.Config(**{**base, **overrides}), OBS_SPACE, ACT_SPACE)


class ConstantCritic(nn.Module):
    """Target-critic stand-in: the same atoms (E x M) for every input, as E x B x M."""

    def __init__(self, atoms: list[list[float]]):
        super().__init__()
        self.atoms = torch.tensor(atoms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.atoms[:, None, :].expand(-1, x.shape[0], -1)


# ---- the tanh-Gaussian policy -----------------------------------------------------------
def test_tanh_log_prob_matches_a_numerical_density():
    # The density of a = tanh(u), u ~ N(mean, std^2), estimated per dimension as
    # (P(a < A < a + h) - P(a - h < A < a)) / 2h from the Gaussian CDF; dims are independent.
    mean, log_std = (
        torch.tensor([[0.3, -1.2]], dtype=torch.float64),
        torch.tensor([[-0.5, 0.4]], dtype=torch.float64),
    )
    u = torch.tensor([[0.7, -2.5]], dtype=torch.float64)
    a, h = torch.tanh(u), 1e-6
    normal = torch.distributions.Normal(mean, log_std.exp())
    cdf = lambda x: normal.cdf(torch.atanh(x))  # noqa: E731
    density = (cdf(a + h) - cdf(a - h)) / (2 * h)
    expected = density.log().sum(-1)
    got = sac.tanh_log_prob(u, mean, log_std)
    assert torch.allclose(got, expected, rtol=1e-6), (got, expected)


def test_tanh_log_prob_stays_finite_where_tanh_rounds_to_one():
    u = torch.tensor([[12.0]])  # tanh(12) == 1.0 in float32
    got = sac.tanh_log_prob(u, torch.zeros(1, 1), torch.zeros(1, 1))
    # log N(12; 0, 1) - log(1 - tanh^2(12)) = -72 - log sqrt(2 pi) + 2 log cosh(12)
    expected = -72.0 - 0.5 * math.log(2 * math.pi) + 2 * (12.0 - math.log(2.0))
    assert torch.isfinite(got).all() and abs(float(got) - expected) < 1e-3


def test_log_prob_epsilon_is_sb3s_form_and_reaches_the_actor():
    # SB3 / CleanRL: log N(u) - log(1 - tanh(u)^2 + eps). At u = 12 (tanh rounds to 1) the
    # Jacobian term is capped at -log(eps): -72 - log sqrt(2 pi) + log(1e6) = -59.10.
    u, zero = torch.tensor([[12.0, 0.5]]), torch.zeros(1, 2)
    got = sac.tanh_log_prob(u, zero, zero, epsilon=1e-6)
    by_hand = (
        -72.0 + 6 * math.log(10.0)
        - 0.125 - math.log(1 - math.tanh(0.5) ** 2 + 1e-6)
        - 2 * 0.5 * math.log(2 * math.pi)
    )  # fmt: skip
    assert abs(float(got) - by_hand) < 1e-4
    # The default (0) stays the exact form, 2 (12 - log 2) - log(1e6) = 8.80 nats higher here
    # (at u = 0.5 the two differ by ~1e-6); the agent hands its setting to the actor.
    gap = float(sac.tanh_log_prob(u, zero, zero) - got)
    assert abs(gap - (2 * (12.0 - math.log(2.0)) - 6 * math.log(10.0))) < 1e-3
    agent = make_agent(sac, log_prob_epsilon=1e-6)
    assert agent.actor.log_prob_epsilon == 1e-6 and make_agent(tqc).actor.log_prob_epsilon == 0
    with pytest.raises(ValueError, match="log_prob_epsilon"):
        make_agent(sac, log_prob_epsilon=-1.0)


def test_actor_log_std_bounds():
    actor = sac.TanhGaussianActor("mlp", 3, 2, [8], -5.0, 2.0, "tanh")
    with torch.no_grad():
        actor.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 100.0, -100.0]))
        actor.net[-1].weight.zero_()
    _, log_std = actor(torch.zeros(1, 3))
    assert torch.allclose(log_std, torch.tensor([[2.0, -5.0]]))
    actor.smooth = False
    with torch.no_grad():
        actor.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 1.5, -7.0]))
    assert torch.allclose(actor(torch.zeros(1, 3))[1], torch.tensor([[1.5, -5.0]]))
    # Zero raw output sits mid-range with tanh: -5 + 0.5 * 7 = -1.5.
    actor.smooth = True
    with torch.no_grad():
        actor.net[-1].bias.zero_()
    assert torch.allclose(actor(torch.zeros(1, 3))[1], torch.full((1, 2), -1.5))


# ---- temperature ------------------------------------------------------------------------
def test_temperature_gradient_is_minus_log_prob_plus_target():
    temp = sac.Temperature(initial=0.1, target_entropy=-1.0)
    temp.loss(torch.tensor([0.5, 1.5, 2.5])).backward()
    # d/d log_alpha of -log_alpha * mean(log_prob + target) = -(1.5 - 1.0)
    assert math.isclose(float(temp.log_alpha.grad), -0.5, rel_tol=1e-6)


def test_temperature_direction_against_target_entropy():
    # Policy entropy 0.2 (log_prob -0.2) below target 1.0 -> alpha must grow; above -> shrink.
    for log_prob, grow in ((-0.2, True), (-3.0, False)):
        temp = sac.Temperature(initial=0.5, target_entropy=1.0)
        opt = torch.optim.SGD(temp.parameters(), lr=0.1)
        before = float(temp.alpha())
        opt.zero_grad()
        temp.loss(torch.full((4,), log_prob)).backward()
        opt.step()
        assert (float(temp.alpha()) > before) == grow


# ---- SAC target -------------------------------------------------------------------------
def test_sac_target_takes_min_and_subtracts_alpha_log_prob():
    agent = make_agent(sac)
    agent.critic_target = ConstantCritic([[3.0], [1.0]])
    with torch.no_grad():
        agent.temperature.log_alpha.fill_(math.log(0.5))
    batch = make_batch(3, terminated=torch.tensor([0.0, 1.0, 0.0]))
    torch.manual_seed(5)
    _, log_prob = agent.actor.sample(batch.next_obs)
    torch.manual_seed(5)
    y = agent.compute_target(batch)
    soft_v = 1.0 - 0.5 * log_prob
    expected = batch.rewards + 0.99 * torch.tensor([1.0, 0.0, 1.0]) * soft_v
    assert torch.allclose(y, expected, atol=1e-6)


def test_sac_actor_update_leaves_critic_untouched_and_trains_all_parts():
    # A large tau: an Adam step moves the critic ~3e-4, so a target step of tau times that
    # stands clear of float tolerance.
    agent = make_agent(sac, tau=0.25)
    critic_before = copy.deepcopy(agent.critic.state_dict())
    actor_loss, _ = agent.actor_loss(make_batch(8).obs)
    agent.actor_opt.zero_grad()
    actor_loss.backward(inputs=agent._actor_params)
    assert all(p.grad is None for p in agent.critic.parameters())
    actor_before = copy.deepcopy(agent.actor.state_dict())
    target_before = {k: v.clone() for k, v in agent.critic_target.named_parameters()}
    log_alpha_before = agent.temperature.log_alpha.detach().clone()
    metrics = agent.update(make_batch(8))
    assert set(metrics) >= {"loss/critic", "loss/actor", "loss/temperature", "policy/alpha"}
    changed = [
        k for k, v in agent.critic.state_dict().items() if not torch.equal(v, critic_before[k])
    ]
    assert changed  # the critic step itself did run
    assert not all(torch.equal(v, agent.actor.state_dict()[k]) for k, v in actor_before.items())
    assert not torch.equal(agent.temperature.log_alpha.detach(), log_alpha_before)
    # Polyak step after the critic step: target <- (1 - tau) * old target + tau * new critic.
    tau, critic = agent.cfg.tau, dict(agent.critic.named_parameters())
    assert target_before
    for k, v in agent.critic_target.named_parameters():
        torch.testing.assert_close(v, (1 - tau) * target_before[k] + tau * critic[k].detach())


# ---- TQC: quantile Huber loss and truncation ---------------------------------------------
def test_quantile_huber_loss_and_gradient_by_hand():
    # z = [0, 1] at tau = [0.25, 0.75]; targets y = [0.5, 3].
    # pairs (u, weight, huber): (0.5, .25, .125), (3, .25, 2.5), (-0.5, .25, .125), (2, .75, 1.5)
    z = torch.tensor([[[0.0, 1.0]]], requires_grad=True)  # E=1 x B=1 x M=2
    y = torch.tensor([[0.5, 3.0]])  # B=1 x K=2
    loss = tqc.quantile_huber_loss(z, y)
    assert math.isclose(float(loss.detach()), (0.03125 + 0.625 + 0.03125 + 1.125) / 4, rel_tol=1e-6)
    loss.backward()
    # d/dz_m = -(1/4) sum_k weight * clamp(u, -1, 1)
    expected = torch.tensor([[[-(0.25 * 0.5 + 0.25 * 1.0) / 4, -(0.25 * -0.5 + 0.75 * 1.0) / 4]]])
    assert torch.allclose(z.grad, expected)


def test_quantile_huber_loss_matches_autograd_of_its_definition():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = 2 * torch.randn(5, 7, generator=g, dtype=torch.float64)
    taus = (torch.arange(4, dtype=torch.float64) + 0.5) / 4
    u = y[None, :, None, :] - z[..., None]
    huber = torch.where(u.abs() <= 1, 0.5 * u**2, u.abs() - 0.5)
    reference = ((taus[:, None] - (u < 0).double()).abs() * huber).mean()
    ours = tqc.quantile_huber_loss(z, y)
    (g_ref,) = torch.autograd.grad(reference, z)
    (g_ours,) = torch.autograd.grad(ours, z)
    assert torch.allclose(ours, reference) and torch.allclose(g_ours, g_ref)


def test_truncation_pools_sorts_and_drops_the_largest():
    atoms = torch.tensor([[[1.0, 5.0, 3.0]], [[4.0, 2.0, 6.0]]])  # E=2 x B=1 x M=3
    assert torch.equal(tqc.truncated_atoms(atoms, 2), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert torch.equal(
        tqc.truncated_atoms(atoms, 0), torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    )


@pytest.mark.parametrize("drop_per_net, kept", [(0, [1, 2, 3, 4, 5, 6]), (1, [1, 2, 3, 4])])
def test_tqc_target_changes_with_the_drop_count(drop_per_net, kept):
    agent = make_agent(tqc, n_critics=2, n_quantiles=3, drop_per_net=drop_per_net)
    agent.critic_target = ConstantCritic([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
    with torch.no_grad():
        agent.temperature.log_alpha.fill_(-math.inf)  # alpha = 0: isolate the truncation
    batch = make_batch(2, rewards=torch.tensor([1.0, -1.0]), terminated=torch.tensor([0.0, 1.0]))
    y = agent.compute_target(batch)
    expected = torch.stack([1.0 + 0.99 * torch.tensor(kept, dtype=torch.float32),
                            torch.full((len(kept),), -1.0)])  # fmt: skip
    assert torch.allclose(y, expected)
    # The mean target falls as more top atoms are dropped: 3.5 vs 2.5 (before reward/discount).


def test_tqc_actor_ascends_the_mean_of_all_atoms_and_exposes_the_truncated_one():
    agent = make_agent(tqc, n_critics=2, n_quantiles=3, drop_per_net=1)
    agent.critic = ConstantCritic([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
    obs, actions = torch.zeros(2, 3), torch.zeros(2, 2)
    estimates = agent.q_estimates(obs, actions)
    assert torch.allclose(agent.q_value(obs, actions), torch.full((2,), 3.5))
    assert torch.allclose(estimates["mean"], torch.full((2,), 3.5))
    assert torch.allclose(estimates["truncated"], torch.full((2,), 2.5))


def test_distributional_ensemble_equals_separate_networks():
    torch.manual_seed(0)
    ensemble = EnsembleMLP(3, 5, 25, [16, 16])
    nets = [mlp(5, 25, [16, 16]) for _ in range(3)]
    for i, net in enumerate(nets):
        ensemble.load_member(i, net)
    x = torch.randn(7, 5)
    out = ensemble(x)
    assert out.shape == (3, 7, 25)
    for i, net in enumerate(nets):
        assert torch.allclose(out[i], net(x), atol=1e-6)


def test_tqc_rejects_dropping_every_atom():
    with pytest.raises(ValueError, match="drop_per_net"):
        make_agent(tqc, n_quantiles=3, drop_per_net=3)


# ---- configuration ------------------------------------------------------------------------
def test_sac_arch_switch_selects_each_papers_defaults():
    parser = train.build_parser()
    run, cfg = launch.resolve_config(parser.parse_args(["--agent", "sac"]))
    assert (cfg.arch, cfg.critic_hidden, cfg.actor_hidden, run.utd) == (
        "simba",
        [512, 512],
        [128],
        2.0,
    )
    assert (cfg.critic_lr, cfg.weight_decay, cfg.initial_temperature) == (1e-4, 1e-2, 0.01)
    assert cfg.target_entropy_scale == -0.5
    run, cfg = launch.resolve_config(parser.parse_args(["--agent", "sac", "--arch", "mlp"]))
    assert (cfg.critic_hidden, cfg.actor_lr, cfg.weight_decay, run.utd) == (
        [256, 256],
        3e-4,
        0.0,
        1.0,
    )
    assert (cfg.initial_temperature, cfg.target_entropy_scale) == (1.0, -1.0)
    # Explicit choices still win over the architecture's defaults.
    args = ["--agent", "sac", "--utd", "1", "--set", "critic_hidden=[64]"]
    run, cfg = launch.resolve_config(parser.parse_args(args))
    assert (run.utd, cfg.critic_hidden, cfg.actor_hidden) == (1.0, [64], [128])


def test_tqc_defaults_are_the_papers():
    cfg = tqc.Config()
    assert (cfg.n_critics, cfg.n_quantiles, cfg.critic_hidden) == (5, 25, [512, 512, 512])
    assert (cfg.random_steps, cfg.learning_starts, cfg.batch_size) == (0, 256, 256)


# ---- smoke, round trip, determinism --------------------------------------------------------
def tiny(agent: str, run_dir, *extra: str) -> list[str]:
    return [
        "--agent", agent, "--env", "Pendulum-v1", "--seed", "3", "--total-steps", "200",
        "--eval-every", "200", "--eval-episodes", "1", "--device", "cpu", "--utd", "1",
        "--set", "learning_starts=100", "--set", "batch_size=32",
        "--set", "actor_hidden=[16]", "--set", "critic_hidden=[16]",
        "--set", "buffer_size=1000", "--progress", "off", "--run-dir", str(run_dir), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("agent, extra", [("sac", ()), ("sac", ("--arch", "mlp")), ("tqc", ())])
def test_smoke_round_trip_and_determinism(agent, extra, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert train.main(tiny(agent, run, *extra)) == 0
    first, second = (json.loads((r / "summary.json").read_text()) for r in runs)
    assert first["gradient_updates"] == 101  # updates from step 100 to 200, one per step
    first.pop("wall_time_s"), second.pop("wall_time_s")
    assert first == second
    a = torch.load(runs[0] / "checkpoints" / "final.pt", weights_only=True)
    b = torch.load(runs[1] / "checkpoints" / "final.pt", weights_only=True)
    for net in ("actor", "critic", "critic_target", "temperature"):
        for key, value in a["agent_state"][net].items():
            assert torch.equal(value, b["agent_state"][net][key]), f"{net}.{key}"
    # Save -> load gives the same deterministic actions (and the SimBa statistics came along).
    agent_obj, env, _, _ = evaluate.load_agent(runs[0], None)
    clone, _, _, _ = evaluate.load_agent(runs[1], None)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(agent_obj.act(obs, True), clone.act(obs, True))
    assert np.all(np.abs(agent_obj.act(obs, False)) <= 1.0)
    if agent_obj.obs_norm is not None:
        assert float(agent_obj.obs_norm.count) == pytest.approx(200 + 1e-4)


def test_compiled_losses_are_the_eager_losses():
    """`compile: true` (SAC's init compiles the SEED_AXIS losses; TQC's critic loss with its
    custom autograd Function): with inductor's random numbers drawn the eager way, three
    compiled updates leave every tensor within 1e-5 of three eager ones."""
    import gymnasium as gym
    import torch._inductor.config as inductor

    from agents import tqc
    from agents.buffer import Batch

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    batches = [Batch(obs=torch.randn(16, 5, generator=g),
                     actions=torch.rand(16, 2, generator=g) * 2 - 1,
                     rewards=torch.randn(16, generator=g), next_obs=torch.randn(16, 5, generator=g),
                     terminated=torch.zeros(16), truncated=torch.zeros(16),
                     discounts=torch.full((16,), 0.99), extras={}, indices=None)
               for _ in range(3)]  # fmt: skip
    states = []
    # torch's own patch, not monkeypatch: pytest 9.2's undo deletes an attribute it did not find
    # in the module's __dict__, and deleting a torch config hides it from every later compile
    with inductor.patch(fallback_random=True):
        for compiled in (False, True):
            torch.manual_seed(0)
            cfg = tqc.Config(actor_hidden=[16], critic_hidden=[16], n_critics=2, n_quantiles=3,
                             drop_per_net=1, compile=compiled)  # fmt: skip
            agent = tqc.Agent(cfg, gym.spaces.Box(-1, 1, (5,)), gym.spaces.Box(-1, 1, (2,)))
            for batch in batches:
                agent.update(batch)
            states.append(agent.state_dict())
    for name in ("actor", "critic", "critic_target", "temperature"):
        for key, eager in states[0][name].items():
            assert torch.allclose(states[1][name][key], eager, rtol=1e-5, atol=1e-6), (name, key)
