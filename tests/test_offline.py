"""Offline training: TD3+BC's actor loss and state normalization, trajectory weights, the
weighted sampler's frequencies, and train.py --dataset end to end (scores, resume, errors)."""

from __future__ import annotations

import copy
import json
import math

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

import train
import training
from agents import td3_bc
from agents.buffer import ReplayBuffer
from agents.nets import DatasetNorm
from core.errors import UserError
from datagen.generate import collect, random_policy
from envs.datasets import Dataset, write_d4rl
from envs.datasets.weighting import sampling_stats, transition_probabilities
from tests.batches import make_batch

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def make_agent(**overrides) -> td3_bc.Agent:
    torch.manual_seed(0)
    return td3_bc.Agent(td3_bc.Config(**overrides), OBS, ACT)


class Constant(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value))

    def forward(self, obs):
        return self.value.expand(obs.shape[0], -1)


# ---- TD3+BC ------------------------------------------------------------------------------
def test_td3_bc_actor_loss_by_hand():
    agent = make_agent()
    agent.actor = Constant([[0.5, 0.5], [0.0, 0.0]][0])  # pi(s) = (0.5, 0.5) everywhere
    q = torch.tensor([1.0, -3.0])
    agent.policy_q = lambda obs, actions: q
    batch = make_batch(2, actions=torch.tensor([[0.5, -0.5], [1.5, 0.5]]))
    loss, extra = agent.actor_loss(batch)
    # lambda = 2.5 / mean|Q| = 2.5 / 2 = 1.25; -lambda * mean Q = -1.25 * -1 = 1.25
    # BC = mean of squared errors (0, 1, 1, 0) = 0.5
    assert extra["actor/lambda"].item() == pytest.approx(1.25)
    assert extra["loss/bc"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(1.75)


def test_td3_bc_lambda_is_a_constant_for_the_gradient():
    agent = make_agent(alpha=2.0)
    q = torch.tensor([2.0, -6.0], requires_grad=True)
    agent.policy_q = lambda obs, actions: q
    batch = make_batch(2)
    loss, _ = agent.actor_loss(batch)
    (grad,) = torch.autograd.grad(loss, q)
    # lambda = 2 / 4 = 0.5 detached: d(-lambda * mean Q)/dQ_i = -0.5 / 2 for both entries.
    torch.testing.assert_close(grad, torch.tensor([-0.25, -0.25]))


def test_dataset_norm_statistics_by_hand():
    norm = DatasetNorm(2)
    norm.fit(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
    torch.testing.assert_close(norm.mean, torch.tensor([2.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(norm.std, torch.tensor([1.001, 2.001], dtype=torch.float64))
    out = norm(torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.0 / 1.001, 0.0]]))


def test_state_normalization_is_the_same_in_training_acting_and_after_reload():
    agent = make_agent(policy_noise=0.0)
    obs = np.random.default_rng(0).normal(5.0, 3.0, size=(50, 3)).astype(np.float32)
    agent.fit_dataset(obs, np.zeros((50, 2), np.float32))
    # TD3+BC's statistics: the dataset's mean and population std (+ 1e-3), from numpy.
    mean, std = obs.astype(np.float64).mean(0), obs.astype(np.float64).std(0) + 1e-3
    np.testing.assert_allclose(agent.obs_norm.mean.numpy(), mean, rtol=1e-10)
    np.testing.assert_allclose(agent.obs_norm.std.numpy(), std, rtol=1e-10)
    normalized = torch.as_tensor(((obs - mean) / std).astype(np.float32))
    with torch.no_grad():
        expected = agent.actor(normalized).numpy()
    np.testing.assert_allclose(agent.act(obs, deterministic=True), expected, atol=1e-6)
    # Training: the critic loss inside update() sees the normalized batch.
    batch = make_batch(8, seed=4)
    manual = make_batch(8, seed=4, obs=agent.obs_norm(batch.obs),
                        next_obs=agent.obs_norm(batch.next_obs))  # fmt: skip
    expected_loss, _ = agent.critic_loss(manual)
    assert agent.update(batch)["loss/critic"].item() == pytest.approx(expected_loss.item())
    # Reload into a fresh agent that never saw the dataset: same actions.
    fresh = make_agent(policy_noise=0.0)
    fresh.load_state_dict(agent.state_dict())
    np.testing.assert_allclose(fresh.obs_norm.mean.numpy(), mean, rtol=1e-10)
    np.testing.assert_allclose(fresh.obs_norm.std.numpy(), std, rtol=1e-10)
    np.testing.assert_array_equal(fresh.act(obs, True), agent.act(obs, True))


# ---- trajectory weights ------------------------------------------------------------------
def episodes(returns_per_step: list[list[float]], first_obs: list[float] | None = None):
    """A dataset of 1-D observations; episode k has the given per-step rewards."""
    rewards = np.concatenate([np.asarray(r, dtype=np.float32) for r in returns_per_step])
    n = len(rewards)
    obs = np.zeros((n, 1), np.float32)
    timeouts = np.zeros(n, bool)
    start = 0
    for k, r in enumerate(returns_per_step):
        if first_obs is not None:
            obs[start] = first_obs[k]
        start += len(r)
        timeouts[start - 1] = True
    return Dataset(obs, np.zeros((n, 1)), rewards, obs, np.zeros(n, bool), timeouts)


def softmax_of(scores):
    e = np.exp(np.asarray(scores, dtype=np.float64))
    return e / e.sum()


def test_rw_weights_by_hand():
    data = episodes([[0.0, 0.0], [10.0], [2.0, 2.0, 1.0]])  # returns 0, 10, 5
    p = transition_probabilities(data, "rw", temperature=0.1)
    # min-max returns 0, 1, 0.5 -> per transition 0,0 | 1 | .5,.5,.5, divided by 0.1
    np.testing.assert_allclose(p, softmax_of([0, 0, 10, 5, 5, 5]), rtol=1e-12)


def test_aw_weights_by_hand():
    # s0 = 0, 1, 2 and returns 0, 3, 2: the least-squares line is V = s0 + 2/3, so the
    # advantages are -2/3, 4/3, -2/3 -> min-max 0, 1, 0.
    data = episodes([[0.0], [1.0, 2.0], [2.0]], first_obs=[0.0, 1.0, 2.0])
    p = transition_probabilities(data, "aw", temperature=0.5)
    np.testing.assert_allclose(p, softmax_of([0, 2, 2, 0]), rtol=1e-9)


@pytest.mark.parametrize("sampler", ["rw", "aw"])
def test_ties_and_a_single_trajectory_give_uniform_weights(sampler):
    tied = episodes([[1.0, 1.0], [2.0], [0.5, 0.5, 1.0]], first_obs=[0.0, 0.0, 0.0])
    np.testing.assert_allclose(transition_probabilities(tied, sampler), np.full(6, 1 / 6))
    single = episodes([[1.0, 3.0, -2.0]])
    np.testing.assert_allclose(transition_probabilities(single, sampler), np.full(3, 1 / 3))


def test_uniform_is_none_and_bad_sampler_settings_are_user_errors():
    data = episodes([[1.0], [2.0]])
    assert transition_probabilities(data, "uniform") is None
    with pytest.raises(UserError, match="unknown sampler"):
        transition_probabilities(data, "topk")
    with pytest.raises(UserError, match="temperature"):
        transition_probabilities(data, "rw", temperature=0.0)


def test_effective_sample_sizes():
    data = episodes([[0.0, 0.0], [10.0], [2.0, 2.0, 1.0]])
    uniform = sampling_stats(data, None)
    assert uniform["ess_transitions"] == 6 and uniform["episodes"] == 3
    assert uniform["ess_episodes"] == pytest.approx(36 / 14)  # lengths 2, 1, 3
    p = np.array([0.5, 0.5, 0, 0, 0, 0])
    peaked = sampling_stats(data, p)
    assert peaked["ess_transitions"] == pytest.approx(2.0)
    assert peaked["ess_episodes"] == pytest.approx(1.0)


def test_weighted_sampler_frequencies_match_the_weights():
    data = episodes([[0.0, 0.0], [10.0], [2.0, 2.0, 1.0]])
    p = transition_probabilities(data, "rw", temperature=1.0)
    buffer = ReplayBuffer.from_dataset(data, seed=0)
    buffer.set_weights(p)
    n = 60_000
    counts = np.zeros(6)
    for _ in range(n // 1000):
        np.add.at(counts, buffer.sample(1000).indices.numpy(), 1)
    expected = n * p
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # chi-square, 5 degrees of freedom: P(chi2 > 20.5) ~ 0.001


# ---- train.py --dataset ------------------------------------------------------------------
@pytest.fixture(scope="module")
def hopper_dataset(tmp_path_factory):
    data = collect("Hopper-v5", random_policy("Hopper-v5", 0), 600, seed=0)
    data.metadata = {"env_id": "Hopper-v5", "ref_min_score": -20.0, "ref_max_score": 3000.0}
    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    write_d4rl(path, data)
    return path


def offline_args(path, run_dir, steps=60, *extra, agent="td3_bc"):
    return ["--agent", agent, "--dataset", str(path), "--total-steps", str(steps),
            "--eval-every", "30", "--eval-episodes", "1", "--progress", "off",
            "--run-dir", str(run_dir), *extra]  # fmt: skip


def test_offline_run_scores_and_keeps_no_dataset_copy(hopper_dataset, tmp_path):
    run = tmp_path / "run"
    assert train.main(offline_args(hopper_dataset, run, 60, "--sampler", "rw")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env"] == "Hopper-v5" and summary["env_steps"] == 0
    assert summary["gradient_updates"] == 60
    assert [e["gradient_updates"] for e in summary["evals"]] == [30, 60]
    last = summary["evals"][-1]
    assert last["score"] == pytest.approx(100 * (last["return_mean"] + 20) / 3020)
    assert summary["last_score"] == last["score"]
    best = max(summary["evals"], key=lambda e: e["return_mean"])
    assert summary["best_score"] == best["score"]
    assert summary["sampling"]["sampler"] == "rw"
    assert summary["sampling"]["ess_transitions"] < 600
    assert not list((run / "checkpoints").glob("replay-*"))


def test_offline_resume_continues_exactly(hopper_dataset, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train.main(offline_args(hopper_dataset, straight, 60, "--sampler", "aw")) == 0
    assert train.main(offline_args(hopper_dataset, split, 30, "--sampler", "aw")) == 0
    assert train.main(["--resume", str(split), "--total-steps", "60", "--progress", "off"]) == 0
    a = torch.load(straight / "checkpoints" / "final.pt", weights_only=True)["agent_state"]
    b = torch.load(split / "checkpoints" / "final.pt", weights_only=True)["agent_state"]
    for key in ("actor", "critic"):
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name], value, rtol=0, atol=0)


def test_offline_resume_refuses_a_changed_dataset(hopper_dataset, tmp_path, capsys):
    path = tmp_path / "data.hdf5"
    path.write_bytes(hopper_dataset.read_bytes())
    run = tmp_path / "run"
    assert train.main(offline_args(path, run, 30)) == 0
    data = collect("Hopper-v5", random_policy("Hopper-v5", 1), 600, seed=1)
    data.metadata = {"env_id": "Hopper-v5"}
    write_d4rl(path, data)
    assert train.main(["--resume", str(run), "--total-steps", "60", "--progress", "off"]) == 2
    assert "is not the one this run trained on" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--agent", "td3_bc"], "learns from a dataset"),
        (["--agent", "td3", "--sampler", "rw"], "needs --dataset"),
        (["--agent", "td3_bc", "--dataset", "DATA", "--sampler", "best"], "unknown sampler"),
        (["--agent", "td3_bc", "--dataset", "no/such/file.hdf5"], "file not found"),
        (["--agent", "td3_bc", "--dataset", "DATA", "--env", "HalfCheetah-v5"], "shape"),
    ],
)
def test_offline_bad_input_is_one_line_error(argv, message, hopper_dataset, tmp_path, capsys):
    argv = [str(hopper_dataset) if a == "DATA" else a for a in argv]
    run = tmp_path / "run"
    assert train.main([*argv, "--run-dir", str(run), "--progress", "off"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()


def test_d4rl_score_is_reported_for_known_tasks():
    trainer = training.OfflineTrainer.__new__(training.OfflineTrainer)
    trainer.references = (0.0, 100.0)
    trainer.run_cfg = type("R", (), {"env": "Hopper-v5"})()
    scores = trainer.scores(50.0)
    assert scores["score"] == 50.0
    assert scores["d4rl_score"] == pytest.approx(100 * (50 + 20.272305) / (3234.3 + 20.272305))
    assert not math.isnan(scores["d4rl_score"])


def test_replay_buffer_sampler_state_round_trip():
    buffer = ReplayBuffer.from_arrays(np.zeros((10, 1)), np.zeros((10, 1)), np.zeros(10),
                                      np.zeros((10, 1)), np.zeros(10), np.zeros(10))  # fmt: skip
    state = buffer.sampler_state()
    first = buffer.sample(5).indices
    buffer.set_sampler_state(state)
    torch.testing.assert_close(buffer.sample(5).indices, first)


# ---- PRDC --------------------------------------------------------------------------------
def make_prdc(**overrides):
    from agents import prdc

    torch.manual_seed(0)
    return prdc.Agent(prdc.Config(**overrides), OBS, ACT)


def test_prdc_nearest_neighbour_on_a_hand_made_dataset():
    agent = make_prdc(normalize_states=False, beta=2.0)
    states = np.array([[0, 0, 0], [10, 0, 0], [0, 0, 0]], np.float32)
    actions = np.array([[1, 1], [-1, -1], [-1, 1]], np.float32)
    agent.fit_dataset(states, actions)
    obs = torch.tensor([[0, 0, 0], [0, 0, 0], [5.2, 0, 0]], dtype=torch.float32)
    pi = torch.tensor([[0.9, 0.8], [-0.8, 0.9], [1.0, 1.0]])
    # Row 3: key (10.4, 0, 0, 1, 1) is 10.4 from point 1's (0, 0, 0, 1, 1) and
    # sqrt(9.6^2 + 2^2 + 2^2) = 10.008 from point 2's (20, 0, 0, -1, -1): point 2 wins.
    expected = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]])
    torch.testing.assert_close(agent.nearest_actions(obs, pi), expected)
    # beta = 0 ignores states: the third query now matches point 1's action exactly.
    agent0 = make_prdc(normalize_states=False, beta=0.0)
    agent0.fit_dataset(states, actions)
    torch.testing.assert_close(agent0.nearest_actions(obs, pi)[2], torch.tensor([1.0, 1.0]))
    # The regulariser is the MSE to those actions: rows (.01, .04), (.04, .01), (4, 4).
    loss, metrics = agent.regulariser(make_batch(3, obs=obs), pi)
    assert loss.item() == pytest.approx((0.01 + 0.04 + 0.04 + 0.01 + 4 + 4) / 6)
    assert metrics["loss/dc"].item() == pytest.approx(loss.item())


