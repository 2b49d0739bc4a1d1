"""Offline dataset readers, writer, scores and bad input (envs/datasets).

One hand-made episode set (obs dim 3, act dim 2, qpos/qvel dims 2): episode 0 ends terminal
(3 steps), episode 1 hits a time limit (4 steps), episode 2 is cut by the end of the data
(2 steps). Rewards are 10 * episode + step + 1, so returns are 6, 50 and 43.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

import envs.datasets.d4rl as d4rl_module
from agents.buffer import ReplayBuffer
from core.errors import UserError
from envs.datasets import (
    Dataset,
    DatasetError,
    check_against_env,
    d4rl_normalized_score,
    normalized_score,
    read_d4rl,
    read_minari,
    write_d4rl,
)
from envs.datasets.dataset import sim_state

torch.set_num_threads(1)

LENGTHS = (3, 4, 2)
ENDS = ("terminal", "timeout", "cut")


def _episodes() -> list[dict[str, np.ndarray]]:
    episodes = []
    for e, (steps, end) in enumerate(zip(LENGTHS, ENDS)):
        t = np.arange(steps + 1, dtype=np.float32)
        obs = np.stack([10 * e + t, -(10 * e + t), 0.5 * t], axis=1)  # (T+1) x 3
        terminations = np.zeros(steps, dtype=bool)
        truncations = np.zeros(steps, dtype=bool)
        terminations[-1] = end == "terminal"
        truncations[-1] = end == "timeout"
        episodes.append(
            {
                "obs": obs,
                "actions": np.stack([0.1 * t[:steps], np.full(steps, e, np.float32)], axis=1),
                "rewards": 10 * e + t[:steps] + 1,
                "terminations": terminations,
                "truncations": truncations,
                "qpos": 2.0 * obs[:, :2].astype(np.float64),  # (T+1) x 2, as Minari stores infos
                "qvel": obs[:, :2].astype(np.float64) + 0.25,
            }
        )
    return episodes


def _flat(episodes: list[dict[str, np.ndarray]], metadata: dict | None = None) -> Dataset:
    def cat(key: str, rows: slice = slice(None)) -> np.ndarray:
        return np.concatenate([ep[key][rows] for ep in episodes])

    return Dataset(
        observations=cat("obs", slice(None, -1)),
        actions=cat("actions"),
        rewards=cat("rewards"),
        next_observations=cat("obs", slice(1, None)),
        terminals=cat("terminations"),
        timeouts=cat("truncations"),
        qpos=cat("qpos", slice(None, -1)),
        qvel=cat("qvel", slice(None, -1)),
        metadata=metadata or {},
    )


def _write_like_d4rl_download(path: Path, ds: Dataset, next_obs: bool = True) -> None:
    """The layout of a real D4RL file, written with plain h5py (metadata as small datasets)."""
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
            f[key] = getattr(ds, key)
        if next_obs:
            f["next_observations"] = ds.next_observations
        f["infos/qpos"] = ds.qpos
        f["infos/qvel"] = ds.qvel
        f["metadata/algorithm"] = np.bytes_("SAC")
        f["metadata/policy/fc0/bias"] = np.arange(3.0)


def _write_minari(root: Path, episodes: list[dict[str, np.ndarray]]) -> str:
    """The same episodes written by the minari package itself; returns the dataset id."""
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer

    buffers = [
        EpisodeBuffer(
            id=i,
            observations=ep["obs"],
            actions=ep["actions"],
            rewards=list(ep["rewards"]),
            terminations=list(ep["terminations"]),
            truncations=list(ep["truncations"]),
            infos={"qpos": ep["qpos"], "qvel": ep["qvel"]},
        )
        for i, ep in enumerate(episodes)
    ]
    with warnings.catch_warnings():  # minari asks for author, description, ...
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers(
            "ogzoo/tiny-v0",
            buffers,
            env="Hopper-v5",
            observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            ref_min_score=-5.0,
            ref_max_score=95.0,
        )
    return "ogzoo/tiny-v0"


def _storage(buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
    return buffer.state_dict()["storage"]


def _assert_same_buffer(a: ReplayBuffer, b: ReplayBuffer) -> None:
    sa, sb = _storage(a), _storage(b)
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert torch.equal(sa[name], sb[name]), name


def _check_expected_buffer(buffer: ReplayBuffer) -> None:
    """Hand-computed flags: ends at flat 2 (terminal), 6 (time limit) and 8 (end of data)."""
    s = _storage(buffer)
    assert s["terminated"][:, 0].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert s["truncated"][:, 0].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 1]
    assert s["next_obs"][6, 0].tolist() == [14.0, -14.0, 2.0]  # episode 1's true final obs
    assert s["extras/sim_state"][7, 0].tolist() == [40.0, -40.0, 20.25, -19.75]
    assert s["rewards"][:, 0].tolist() == [1, 2, 3, 11, 12, 13, 14, 21, 22]


def _one_line_naming(err: pytest.ExceptionInfo, path: object, *words: str) -> None:
    message = str(err.value)
    assert isinstance(err.value, DatasetError)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------- equivalence of the readers


def test_d4rl_download_layout_and_own_files_load_identical_buffers(tmp_path: Path) -> None:
    expected = _flat(_episodes())
    download = tmp_path / "download.hdf5"
    _write_like_d4rl_download(download, expected)
    own = tmp_path / "own.hdf5"
    write_d4rl(own, expected)

    reference = ReplayBuffer.from_dataset(expected)
    _check_expected_buffer(reference)
    _assert_same_buffer(ReplayBuffer.from_dataset(read_d4rl(download)), reference)
    _assert_same_buffer(ReplayBuffer.from_dataset(read_d4rl(own)), reference)


def test_minari_layout_loads_identical_buffer(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset_id = _write_minari(tmp_path, _episodes())
    own = tmp_path / "own.hdf5"
    write_d4rl(own, _flat(_episodes()))

    by_id = read_minari(dataset_id)
    by_folder = read_minari(tmp_path / dataset_id)
    _check_expected_buffer(ReplayBuffer.from_dataset(by_id))
    _assert_same_buffer(ReplayBuffer.from_dataset(by_id), ReplayBuffer.from_dataset(read_d4rl(own)))
    _assert_same_buffer(
        ReplayBuffer.from_dataset(by_folder), ReplayBuffer.from_dataset(read_d4rl(own))
    )
    assert by_id.metadata["ref_min_score"] == -5.0
    assert by_id.metadata["ref_max_score"] == 95.0
    assert by_id.metadata["env_id"] == "Hopper-v5"


def test_minari_episode_cut_midway_ends_its_episode(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    episodes = _episodes()
    episodes[0]["terminations"][:] = False  # episode 0 now ends with neither flag
    dataset = read_minari(_write_minari(tmp_path, episodes))
    assert dataset.timeouts.tolist() == [0, 0, 1, 0, 0, 0, 1, 0, 0]
    assert dataset.episode_bounds().tolist() == [[0, 3], [3, 7], [7, 9]]


def test_episode_bounds_returns_and_metadata_round_trip(tmp_path: Path) -> None:
    meta = {"env_id": "Hopper-v5", "kind": "medium", "seed": 3, "ref_min_score": -1.5}
    path = tmp_path / "own.hdf5"
    write_d4rl(path, _flat(_episodes(), meta))
    dataset = read_d4rl(path)
    assert dataset.episode_bounds().tolist() == [[0, 3], [3, 7], [7, 9]]
    assert dataset.episode_returns().tolist() == [6.0, 50.0, 43.0]
    assert dataset.metadata == meta
    with h5py.File(path) as f:
        assert sorted(f) == [
            "actions",
            "infos",
            "metadata",
            "next_observations",
            "observations",
            "rewards",
            "terminals",
            "timeouts",
        ]
    download = tmp_path / "download.hdf5"
    _write_like_d4rl_download(download, dataset)
    read_back = read_d4rl(download).metadata
    assert read_back["algorithm"] == "SAC"
    assert read_back["policy/fc0/bias"].tolist() == [0.0, 1.0, 2.0]


# ---------------------------------------------------------------- D4RL modes


def test_compat_drops_timeouts_and_the_last_transition(tmp_path: Path) -> None:
    path = tmp_path / "download.hdf5"
    full = _flat(_episodes())
    _write_like_d4rl_download(path, full)  # with next_observations: compat ignores them
    dataset = read_d4rl(path, compat=True)

    kept = [0, 1, 2, 3, 4, 5, 7]  # 6 is the timeout, 8 the last transition
    assert dataset.rewards.tolist() == [1, 2, 3, 11, 12, 13, 21]
    np.testing.assert_array_equal(dataset.observations, full.observations[kept])
    # next_obs = obs[i + 1], also across the terminal at 2 (never bootstrapped from).
    np.testing.assert_array_equal(
        dataset.next_observations, full.observations[[k + 1 for k in kept]]
    )
    assert dataset.terminals.tolist() == [0, 0, 1, 0, 0, 0, 0]
    # 5 and 7 lost their successors, so they end their episodes as truncations (which still
    # bootstrap, so one-step targets are D4RL's).
    assert dataset.timeouts.tolist() == [0, 0, 0, 0, 0, 1, 1]

    buffer = ReplayBuffer.from_dataset(dataset, seed=1)
    assert _storage(buffer)["truncated"][:, 0].tolist() == [0, 0, 0, 0, 0, 1, 1]
    # n-step (n = 5, gamma = 0.5) sums stop at every episode end, hand-computed per start:
    # start 0 sums 1 + 0.5 * 2 + 0.25 * 3 over m = 3 rewards, start 5 (lost successor) only 13.
    batch = buffer.sample(256, n_step=5, gamma=0.5)
    returns = torch.tensor([2.75, 3.5, 3.0, 20.25, 18.5, 13.0, 21.0])
    rewards_summed = torch.tensor([3, 2, 1, 3, 2, 1, 1])
    assert torch.equal(batch.rewards, returns[batch.indices])
    assert torch.equal(batch.discounts, 0.5 ** rewards_summed[batch.indices].float())
    assert set(batch.indices.tolist()) == set(range(7))


def test_default_mode_keeps_timeouts_as_truncations(tmp_path: Path) -> None:
    path = tmp_path / "download.hdf5"
    _write_like_d4rl_download(path, _flat(_episodes()))
    dataset = read_d4rl(path)
    assert len(dataset) == 9
    assert dataset.timeouts.tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert dataset.next_observations[6].tolist() == [14.0, -14.0, 2.0]


def test_default_mode_without_next_observations_drops_unknown_ones(tmp_path: Path) -> None:
    episodes = _episodes()
    episodes[2]["terminations"][-1] = True  # the file's last transition is now terminal
    full = _flat(episodes)
    path = tmp_path / "no_next.hdf5"
    _write_like_d4rl_download(path, full, next_obs=False)

    default = read_d4rl(path)
    assert default.rewards.tolist() == [1, 2, 3, 11, 12, 13, 21, 22]  # only the timeout goes
    assert default.timeouts.tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    assert default.terminals.tolist() == [0, 0, 1, 0, 0, 0, 0, 1]
    np.testing.assert_array_equal(default.next_observations[5], full.observations[6])
    compat = read_d4rl(path, compat=True)
    assert compat.rewards.tolist() == [1, 2, 3, 11, 12, 13, 21]  # compat drops the last anyway


def test_sim_state_is_passed_without_a_copy_when_possible(tmp_path: Path) -> None:
    path = tmp_path / "own.hdf5"
    write_d4rl(path, _flat(_episodes()))
    dataset = read_d4rl(path)
    joined = sim_state(dataset.qpos, dataset.qvel)
    assert np.shares_memory(joined, dataset.qpos) and np.shares_memory(joined, dataset.qvel)
    separate = sim_state(dataset.qpos.copy(), dataset.qvel.copy())
    np.testing.assert_array_equal(joined, separate)
    assert joined[7].tolist() == [40.0, -40.0, 20.25, -19.75]


def test_name_lookup_in_d4rl_dataset_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    write_d4rl(tmp_path / "hopper-tiny-v5.hdf5", _flat(_episodes()))
    assert len(read_d4rl("hopper-tiny-v5")) == 9


# ---------------------------------------------------------------- scores


def test_normalized_score_arithmetic() -> None:
    assert normalized_score(50.0, 10.0, 90.0) == 50.0
    np.testing.assert_allclose(
        normalized_score(np.array([10.0, 90.0, 130.0]), 10, 90), [0, 100, 150]
    )
    assert d4rl_normalized_score(3234.3, "Hopper-v5") == pytest.approx(100.0)
    assert d4rl_normalized_score(-20.272305, "hopper-medium-v2") == pytest.approx(0.0)
    midpoint = (-280.178953 + 12135.0) / 2
    assert d4rl_normalized_score(midpoint, "HalfCheetah-v5") == pytest.approx(50.0)
    # walker2d: 100 * (2297 - 1.629008) / (4592.3 - 1.629008) = 100 * 2295.370992 / 4590.670992
    assert d4rl_normalized_score(2297.0, "Walker2d-v5") == pytest.approx(50.000773, abs=1e-6)
    with pytest.raises(ValueError):
        normalized_score(1.0, 5.0, 5.0)
    with pytest.raises(UserError, match="D4RL"):
        d4rl_normalized_score(1.0, "CartPole-v1")


# ---------------------------------------------------------------- atomic write


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.hdf5"

    def fail(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(d4rl_module, "_write_metadata", fail)  # after every array is written
    with pytest.raises(RuntimeError, match="disk full"):
        write_d4rl(path, _flat(_episodes()))
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary

    monkeypatch.undo()
    write_d4rl(path, _flat(_episodes(), {"kind": "old"}))
    monkeypatch.setattr(d4rl_module, "_write_metadata", fail)
    with pytest.raises(RuntimeError):
        write_d4rl(path, _flat(_episodes(), {"kind": "new"}))
    assert os.listdir(tmp_path) == ["out.hdf5"]
    assert read_d4rl(path).metadata == {"kind": "old"}  # the previous file is intact


# ---------------------------------------------------------------- bad input


def _good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.hdf5"
    write_d4rl(path, _flat(_episodes()))
    return path


def test_missing_file(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DatasetError) as err:
        read_d4rl(tmp_path / "nope.hdf5")
    _one_line_naming(err, tmp_path / "nope.hdf5", "not found")
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        read_d4rl("hopper-nope-v2")
    _one_line_naming(err, tmp_path / "hopper-nope-v2.hdf5", "not found")


@pytest.mark.parametrize("damage", ["cut_in_half", "random_bytes", "empty"])
def test_truncated_or_corrupt_hdf5(tmp_path: Path, damage: str) -> None:
    data = _good_file(tmp_path).read_bytes()
    bad = tmp_path / "bad.hdf5"
    payload = {
        "cut_in_half": data[: len(data) // 2],
        "random_bytes": np.random.default_rng(0).bytes(4096),
        "empty": b"",
    }[damage]
    bad.write_bytes(payload)
    with pytest.raises(DatasetError) as err:
        read_d4rl(bad)
    _one_line_naming(err, bad, "HDF5")


@pytest.mark.parametrize("key", ["observations", "rewards", "timeouts"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    path = _good_file(tmp_path)
    with h5py.File(path, "a") as f:
        del f[key]
    with pytest.raises(DatasetError) as err:
        read_d4rl(path)
    _one_line_naming(err, path, "missing", key)


@pytest.mark.parametrize("key", ["actions", "infos/qvel", "next_observations"])
def test_inconsistent_lengths(tmp_path: Path, key: str) -> None:
    path = _good_file(tmp_path)
    with h5py.File(path, "a") as f:
        shorter = f[key][:-1]
        del f[key]
        f[key] = shorter
    with pytest.raises(DatasetError) as err:
        read_d4rl(path)
    _one_line_naming(err, path, "inconsistent lengths", "8", "9")


def test_minari_bad_input(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        read_minari("ogzoo/absent-v0")
    _one_line_naming(err, "ogzoo/absent-v0", "no Minari dataset")

    folder = tmp_path / "ogzoo" / "tiny-v0" / "data"
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text('{"dataset_id": "ogzoo/tiny-v0"}')
    main = folder / "main_data.hdf5"
    main.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))  # an HDF5 signature, then nothing
    with pytest.raises(DatasetError) as err:
        read_minari("ogzoo/tiny-v0")
    _one_line_naming(err, main, "HDF5")

    episode = _episodes()[0]
    with h5py.File(main, "w") as f:
        group = f.create_group("episode_0")
        group["observations"] = episode["obs"][:-1]  # T rows instead of T+1
        for key in ("actions", "rewards", "terminations", "truncations"):
            group[key] = episode[key]
    with pytest.raises(DatasetError) as err:
        read_minari("ogzoo/tiny-v0")
    _one_line_naming(err, main, "episode_0", "T+1")

    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError) as err:
        read_minari(tmp_path / "ogzoo" / "tiny-v0")
    _one_line_naming(err, folder / "metadata.json", "JSON")


def test_shapes_that_do_not_match_the_env() -> None:
    dataset = _flat(_episodes())
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    check_against_env(dataset, obs_space, act_space, "tiny.hdf5")  # matching: no error
    wrong_obs = gym.spaces.Box(-np.inf, np.inf, (11,), np.float32)
    with pytest.raises(DatasetError) as err:
        check_against_env(dataset, wrong_obs, act_space, "tiny.hdf5")
    _one_line_naming(err, "tiny.hdf5", "observations", "(3,)", "(11,)")
    with pytest.raises(DatasetError) as err:
        check_against_env(dataset, obs_space, gym.spaces.Box(-1, 1, (3,)), "tiny.hdf5")
    _one_line_naming(err, "tiny.hdf5", "actions", "(2,)", "(3,)")


def test_load_dataset_resolves_every_kind_of_name(tmp_path: Path, monkeypatch) -> None:
    from envs.datasets.loading import dataset_env_id, load_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    dataset_id = _write_minari(tmp_path / "minari", _episodes())
    (tmp_path / "d4rl").mkdir()
    write_d4rl(tmp_path / "d4rl" / "hopper-medium-v2.hdf5", _flat(_episodes()))
    expected = ReplayBuffer.from_dataset(read_d4rl(tmp_path / "d4rl" / "hopper-medium-v2.hdf5"))
    for name in (dataset_id, str(tmp_path / "minari" / dataset_id), "hopper-medium-v2",
                 str(tmp_path / "d4rl" / "hopper-medium-v2.hdf5")):  # fmt: skip
        data, source = load_dataset(name)
        _assert_same_buffer(ReplayBuffer.from_dataset(data), expected)
        assert source.exists()
        assert dataset_env_id(data, name) == "Hopper-v5"  # Minari metadata, or the task name
    nameless = _flat(_episodes())
    with pytest.raises(UserError, match="give it with --env"):
        dataset_env_id(nameless, "mystery-data.hdf5")
    with pytest.raises(DatasetError, match="file not found"):
        load_dataset("no-such-dataset-v2")
