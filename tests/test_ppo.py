"""PPO (agents/ppo.py): GAE, the clipped losses and the reward scaler against hand-computed
numbers; acting, the update's step count, checkpoints, determinism, bf16, bad inputs."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import get_agent_module
from agents.ppo import Agent, Config, compute_gae, policy_loss, value_loss

torch.set_num_threads(1)

VEC_OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
FRAMES = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)  # small frames: fast IMPALA-CNN tests
ACTIONS = gym.spaces.Discrete(4)


def mlp_agent(seed: int = 0, **overrides) -> Agent:
    torch.manual_seed(seed)
    return Agent(Config(encoder="mlp", **overrides), VEC_OBS, ACTIONS)


def random_batch(size: int, obs_shape=(4,), seed: int = 0, pixels: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    if pixels:
        obs = torch.randint(0, 256, (size, *obs_shape), generator=g, dtype=torch.uint8)
    else:
        obs = torch.randn(size, *obs_shape, generator=g)
    return {
        "obs": obs,
        "actions": torch.randint(0, 4, (size,), generator=g),
        "log_probs": torch.full((size,), math.log(0.25)),
        "advantages": torch.randn(size, generator=g),
        "returns": torch.randn(size, generator=g),
        "values": torch.randn(size, generator=g) * 0.1,
    }


def params(agent: Agent) -> list[torch.Tensor]:
    return [p.detach().clone() for p in agent.net.parameters()]


# ---- the maths, by hand -----------------------------------------------------------------------
def test_compute_gae_by_hand():
    # T = 3 steps x N = 2 envs; env 0's episode ends after step 1 (no bootstrap across it).
    rewards = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    values = np.array([[0.5, 1.0], [1.0, 0.0], [0.0, 2.0]])
    dones = np.array([[False, False], [True, False], [False, False]])
    next_value = np.array([4.0, 2.0])
    adv, ret = compute_gae(rewards, values, dones, next_value, gamma=0.5, lam=0.5)
    # gamma * lam = 0.25. Env 0: delta_2 = 2 + 0.5*4 - 0 = 4 (bootstrap from next_value);
    # delta_1 = 0 - 1 = -1 (episode end: no V(s_2), no carry); delta_0 = 1 + 0.5*1 - 0.5 = 1,
    # A_0 = 1 + 0.25*(-1) = 0.75. Env 1: delta_2 = 0 + 0.5*2 - 2 = -1; delta_1 = 1 + 0.5*2 - 0
    # = 2, A_1 = 2 - 0.25 = 1.75; delta_0 = 0 + 0.5*0 - 1 = -1, A_0 = -1 + 0.25*1.75 = -0.5625.
    expected = np.array([[0.75, -0.5625], [-1.0, 1.75], [4.0, -1.0]])
    np.testing.assert_allclose(adv, expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(ret, expected + values, rtol=0, atol=1e-7)
    assert adv.dtype == np.float32 and ret.dtype == np.float32 and adv.shape == (3, 2)
    # lambda = 0: the advantages are the one-step TD errors.
    adv0, _ = compute_gae(rewards, values, dones, next_value, gamma=0.5, lam=0.0)
    np.testing.assert_allclose(adv0, [[1.0, -1.0], [-1.0, 2.0], [4.0, -1.0]], atol=1e-7)


def test_policy_loss_by_hand():
    ratios = torch.tensor([1.1, 1.5, 0.5, 1.5])
    advantages = torch.tensor([1.0, 1.0, 1.0, -1.0])
    loss, approx_kl, clip_fraction = policy_loss(ratios.log(), torch.zeros(4), advantages, 0.2)
    # max(-A r, -A clip(r, 0.8, 1.2)): inside the range -1.1; above with A > 0 the clip binds,
    # -1.2; below with A > 0 the unclipped -0.5 is larger; above with A < 0 the unclipped 1.5.
    assert loss.item() == pytest.approx((-1.1 - 1.2 - 0.5 + 1.5) / 4, abs=1e-6)
    assert clip_fraction.item() == pytest.approx(0.75)  # |r - 1| > 0.2 for three of four
    logs = [math.log(r) for r in (1.1, 1.5, 0.5, 1.5)]
    assert approx_kl.item() == pytest.approx(0.5 * sum(x * x for x in logs) / 4, rel=1e-5)


def test_value_loss_by_hand():
    values = torch.tensor([0.1, 1.0, 1.0])
    old_values = torch.zeros(3)
    returns = torch.tensor([1.0, 0.5, 2.0])
    # clipped values: 0.1 (inside), 0.2, 0.2. Squared errors (unclipped, clipped):
    # (0.81, 0.81), (0.25, 0.09) -> 0.25, (1.0, 3.24) -> 3.24: the max of the two each time.
    loss = value_loss(values, old_values, returns, clip=0.2, clip_value=True)
    assert loss.item() == pytest.approx(0.5 * (0.81 + 0.25 + 3.24) / 3, rel=1e-6)
    plain = value_loss(values, old_values, returns, clip=0.2, clip_value=False)
    assert plain.item() == pytest.approx(0.5 * (0.81 + 0.25 + 1.0) / 3, rel=1e-6)


def test_reward_scaling_by_hand():
    agent = mlp_agent(reward_gamma=0.5)
    # Step 1: ret = [1, 2]; batch mean 1.5, var 0.25, 2 samples merged into (mean 0, var 1,
    # count 1e-4): count 2.0001, M2 = 1e-4 + 0.5 + 1.5^2 * 1e-4 * 2 / 2.0001.
    out1 = agent.scale_rewards(np.array([1.0, 2.0]), np.array([False, True]))
    mean1 = 1.5 * 2 / 2.0001
    var1 = (1e-4 + 0.5 + 2.25 * 2e-4 / 2.0001) / 2.0001
    np.testing.assert_allclose(out1, np.array([1.0, 2.0]) / math.sqrt(var1 + 1e-8), rtol=1e-6)
    assert out1.dtype == np.float32
    assert agent.ret_var == pytest.approx(var1, rel=1e-12)
    # Step 2: env 1's return restarted after its episode end: ret = [0.5*1 + 0, 0 + 3].
    out2 = agent.scale_rewards(np.array([0.0, 3.0]), np.array([False, False]))
    delta = 1.75 - mean1  # batch mean of [0.5, 3] minus the running mean
    var2 = (var1 * 2.0001 + 1.5625 * 2 + delta**2 * 2.0001 * 2 / 4.0001) / 4.0001
    np.testing.assert_allclose(out2, np.array([0.0, 3.0]) / math.sqrt(var2 + 1e-8), rtol=1e-6)
    assert agent.ret_count == pytest.approx(4.0001)
    assert agent.ret_mean == pytest.approx(mean1 + delta * 2 / 4.0001, rel=1e-12)
    # A first reward against the prior's tiny count: std ~ 0.016 * 5, so 5 / std >> 10: clipped.
    fresh = mlp_agent(reward_gamma=0.5)
    assert fresh.scale_rewards(np.array([5.0]), np.array([False])).tolist() == [10.0]
    fresh = mlp_agent(reward_gamma=0.5)
    assert fresh.scale_rewards(np.array([-5.0]), np.array([False])).tolist() == [-10.0]
    # Off: the identity, statistics untouched.
    off = mlp_agent(reward_scaling=False)
    np.testing.assert_array_equal(
        off.scale_rewards(np.array([3.0, -2.0]), np.ones(2, bool)), [3, -2]
    )
    assert (off.ret_mean, off.ret_var, off.ret_count) == (0.0, 1.0, 1e-4)


# ---- the agent ----------------------------------------------------------------------------------
def test_act_deterministic_is_argmax_and_policy_step():
    agent = mlp_agent()
    with torch.no_grad():
        agent.net.logits.weight.zero_()
        agent.net.logits.bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    actions = agent.act(obs, deterministic=True)
    assert actions.dtype == np.int64 and actions.tolist() == [2] * 6
    agent = mlp_agent(seed=1)
    logits, values = agent.net(torch.as_tensor(obs))
    np.testing.assert_array_equal(agent.act(obs, True), logits.argmax(-1).numpy())
    actions, log_probs, step_values = agent.policy_step(obs)
    assert actions.shape == log_probs.shape == step_values.shape == (6,)
    assert actions.dtype == np.int64 and ((0 <= actions) & (actions < 4)).all()
    log_pi = torch.log_softmax(logits, -1).detach().numpy()
    np.testing.assert_allclose(log_probs, log_pi[np.arange(6), actions], rtol=1e-6)
    np.testing.assert_allclose(step_values, values.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(agent.value(obs), step_values, rtol=1e-6)
    assert agent.act(obs, deterministic=False).shape == (6,)


def test_update_runs_epochs_times_minibatches_and_changes_weights():
    agent = mlp_agent(minibatches=4, epochs=3)
    before = params(agent)
    metrics = agent.update(random_batch(32))
    assert agent.updates == 12
    assert set(metrics) == {
        "loss/policy",
        "loss/value",
        "loss/entropy",
        "policy/approx_kl",
        "policy/clip_fraction",
        "grad_norm",
    }
    for value in metrics.values():
        assert value.dtype == torch.float32 and value.dim() == 0 and not value.requires_grad
        assert torch.isfinite(value)
    assert metrics["loss/entropy"].item() == pytest.approx(math.log(4), abs=0.05)
    assert any(not torch.equal(a, b) for a, b in zip(before, params(agent)))
    agent.update(random_batch(30, seed=1))  # B not divisible by minibatches: uneven splits
    assert agent.updates == 24
    with pytest.raises(ValueError, match="minibatches"):
        agent.update(random_batch(3))


def test_compiled_loss_gives_the_eager_update():
    """`compile: true` compiles the minibatch loss: an update of two minibatch steps leaves
    the weights within 1e-5 of the eager one's."""
    torch.set_num_threads(1)
    results = []
    for compiled in (False, True):
        agent = mlp_agent(minibatches=2, epochs=1, compile=compiled)
        torch.manual_seed(5)  # the minibatch permutation
        agent.update(random_batch(32))
        assert hasattr(agent.loss, "_torchdynamo_orig_callable") == compiled
        results.append(params(agent))
    for eager, compiled in zip(*results, strict=True):
        assert torch.allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_impala_update_under_bf16_keeps_losses_fp32():
    torch.manual_seed(0)
    agent = Agent(Config(minibatches=2, epochs=1), FRAMES, gym.spaces.Discrete(15))
    obs = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, log_probs, values = agent.policy_step(obs)
        batch = random_batch(8, (16, 16, 3), pixels=True)
        batch["actions"] = torch.randint(0, 15, (8,))
        metrics = agent.update(batch)
    assert log_probs.dtype == np.float32 and values.dtype == np.float32
    assert agent.updates == 2
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in metrics.values())