def test_prdc_tree_is_exact_against_brute_force():
    agent = make_prdc(beta=2.0)
    rng = np.random.default_rng(0)
    states = rng.normal(3.0, 2.0, (2000, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (2000, 2)).astype(np.float32)
    agent.fit_dataset(states, actions)
    obs = agent.normalize(torch.as_tensor(rng.normal(3.0, 2.0, (300, 3)), dtype=torch.float32))
    pi = torch.as_tensor(rng.uniform(-1, 1, (300, 2)), dtype=torch.float32)
    keys = torch.cat([2.0 * agent.normalize(torch.as_tensor(states)), torch.as_tensor(actions)], -1)
    queries = torch.cat([2.0 * obs, pi], -1)
    brute = torch.cdist(queries.double(), keys.double()).argmin(dim=1)
    torch.testing.assert_close(agent.nearest_actions(obs, pi), torch.as_tensor(actions)[brute])


def test_prdc_overlapped_search_trains_exactly_like_the_search_in_place():
    rng = np.random.default_rng(1)
    states = rng.normal(0.0, 1.0, (500, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (500, 2)).astype(np.float32)
    buffer = ReplayBuffer.from_arrays(states, actions, rng.normal(size=500), states[::-1].copy(),
                                      np.zeros(500), np.zeros(500), seed=0)  # fmt: skip
    params, searches = [], []
    for overlap in (True, False):
        agent = make_prdc(overlap_search=overlap, batch_size=32)
        agent.fit_dataset(states, actions)
        searched = []
        search = agent._search
        agent._search = lambda keys, s=searched, f=search: s.append(keys) or f(keys)
        buffer.set_sampler_state(np.random.default_rng(2).bit_generator.state)
        for _ in range(6):  # 3 actor steps
            agent.update(buffer.sample(32))
        params.append(agent.state_dict())
        searches.append(len(searched))
    assert searches == [3, 3]  # one search per actor step, none wasted or repeated
    for key in ("actor", "critic"):
        for name, value in params[0][key].items():
            assert torch.equal(value, params[1][key][name]), f"{key}.{name} differs"


def test_prdc_trains_the_same_with_each_exact_search():
    """The k-d tree, the block search and the adaptive choice between them return the same
    nearest points, so the same updates give the same weights bit for bit; TensorBoard gets
    each search's moving averages of its time and of the share the blocks answered."""
    rng = np.random.default_rng(3)
    states = rng.normal(0.0, 1.0, (3000, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (3000, 2)).astype(np.float32)
    buffer = ReplayBuffer.from_arrays(states, actions, rng.normal(size=3000), states[::-1].copy(),
                                      np.zeros(3000), np.zeros(3000), seed=0)  # fmt: skip
    params, metrics, answered = {}, {}, {}
    for search in ("kdtree", "blocks", "auto"):
        agent = make_prdc(search=search, batch_size=64)
        agent.fit_dataset(states, actions)
        buffer.set_sampler_state(np.random.default_rng(4).bit_generator.state)
        answered[search] = []
        for step in range(12):  # 6 actor steps: auto times both searches, then picks
            metrics[search] = agent.update(buffer.sample(64))
            if step % 2 == 1:
                answered[search].append(float(agent.search.last.name == "blocks"))
        params[search] = agent.state_dict()["actor"]
    for name, value in params["kdtree"].items():
        assert torch.equal(value, params["blocks"][name]), name
        assert torch.equal(value, params["auto"][name]), name
    assert answered["auto"][:2] == [1.0, 0.0]  # blocks timed first, then the tree
    for search in ("kdtree", "blocks", "auto"):
        share = answered[search][0]  # the first search sets the average, each later weighs 0.01
        for blocks in answered[search][1:]:
            share = 0.99 * share + 0.01 * blocks
        assert metrics[search]["search/blocks_share"].item() == pytest.approx(share, abs=1e-6)
        assert metrics[search]["search/ms"].item() > 0
    assert metrics["kdtree"]["search/blocks_share"].item() == 0.0
    assert metrics["blocks"]["search/blocks_share"].item() == 1.0
    with pytest.raises(ValueError, match="search must be one of auto, kdtree, blocks; got 'ball'"):
        make_prdc(search="ball")


@pytest.mark.parametrize(
    "agent, extra",
    [("td3_bc", []), ("prdc", []),
     ("spot", ["--set", "vae_steps=30", "--set", "vae_hidden=16"])],
)  # fmt: skip
def test_offline_agents_train_and_reload_their_normalization(
    agent, extra, hopper_dataset, tmp_path
):
    import evaluate

    run = tmp_path / "run"
    args = offline_args(hopper_dataset, run, 40, *extra, agent=agent)  # 20 actor updates
    assert train.main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["gradient_updates"] == 40
    reloaded = evaluate.load_agent(run, None)[0]
    ckpt = torch.load(run / "checkpoints" / "final.pt", weights_only=True)
    # The reloaded agent never saw the dataset: its state normalization came from the file,
    # and is the dataset's own mean and population std (+ 1e-3), computed here with numpy.
    with h5py.File(hopper_dataset, "r") as f:
        observations = f["observations"][:].astype(np.float64)
    mean, std = observations.mean(0), observations.std(0) + 1e-3
    for norm in (reloaded.obs_norm.state_dict(), ckpt["agent_state"]["obs_norm"]):
        np.testing.assert_allclose(norm["mean"].numpy(), mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(norm["std"].numpy(), std, rtol=1e-10)
    assert evaluate.main([str(run), "--episodes", "1", "--json", str(tmp_path / "e.json")]) == 0
    if agent == "spot":  # the VAE was cached beside the dataset, for the next run
        cache = hopper_dataset.parent / f"{hopper_dataset.stem}.ogzoo-cache"
        assert len(list(cache.glob("spot-vae-*.pt"))) == 1


# ---- SPOT --------------------------------------------------------------------------------
def make_spot(**overrides):
    from agents import spot

    torch.manual_seed(0)
    cfg = {"vae_hidden": 32, "vae_steps": 0, **overrides}
    return spot.Agent(spot.Config(**cfg), OBS, ACT)


class Fixed(torch.nn.Module):
    def __init__(self, row):
        super().__init__()
        self.row = torch.tensor(row)

    def forward(self, x):
        return self.row.expand(x.shape[0], -1)


def test_spot_negative_elbo_by_hand():
    agent = make_spot()
    latent = agent.vae.latent_dim  # 2 dim(A) = 4
    # Encoder: mean 0.5 and log-std ln 0.5 in every latent dimension; decoder ignores z and
    # puts its mean at tanh(atanh(0.5)) = 0.5 for both action dimensions.
    agent.vae.encoder = Fixed([0.5] * latent + [math.log(0.5)] * latent)
    agent.vae.decoder = Fixed([math.atanh(0.5)] * 2)
    actions = torch.tensor([[0.5, -0.5]])
    kl = -0.5 * (1 + 2 * math.log(0.5) - 0.25 - 0.25)  # per latent dimension, = 0.443147
    expected = 0.5 + 0.5 * kl  # MSE of (0, 1) = 0.5, plus beta 0.5 * KL
    value = agent.vae.neg_elbo(torch.zeros(1, 3), actions, 0.5)
    assert value.item() == pytest.approx(expected)
    # The regulariser is lambda times its batch mean.
    loss, metrics = agent.regulariser(make_batch(1, obs=torch.zeros(1, 3)), actions)
    assert loss.item() == pytest.approx(0.1 * expected)
    # log-std is clamped to [-4, 15]: KL with log-std -10 equals KL with -4.
    agent.vae.encoder = Fixed([0.0] * latent + [-10.0] * latent)
    clamped = agent.vae.neg_elbo(torch.zeros(1, 3), actions, 1.0).item() - 0.5
    assert clamped == pytest.approx(-0.5 * (1 - 8 - math.exp(-8)))


def test_spot_vae_learns_where_the_data_is():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(2000, 3)).astype(np.float32)
    actions = np.tanh(states[:, :2]).astype(np.float32)  # a deterministic behaviour policy
    agent = make_spot(vae_steps=1500, batch_size=128, normalize_states=False)
    agent.fit_dataset(states, actions)
    s, a = torch.as_tensor(states[:500]), torch.as_tensor(actions[:500])
    torch.manual_seed(1)
    on_data = agent.vae.neg_elbo(s, a, 0.5).mean().item()
    off_data = agent.vae.neg_elbo(s, -a, 0.5).mean().item()
    assert on_data < 0.5 * off_data


def test_spot_vae_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    from agents import spot

    rng = np.random.default_rng(0)
    states = rng.normal(size=(300, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (300, 2)).astype(np.float32)
    first = make_spot(vae_steps=20)
    first.fit_dataset(states, actions, tmp_path)
    assert len(list(tmp_path.glob("spot-vae-*.pt"))) == 1

    def no_training(self, obs, acts, **kwargs):
        raise AssertionError("the cached VAE should have been used")

    monkeypatch.setattr(spot.Agent, "train_vae", no_training)
    again = make_spot(vae_steps=20)
    torch.manual_seed(123)  # a different init: equality below can only come from the cache
    again.vae = spot.VAE(3, 2, 4, 32)
    again.fit_dataset(states, actions, tmp_path)
    for name, value in first.vae.state_dict().items():
        torch.testing.assert_close(again.vae.state_dict()[name], value)
    changed = actions.copy()
    changed[0, 0] += 0.5
    with pytest.raises(AssertionError, match="cached VAE"):
        make_spot(vae_steps=20).fit_dataset(states, changed, tmp_path)  # new data: retrain
    with pytest.raises(AssertionError, match="cached VAE"):
        make_spot(vae_steps=21).fit_dataset(states, actions, tmp_path)  # new setting: retrain


def test_spot_vae_fit_is_the_datas_alone_and_leaves_the_runs_random_stream(tmp_path):
    """Two runs with other seeds fit the same VAE, and torch's stream after the fit is the one
    before it, so a run is the same run whether its VAE was trained or loaded from the cache."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(300, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (300, 2)).astype(np.float32)
    fits = []
    for seed, cache in ((1, None), (2, tmp_path), (3, tmp_path)):  # trained, trained, loaded
        agent = make_spot(vae_steps=20)
        torch.manual_seed(seed)
        before = torch.get_rng_state()
        agent.fit_dataset(states, actions, cache)
        assert torch.equal(torch.get_rng_state(), before)
        fits.append(agent.vae.state_dict())
    for name, value in fits[0].items():
        assert torch.equal(fits[1][name], value) and torch.equal(fits[2][name], value)
    assert not torch.equal(fits[0][name], make_spot(vae_steps=0).vae.state_dict()[name])


# ---- SPOT's actor dropout (the authors' SPOT.py: nn.Dropout(0.1) after l1 and l2) ---------
def dropout_layers(net: torch.nn.Module) -> list[torch.nn.Dropout]:
    return [m for m in net.modules() if isinstance(m, torch.nn.Dropout)]


def test_spot_actor_dropout_is_active_in_the_training_losses():
    agent = make_spot(policy_noise=0.0)  # no target noise: the target's only randomness is dropout
    assert [m.p for m in dropout_layers(agent.actor)] == [0.1, 0.1]  # after each hidden layer
    batch = make_batch(64, seed=3)
    # Two training-mode passes drop different units, so they differ.
    with torch.no_grad():
        assert not torch.equal(agent.actor(batch.obs), agent.actor(batch.obs))
        assert not torch.equal(agent.compute_target(batch), agent.compute_target(batch))
    # Inside update(): both the actor (actor loss) and the target actor (TD target) drop 10%
    # of the hidden units and scale the rest by 1 / 0.9 (inverted dropout).
    seen = []

    def record(module, inputs, output, name):
        kept = output != 0
        active = inputs[0] != 0
        seen.append((name, module.training, (~kept & active).sum() / active.sum()))
        torch.testing.assert_close(output[kept], inputs[0][kept] / 0.9)

    for name in ("actor", "actor_target"):
        for layer in dropout_layers(getattr(agent, name)):
            layer.register_forward_hook(lambda m, i, o, n=name: record(m, i, o, n))
    agent.update(batch)
    agent.update(batch)  # policy_delay 2: this one also updates the actor
    assert [name for name, _, _ in seen] == ["actor_target"] * 4 + ["actor"] * 2
    assert all(training for _, training, _ in seen)
    dropped = torch.stack([fraction for _, _, fraction in seen])  # 6 x ~64*256/2 units each
    assert ((dropped > 0.08) & (dropped < 0.12)).all(), dropped


def test_spot_acts_deterministically_with_the_eval_mode_network():
    agent = make_spot()
    obs = np.random.default_rng(0).normal(2.0, 3.0, size=(16, 3)).astype(np.float32)
    agent.fit_dataset(obs, np.zeros((16, 2), np.float32))
    first, second = agent.act(obs, deterministic=True), agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(first, second)
    assert agent.actor.training  # back in training mode for the next update
    reference = copy.deepcopy(agent.actor).eval()
    with torch.no_grad():
        expected = reference(agent.obs_norm(torch.as_tensor(obs))).numpy()
    np.testing.assert_array_equal(first, expected)


def test_spot_without_dropout_is_the_agent_before_dropout():
    plain, dropped = make_spot(actor_dropout=0.0), make_spot()
    assert dropout_layers(plain.actor) == [] and dropout_layers(plain.actor_target) == []
    # Same initial weights and the same state_dict keys with or without dropout.
    for name, value in plain.state_dict()["actor"].items():
        assert torch.equal(dropped.state_dict()["actor"][name], value)
    assert plain.state_dict()["actor"].keys() == dropped.state_dict()["actor"].keys()
    # Metrics of 4 updates recorded with agents/spot.py at commit 3e96159 (no dropout).
    rng = np.random.default_rng(0)
    agent = make_spot(vae_steps=5, batch_size=8, actor_dropout=0.0)
    obs = rng.normal(2.0, 3.0, (64, 3)).astype(np.float32)
    acts = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    # The VAE fitted as fit_dataset did at 3e96159, on the run's own stream (it has its own
    # seed since): the state statistics, then train_vae on the VAE made in __init__.
    td3_bc.Agent.fit_dataset(agent, obs, acts)
    agent.train_vae(agent.normalize(torch.as_tensor(obs)), torch.as_tensor(acts))
    recorded = [
        {"loss/critic": 2.090792656, "q/mean": -0.087053373},
        {"actor/lambda": 5.43398428, "loss/actor": 1.001776457, "loss/critic": 1.83995986,
         "loss/neg_elbo": 0.017764241, "q/mean": -0.154274613},
        {"loss/critic": 0.811833978, "q/mean": -0.22004956},
        {"actor/lambda": 4.685934544, "loss/actor": 1.001797676, "loss/critic": 1.655657887,
         "loss/neg_elbo": 0.017977281, "q/mean": -0.224987805},
    ]  # fmt: skip
    for step, expected in enumerate(recorded):
        metrics = {k: v.item() for k, v in agent.update(make_batch(8, seed=step)).items()}
        assert metrics == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(agent.act(np.ones((1, 3), np.float32), True),
                               [[0.08949868, 0.09655940]], rtol=1e-5)  # fmt: skip


def test_spot_state_dict_round_trip_with_dropout():
    agent = make_spot()
    for step in range(3):  # the 4th update below also updates the actor
        agent.update(make_batch(16, seed=step))
    fresh = make_spot()
    with torch.no_grad():  # other weights: equality below can only come from the state dict
        for param in fresh.actor.parameters():
            param.zero_()
    # A copy, as a checkpoint file is: loading shares the optimizer's state tensors otherwise.
    fresh.load_state_dict(copy.deepcopy(agent.state_dict()))
    obs = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_array_equal(fresh.act(obs, True), agent.act(obs, True))
    # Training continues identically, dropout masks included, from the same RNG state.
    batch = make_batch(16, seed=9)
    torch.manual_seed(11)
    expected = agent.update(batch)
    torch.manual_seed(11)
    metrics = fresh.update(batch)
    assert metrics.keys() == expected.keys() and "loss/actor" in metrics
    assert all(torch.equal(metrics[key], value) for key, value in expected.items())


def test_bias_of_an_offline_critic_is_measured_on_restored_dataset_states(hopper_dataset, tmp_path):
    import evaluate

    run, out = tmp_path / "run", tmp_path / "bias.json"
    assert train.main(offline_args(hopper_dataset, run, 20)) == 0
    argv = [str(run), "--episodes", "1", "--bias", "--bias-states", "4", "--json", str(out)]
    assert evaluate.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["restored_states"] is True and result["n_states"] == 4
