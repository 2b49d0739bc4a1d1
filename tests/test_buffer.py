"""Replay buffer tests: storage layout, n-step returns, weighted sampling, persistence.

Expected numbers are computed by hand in the comments next to them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.buffer import Batch, ReplayBuffer


def fill_single_env(
    rewards: list[float],
    terminated: list[int] | None = None,
    truncated: list[int] | None = None,
    capacity: int | None = None,
) -> ReplayBuffer:
    """num_envs=1 buffer with obs_t = t and next_obs_t = 100 + t, so rows are recognisable."""
    n = len(rewards)
    terminated = terminated or [0] * n
    truncated = truncated or [0] * n
    buffer = ReplayBuffer(capacity or n, (1,), (1,), seed=0)
    for t in range(n):
        buffer.add(
            np.array([[t]], dtype=np.float32),
            np.array([[0.0]], dtype=np.float32),
            np.array([rewards[t]], dtype=np.float32),
            np.array([[100 + t]], dtype=np.float32),
            np.array([terminated[t]], dtype=bool),
            np.array([truncated[t]], dtype=bool),
        )
    return buffer


def gather(buffer: ReplayBuffer, t: list[int], e: list[int], n_step: int, gamma: float) -> Batch:
    return buffer._gather(torch.tensor(t), torch.tensor(e), n_step, gamma)


def assert_batches_equal(a: Batch, b: Batch) -> None:
    for name in (
        "obs",
        "actions",
        "rewards",
        "next_obs",
        "terminated",
        "truncated",
        "discounts",
        "indices",
    ):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)
    assert a.extras.keys() == b.extras.keys()
    for k in a.extras:
        torch.testing.assert_close(a.extras[k], b.extras[k], rtol=0, atol=0)


# ---------------------------------------------------------------------- storage layout


def test_wrap_around_overwrites_oldest():
    buffer = fill_single_env([0, 1, 2, 3, 4, 5], capacity=4)
    assert len(buffer) == 4
    stored = buffer.state_dict()["storage"]["rewards"][:, 0]
    # Rewards 4 and 5 overwrote rows 0 and 1 (the oldest), the write head is back at row 2.
    assert stored.tolist() == [4, 5, 2, 3]
    assert set(buffer.sample(200).rewards.tolist()) == {2, 3, 4, 5}


def test_vector_adds_land_in_rows_and_envs():
    buffer = ReplayBuffer(5, (2,), (1,), num_envs=2)
    assert buffer.capacity == 6  # rounded up to 3 whole rows of 2 envs
    assert buffer.num_envs == 2
    for step in range(2):
        obs = np.array([[10 * step + e, -1.0] for e in range(2)])  # N x obs
        buffer.add(
            obs, np.zeros((2, 1)), np.array([step, step + 0.5]), obs + 1, np.zeros(2), np.zeros(2)
        )
    assert len(buffer) == 4
    storage = buffer.state_dict()["storage"]
    assert storage["obs"].shape == (2, 2, 2)  # filled rows x envs x obs
    assert storage["obs"][1, 0, 0] == 10 and storage["obs"][1, 1, 0] == 11
    assert storage["rewards"].tolist() == [[0, 0.5], [1, 1.5]]
    # Flat index i = t * N + e holds obs 10 * t + e.
    batch = buffer.sample(64)
    t, e = batch.indices // 2, batch.indices % 2
    torch.testing.assert_close(batch.obs[:, 0], (10 * t + e).float())
    torch.testing.assert_close(batch.rewards, t + 0.5 * e)


def test_add_rejects_wrong_shape():
    buffer = ReplayBuffer(4, (3,), (1,), num_envs=2)
    with pytest.raises(ValueError, match="obs"):
        buffer.add(
            np.zeros((1, 3)),
            np.zeros((2, 1)),
            np.zeros(2),
            np.zeros((2, 3)),
            np.zeros(2),
            np.zeros(2),
        )


def test_pixel_and_discrete_dtypes_are_kept():
    buffer = ReplayBuffer(
        4, (3, 2, 2), (), num_envs=2, obs_dtype=torch.uint8, action_dtype=torch.int64
    )
    obs = np.full((2, 3, 2, 2), 255, dtype=np.uint8)
    for _ in range(2):
        buffer.add(obs, np.array([3, 1]), np.ones(2), obs, np.zeros(2), np.zeros(2))
    for n_step in (1, 2):
        batch = buffer.sample(8, n_step=n_step)
        assert batch.obs.dtype == torch.uint8 and batch.next_obs.dtype == torch.uint8
        assert batch.obs.shape == (8, 3, 2, 2)
        assert int(batch.obs.min()) == 255  # no wrap to 0 through a float/int8 detour
        assert batch.actions.dtype == torch.int64 and batch.actions.shape == (8,)
        torch.testing.assert_close(batch.actions, torch.where(batch.indices % 2 == 0, 3, 1))
        assert batch.rewards.dtype == torch.float32 and batch.terminated.dtype == torch.float32


# ---------------------------------------------------------------------- n-step


# t:          0  1  2  | 3  4  5  | 6  7
# reward:     1  2  3  | 4  5  6  | 7  8
# ends:             T  |       tr |       (write head after t=7)
TRAJ_REWARDS = [1, 2, 3, 4, 5, 6, 7, 8]
TRAJ_TERM = [0, 0, 1, 0, 0, 0, 0, 0]
TRAJ_TRUNC = [0, 0, 0, 0, 0, 1, 0, 0]


@pytest.mark.parametrize(
    "start, n_step, ret, m, next_obs, term, trunc",
    [
        (0, 3, 1 + 0.9 * 2 + 0.81 * 3, 3, 102, 1, 0),  # full walk ending exactly at termination
        (0, 2, 1 + 0.9 * 2, 2, 101, 0, 0),  # stops at n_step inside the episode
        (1, 3, 2 + 0.9 * 3, 2, 102, 1, 0),  # 1 step before termination: m = 2
        (1, 5, 2 + 0.9 * 3, 2, 102, 1, 0),  # longer n_step does not cross the terminal
        (2, 3, 3, 1, 102, 1, 0),  # starts on the terminal transition
        (3, 3, 4 + 0.9 * 5 + 0.81 * 6, 3, 105, 0, 1),  # ends on the truncation
        (4, 3, 5 + 0.9 * 6, 2, 105, 0, 1),  # 1 step before truncation
        (6, 3, 7 + 0.9 * 8, 2, 107, 0, 0),  # partial walk: write head after t=7
        (7, 3, 8, 1, 107, 0, 0),  # newest transition
    ],
)
def test_n_step_single_env(start, n_step, ret, m, next_obs, term, trunc):
    buffer = fill_single_env(TRAJ_REWARDS, TRAJ_TERM, TRAJ_TRUNC, capacity=10)
    batch = gather(buffer, [start], [0], n_step, 0.9)
    assert batch.rewards.item() == pytest.approx(ret, rel=1e-6)
    assert batch.discounts.item() == pytest.approx(0.9**m, rel=1e-6)
    assert batch.next_obs.item() == next_obs
    assert batch.obs.item() == start  # obs is the FIRST transition's
    assert batch.terminated.item() == term
    assert batch.truncated.item() == trunc
    assert batch.indices.item() == start


def test_n_step_batched_matches_single_starts():
    buffer = fill_single_env(TRAJ_REWARDS, TRAJ_TERM, TRAJ_TRUNC, capacity=10)
    batch = gather(buffer, [0, 1, 4, 6], [0, 0, 0, 0], 3, 0.9)
    expected = [1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 5 + 0.9 * 6, 7 + 0.9 * 8]
    torch.testing.assert_close(batch.rewards, torch.tensor(expected))
    torch.testing.assert_close(batch.discounts, torch.tensor([0.729, 0.81, 0.81, 0.81]))
    assert batch.next_obs[:, 0].tolist() == [102, 102, 105, 107]


def test_n_step_stays_on_its_own_env():
    # N=2, 3 rows. Env 0: rewards 1, 2, 3 with a termination at row 1. Env 1: 10, 20, 30, open.
    buffer = ReplayBuffer(6, (1,), (1,), num_envs=2)
    for t, (r, term) in enumerate([([1, 10], [0, 0]), ([2, 20], [1, 0]), ([3, 30], [0, 0])]):
        obs = np.array([[t], [t]])
        buffer.add(obs, np.zeros((2, 1)), np.array(r), obs + 100, np.array(term), np.zeros(2))
    batch = gather(buffer, [0, 0, 1], [0, 1, 1], 3, 0.5)
    # env 0 from row 0: 1 + 0.5 * 2 (terminal) = 2, never touching env 1's 10 next to it.
    # env 1 from row 0: 10 + 0.5 * 20 + 0.25 * 30 = 27.5.  env 1 from row 1: 20 + 15 = 35.
    torch.testing.assert_close(batch.rewards, torch.tensor([2.0, 27.5, 35.0]))
    torch.testing.assert_close(batch.discounts, torch.tensor([0.25, 0.125, 0.25]))
    torch.testing.assert_close(batch.terminated, torch.tensor([1.0, 0.0, 0.0]))
    assert batch.next_obs[:, 0].tolist() == [101, 102, 102]
    assert batch.indices.tolist() == [0, 1, 3]


def test_n_step_walks_across_the_ring_wrap():
    # Capacity 4, transitions 0..5 with reward = index: rows hold [4, 5, 2, 3], head at row 2.
    buffer = fill_single_env([0, 1, 2, 3, 4, 5], capacity=4)
    batch = gather(buffer, [3, 2, 0, 1], [0, 0, 0, 0], 3, 0.5)
    # row 3 (r=3): 3 + 0.5 * 4 + 0.25 * 5 = 6.25, wrapping from row 3 to rows 0 and 1.
    # row 2 (r=2): 2 + 0.5 * 3 + 0.25 * 4 = 4.5.
    # row 0 (r=4): 4 + 0.5 * 5 = 6.5, stops at the head instead of wrapping onto r=2.
    # row 1 (r=5): newest transition, 5 alone.
    torch.testing.assert_close(batch.rewards, torch.tensor([6.25, 4.5, 6.5, 5.0]))
    torch.testing.assert_close(batch.discounts, torch.tensor([0.125, 0.125, 0.25, 0.5]))
    # next_obs = 100 + transition index of the last summed transition.
    assert batch.next_obs[:, 0].tolist() == [105, 104, 105, 105]


def test_one_step_fast_path_matches_general_gather():
    buffer = fill_single_env(TRAJ_REWARDS, TRAJ_TERM, TRAJ_TRUNC, capacity=10)
    batch = buffer.sample(32, gamma=0.9)
    torch.testing.assert_close(batch.discounts, torch.full((32,), 0.9))
    slow = buffer._gather(batch.indices, torch.zeros_like(batch.indices), 1, 0.9)
    assert_batches_equal(batch, slow)


def test_sample_uses_n_step():
    buffer = fill_single_env([1.0] * 6, capacity=6)
    batch = buffer.sample(64, n_step=3, gamma=0.5)
    # Start rows 0..3 sum 3 rewards (1.75); row 4 sums 2 (1.5), row 5 is the head (1.0).
    expected = torch.tensor([1.75, 1.75, 1.75, 1.75, 1.5, 1.0])[batch.indices]
    torch.testing.assert_close(batch.rewards, expected)


def test_sample_errors():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(4, (1,), (1,)).sample(2)
    with pytest.raises(ValueError, match="n_step"):
        fill_single_env([1.0]).sample(2, n_step=0)


# ---------------------------------------------------------------------- episode ends


def test_mark_episode_ends():
    buffer = ReplayBuffer(8, (1,), (1,), num_envs=2)
    for t in range(2):
        obs = np.array([[t], [t]])
        buffer.add(
            obs, np.zeros((2, 1)), np.ones(2), obs + 100, np.array([t == 1, False]), np.zeros(2)
        )
    buffer.mark_episode_ends()
    storage = buffer.state_dict()["storage"]
    # Env 0 already terminated at row 1: untouched. Env 1 was open: now truncated there.
    assert storage["terminated"].tolist() == [[0, 0], [1, 0]]
    assert storage["truncated"].tolist() == [[0, 0], [0, 1]]
    # A resumed run's next step is a new episode; n-step from env 1, row 0 must stop at row 1.
    buffer.add(
        np.zeros((2, 1)),
        np.zeros((2, 1)),
        np.full(2, 50.0),
        np.zeros((2, 1)),
        np.zeros(2),
        np.zeros(2),
    )
    batch = gather(buffer, [0], [1], 3, 0.5)
    assert batch.rewards.item() == pytest.approx(1.5)  # 1 + 0.5 * 1, not + 0.25 * 50
    assert batch.truncated.item() == 1 and batch.terminated.item() == 0


# ---------------------------------------------------------------------- weights


def frequencies(buffer: ReplayBuffer, draws: int = 40_000) -> np.ndarray:
    indices = buffer.sample(draws).indices.numpy()
    return np.bincount(indices, minlength=len(buffer)) / draws


def test_weighted_sampling_frequencies():
    buffer = fill_single_env([0, 1, 2, 3])
    buffer.set_weights([0, 1, 3, 0])
    freq = frequencies(buffer)
    np.testing.assert_allclose(freq, [0, 0.25, 0.75, 0], atol=0.01)
    assert freq[0] == 0 and freq[3] == 0  # zero weight: never drawn
    buffer.set_weights(None)
    np.testing.assert_allclose(frequencies(buffer), [0.25] * 4, atol=0.01)


class _EdgeRng:
    """Stands in for the numpy Generator to hit the interval edges exactly."""

    def random(self, size: int) -> np.ndarray:
        # u = 0 is the left edge of the first interval; u = 1 * total can come out of rounding.
        return np.array([0.0, 1.0])


def test_weighted_sampling_edges_never_pick_zero_weight():
    buffer = fill_single_env([0, 1, 2, 3])
    buffer.set_weights([0, 1, 3, 0])  # cumulative [0, 1, 4, 4]
    buffer._rng = _EdgeRng()
    assert buffer.sample(2).indices.tolist() == [1, 2]


def test_weights_in_row_env_shape():
    buffer = ReplayBuffer(4, (1,), (1,), num_envs=2)
    for _ in range(2):
        buffer.add(
            np.zeros((2, 1)),
            np.zeros((2, 1)),
            np.zeros(2),
            np.zeros((2, 1)),
            np.zeros(2),
            np.zeros(2),
        )
    buffer.set_weights(np.array([[0.0, 1.0], [3.0, 0.0]]))  # (rows, envs) = flat [0, 1, 3, 0]
    np.testing.assert_allclose(frequencies(buffer), [0, 0.25, 0.75, 0], atol=0.01)


@pytest.mark.parametrize(
    "weights, message",
    [
        ([1, 1, 1], "shape"),
        ([1, -1, 1, 1], "non-negative"),
        ([0, 0, 0, 0], "all zero"),
        ([1, np.nan, 1, 1], "finite"),
    ],
)
def test_bad_weights_raise(weights, message):
    buffer = fill_single_env([0, 1, 2, 3])
    with pytest.raises(ValueError, match=message):
        buffer.set_weights(weights)


def test_weights_go_stale_after_add():
    buffer = fill_single_env([0, 1, 2], capacity=4)
    buffer.set_weights([1, 1, 1])
    buffer.add(
        np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.zeros((1, 1)), np.zeros(1), np.zeros(1)
    )
    with pytest.raises(ValueError, match="stale"):
        buffer.sample(4)
    buffer.set_weights([1, 1, 1, 0])
    assert 3 not in buffer.sample(1000).indices.tolist()


# ---------------------------------------------------------------------- persistence


def make_vector_buffer(rows: int, seed: int = 3) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    buffer = ReplayBuffer(
        10, (3,), (2,), num_envs=2, extras={"sim_state": ((4,), torch.float64)}, seed=seed
    )
    for _ in range(rows):
        buffer.add(
            rng.normal(size=(2, 3)),
            rng.normal(size=(2, 2)),
            rng.normal(size=2),
            rng.normal(size=(2, 3)),
            rng.random(2) < 0.2,
            rng.random(2) < 0.2,
            extras={"sim_state": rng.normal(size=(2, 4))},
        )
    return buffer


@pytest.mark.parametrize("rows, weighted", [(3, False), (7, True)])
def test_save_load_round_trip(tmp_path, rows, weighted):
    buffer = make_vector_buffer(rows)  # 3 rows: partly filled; 7 rows: wrapped (5 rows)
    if weighted:
        buffer.set_weights(np.arange(len(buffer), dtype=np.float64))
    buffer.sample(5)  # advance the RNG so its state, not just the seed, must be restored
    path = tmp_path / "buffer.pt"
    buffer.save(path)
    assert not (tmp_path / "buffer.pt.tmp").exists()
    loaded = ReplayBuffer.load(path)
    assert len(loaded) == len(buffer)
    for name, value in buffer.state_dict()["storage"].items():
        torch.testing.assert_close(loaded.state_dict()["storage"][name], value, rtol=0, atol=0)
    assert_batches_equal(loaded.sample(16, n_step=3), buffer.sample(16, n_step=3))
    # The write position survived too: the same add lands in the same row on both.
    for b in (buffer, loaded):
        b.set_weights(None)
        b.add(
            np.ones((2, 3)),
            np.ones((2, 2)),
            np.ones(2),
            np.ones((2, 3)),
            np.zeros(2),
            np.zeros(2),
            extras={"sim_state": np.ones((2, 4))},
        )
    torch.testing.assert_close(
        loaded.state_dict()["storage"]["obs"], buffer.state_dict()["storage"]["obs"], rtol=0, atol=0
    )


def test_load_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ReplayBuffer.load(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage, not a torch file\xff" * 10)
    with pytest.raises(ValueError, match="corrupt.pt"):
        ReplayBuffer.load(corrupt)


# ---------------------------------------------------------------------- offline datasets


def test_from_arrays_equals_adding_one_by_one():
    rng = np.random.default_rng(1)
    size = 7
    data = {
        "obs": rng.normal(size=(size, 3)),
        "actions": rng.normal(size=(size, 2)),
        "rewards": rng.normal(size=size),
        "next_obs": rng.normal(size=(size, 3)),
        "terminated": np.array([0, 0, 1, 0, 0, 0, 0], dtype=bool),
        "truncated": np.array([0, 0, 0, 0, 1, 0, 0], dtype=bool),
    }
    sim_state = rng.normal(size=(size, 4))
    bulk = ReplayBuffer.from_arrays(**data, extras={"sim_state": sim_state}, seed=5)
    assert len(bulk) == size and bulk.capacity == size and bulk.num_envs == 1

    stepwise = ReplayBuffer(size, (3,), (2,), extras={"sim_state": ((4,), torch.float64)}, seed=5)
    for t in range(size):
        stepwise.add(
            *(v[t : t + 1] for v in data.values()), extras={"sim_state": sim_state[t : t + 1]}
        )

    bulk_state, step_state = bulk.state_dict(), stepwise.state_dict()
    assert bulk_state["config"] == step_state["config"]
    assert (bulk_state["pos"], bulk_state["full"]) == (step_state["pos"], step_state["full"])
    for name, value in step_state["storage"].items():
        torch.testing.assert_close(bulk_state["storage"][name], value, rtol=0, atol=0)
    batch = bulk.sample(32, n_step=2)
    assert_batches_equal(batch, stepwise.sample(32, n_step=2))
    assert batch.extras["sim_state"].dtype == torch.float64
    expected_sim = torch.from_numpy(sim_state)[batch.indices]  # B x 4
    torch.testing.assert_close(batch.extras["sim_state"], expected_sim)


def test_from_arrays_dtypes():
    obs = np.zeros((5, 1, 2, 2), dtype=np.uint8)
    buffer = ReplayBuffer.from_arrays(obs, np.arange(5), np.zeros(5), obs, np.zeros(5), np.zeros(5))
    batch = buffer.sample(4)
    assert batch.obs.dtype == torch.uint8 and batch.actions.dtype == torch.int64
    with pytest.raises(ValueError, match="lengths"):
        ReplayBuffer.from_arrays(obs, np.arange(4), np.zeros(5), obs, np.zeros(5), np.zeros(5))


def test_from_arrays_without_copy_adopts_matching_arrays_and_samples_identically():
    rng = np.random.default_rng(0)
    n = 50
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (n, 2)).astype(np.float64)  # not the storage dtype: copied
    rewards = rng.normal(size=n).astype(np.float32)
    next_obs = rng.normal(size=(n, 3)).astype(np.float32)
    terminated, truncated = rng.random(n) < 0.1, rng.random(n) < 0.1
    sim = rng.normal(size=(n, 4))
    args = (obs, actions, rewards, next_obs, terminated, truncated)
    shared = ReplayBuffer.from_arrays(*args, extras={"sim_state": sim}, copy=False, seed=3)
    copied = ReplayBuffer.from_arrays(*args, extras={"sim_state": sim}, seed=3)
    batch = shared.sample(16)
    assert np.shares_memory(batch.obs.numpy(), obs) is False  # a sample is a gather, not a view
    assert shared._obs.data_ptr() == torch.from_numpy(obs).data_ptr()
    assert shared._extras["sim_state"].data_ptr() == torch.from_numpy(sim).data_ptr()
    assert shared._actions.dtype == torch.float32  # converted, so copied
    other = copied.sample(16)
    for field in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "indices"):
        assert torch.equal(getattr(batch, field), getattr(other, field)), field
    assert torch.equal(batch.extras["sim_state"], other.extras["sim_state"])
    assert len(shared) == n and shared.capacity == n


def test_uint8_frames_round_trip_exactly_through_storage_and_a_saved_file(tmp_path):
    """Every byte value of 64x64x3 frames comes back as it went in (obs and next_obs, after
    the ring wrapped), and the saved file keeps them as uint8."""
    rng = np.random.default_rng(3)
    shape = (64, 64, 3)
    buffer = ReplayBuffer(10, shape, (), num_envs=2, obs_dtype=torch.uint8,
                          action_dtype=torch.int64, seed=0)  # fmt: skip
    frames = rng.integers(0, 256, size=(8, 2, *shape), dtype=np.uint8)
    nexts = rng.integers(0, 256, size=(8, 2, *shape), dtype=np.uint8)
    # Both ends and the middle, surely present: in the newest step (it wrapped into row 2) and
    # the oldest step still kept (step 3); steps 0-2 are overwritten.
    frames[7, 1, 0, 0] = [0, 127, 255]
    nexts[3, 0, 63, 63] = [255, 127, 0]
    for t in range(8):  # 16 transitions into 10 slots (5 rows of 2 envs): rows 0-2 overwritten
        buffer.add(frames[t], np.array([t, 14 - t]), np.ones(2), nexts[t], np.zeros(2),
                   np.zeros(2))  # fmt: skip
    assert len(buffer) == 10
    batch = buffer.transitions(np.arange(len(buffer)))
    kept_obs = batch.obs.numpy().reshape(-1, 2, *shape)
    kept_next = batch.next_obs.numpy().reshape(-1, 2, *shape)
    order = np.argsort(batch.actions.numpy().reshape(-1, 2)[:, 0])  # action of env 0 = t
    np.testing.assert_array_equal(kept_obs[order], frames[3:])
    np.testing.assert_array_equal(kept_next[order], nexts[3:])
    assert kept_obs[order][4, 1, 0, 0].tolist() == [0, 127, 255]  # step 7 is the 5th kept
    assert kept_next[order][0, 0, 63, 63].tolist() == [255, 127, 0]
    path = tmp_path / "frames.pt"
    buffer.save(path)
    loaded = ReplayBuffer.load(path)
    for name, value in buffer.state_dict()["storage"].items():
        stored = loaded.state_dict()["storage"][name]
        assert stored.dtype == value.dtype and torch.equal(stored, value)
    assert loaded.state_dict()["storage"]["obs"].dtype == torch.uint8
    again = loaded.transitions(np.arange(len(loaded)))
    assert torch.equal(again.obs, batch.obs) and torch.equal(again.next_obs, batch.next_obs)