def test_every_minibatch_of_a_bf16_update_runs_on_the_weights_the_last_step_left():
    # The Trainer's autocast around a whole update (3 minibatches = 3 optimizer steps): with
    # autocast's weight cache on, minibatches 2 and 3 ran on the encoder's first bf16 copy.
    import copy

    from agents.nets import update_autocast

    torch.manual_seed(0)
    agent = Agent(Config(minibatches=3, epochs=1), FRAMES, gym.spaces.Discrete(15))
    batch = random_batch(12, (16, 16, 3), pixels=True)
    batch["actions"] = torch.randint(0, 15, (12,))
    encoder, seen = agent.net.encoder, []
    hooks = [
        encoder.register_forward_pre_hook(
            lambda m, args: seen.append([copy.deepcopy(m.state_dict()), args[0].clone()])
        ),
        encoder.register_forward_hook(lambda m, args, out: seen[-1].append(out.detach())),
    ]
    with update_autocast("cpu", True):
        agent.update(batch)
    for hook in hooks:
        hook.remove()
    assert len(seen) == 3
    first, last = seen[0][0], seen[-1][0]
    assert any(not torch.equal(first[k], last[k]) for k in first)  # the weights moved
    for state, frames, out in seen:
        again = copy.deepcopy(encoder)
        again.load_state_dict(state)
        with torch.no_grad(), update_autocast("cpu", True):
            assert torch.equal(again(frames), out)


def pixel_agent(seed: int = 0, **overrides) -> Agent:
    torch.manual_seed(seed)
    return Agent(Config(**overrides), FRAMES, ACTIONS)  # the IMPALA-CNN, channels-last


# (agent maker, observations, batch maker): the vector agent and the pixel agent
KINDS = {
    "mlp": (mlp_agent, lambda rng: rng.normal(size=(16, 4)).astype(np.float32),
            lambda seed: random_batch(16, seed=seed)),
    "impala": (pixel_agent, lambda rng: rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8),
               lambda seed: random_batch(16, (16, 16, 3), seed=seed, pixels=True)),
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip(kind):
    make, frames, batch = KINDS[kind]
    agent = make(seed=0, minibatches=2, epochs=1)
    agent.scale_rewards(np.array([1.0, -2.0]), np.array([False, True]))
    agent.scale_rewards(np.array([0.5, 3.0]), np.array([True, False]))
    agent.update(batch(0))
    buf = io.BytesIO()
    torch.save(agent.state_dict(), buf)
    buf.seek(0)
    other = make(seed=7, minibatches=2, epochs=1)
    other.load_state_dict(torch.load(buf, weights_only=False))
    obs = frames(np.random.default_rng(1))
    np.testing.assert_array_equal(agent.act(obs, True), other.act(obs, True))
    torch.manual_seed(3)
    sampled = agent.policy_step(obs)
    torch.manual_seed(3)
    for mine, theirs in zip(sampled, other.policy_step(obs)):
        np.testing.assert_array_equal(mine, theirs)
    assert (other.ret_mean, other.ret_var, other.ret_count) == (
        agent.ret_mean,
        agent.ret_var,
        agent.ret_count,
    )
    assert other.updates == agent.updates == 2
    # The optimizer's moments came along: the next update is the same on both.
    torch.manual_seed(4)
    m1 = agent.update(batch(2))
    torch.manual_seed(4)
    m2 = other.update(batch(2))
    assert {k: v.item() for k, v in m1.items()} == {k: v.item() for k, v in m2.items()}


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_metrics(kind):
    make, _, batch = KINDS[kind]

    def run() -> tuple[dict, list[torch.Tensor]]:
        agent = make(seed=5, minibatches=2, epochs=2)
        metrics = agent.update(batch(1))
        return {k: v.item() for k, v in metrics.items()}, params(agent)

    (m1, p1), (m2, p2) = run(), run()
    assert m1 == m2
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    other = make(seed=6, minibatches=2, epochs=2)
    m3 = {k: v.item() for k, v in other.update(batch(1)).items()}
    assert m3 != m1  # another seed, other weights: the equality above is not vacuous


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="discrete action space"):
        Agent(Config(encoder="mlp"), VEC_OBS, gym.spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(ValueError, match="encoder impala needs uint8"):
        Agent(Config(), VEC_OBS, ACTIONS)
    with pytest.raises(ValueError, match="encoder mlp needs flat"):
        Agent(Config(encoder="mlp"), FRAMES, ACTIONS)
    with pytest.raises(ValueError, match="unknown encoder"):
        Agent(Config(encoder="cnn"), FRAMES, ACTIONS)
    with pytest.raises(ValueError, match="at least one hidden layer"):
        Agent(Config(encoder="mlp", hidden=[]), VEC_OBS, ACTIONS)
    for bad, match in [
        ({"minibatches": 0}, "minibatches"),
        ({"gae_lambda": 1.5}, "gae_lambda"),
        ({"reward_gamma": 1.0}, "reward_gamma"),
        ({"clip": 0.0}, "clip"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"ent_coef": -0.1}, "ent_coef"),
    ]:
        with pytest.raises(ValueError, match=match):
            Agent(Config(encoder="mlp", **bad), VEC_OBS, ACTIONS)


def test_registered():
    assert get_agent_module("ppo").Agent is Agent
    assert not hasattr(Agent, "q_value")  # PPO has no Q: the bias harness does not apply
