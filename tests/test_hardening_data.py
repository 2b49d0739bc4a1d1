"""Issue 19 (robustness), the data side: non-finite values in datasets, `python -m datagen
info` on everything the training loader reads, progress of dataset generation and of SPOT's
VAE pretraining.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from datagen import generate
from datagen.__main__ import main as dataset_cli
from envs.datasets import Dataset, DatasetError, read_d4rl, read_minari, write_d4rl
from envs.datasets.scores import d4rl_normalized_score, normalized_score
from tests.test_datasets import _episodes, _flat, _write_like_d4rl_download, _write_minari

ROWS = 30
BAD_ROW = 17


def long_dataset() -> Dataset:
    """ROWS transitions in three episodes of ten (terminal, time limit, cut)."""
    rng = np.random.default_rng(0)
    terminals, timeouts = np.zeros(ROWS, bool), np.zeros(ROWS, bool)
    terminals[9], timeouts[19] = True, True
    return Dataset(
        observations=rng.normal(size=(ROWS, 3)).astype(np.float32),
        actions=rng.uniform(-1, 1, (ROWS, 2)).astype(np.float32),
        rewards=rng.normal(size=ROWS).astype(np.float32),
        next_observations=rng.normal(size=(ROWS, 3)).astype(np.float32),
        terminals=terminals,
        timeouts=timeouts,
        qpos=rng.normal(size=(ROWS, 2)),
        qvel=rng.normal(size=(ROWS, 2)),
    )


def one_line(err: pytest.ExceptionInfo, *words: str) -> str:
    message = str(err.value)
    assert isinstance(err.value, DatasetError)
    assert "\n" not in message and len(message) < 300, message
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------- item 12: non-finite values

ARRAYS = {  # the file's key -> the Dataset attribute that holds it
    "observations": "observations",
    "actions": "actions",
    "rewards": "rewards",
    "next_observations": "next_observations",
    "infos/qpos": "qpos",
    "infos/qvel": "qvel",
}


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", list(ARRAYS))
def test_d4rl_file_with_a_non_finite_value_is_refused_naming_array_and_row(tmp_path, key, value):
    data = long_dataset()
    array = getattr(data, ARRAYS[key])
    array.reshape(ROWS, -1)[BAD_ROW, -1] = value  # a view: rewards are 1-D
    path = tmp_path / "hopper-medium-v2.hdf5"
    _write_like_d4rl_download(path, data)
    # compat mode does not read next_observations (it takes obs[i + 1]).
    for compat in (False, True) if key != "next_observations" else (False,):
        with pytest.raises(DatasetError) as err:
            read_d4rl(path, compat=compat)
        one_line(err, str(path), key, f"row {BAD_ROW}", "non-finite")


def test_d4rl_row_is_the_files_row_even_when_transitions_are_dropped(tmp_path):
    data = long_dataset()
    data.observations[25, 0] = np.nan  # compat drops rows 19 (a timeout) and 29: still row 25
    path = tmp_path / "no-next.hdf5"
    _write_like_d4rl_download(path, data, next_obs=False)
    for compat in (False, True):
        with pytest.raises(DatasetError) as err:
            read_d4rl(path, compat=compat)
        one_line(err, "observations", "row 25")


def test_finite_datasets_still_load(tmp_path):
    path = tmp_path / "fine.hdf5"
    write_d4rl(path, long_dataset())
    assert len(read_d4rl(path)) == ROWS


def test_writing_a_non_finite_dataset_is_refused_and_writes_nothing(tmp_path):
    data = long_dataset()
    data.rewards[BAD_ROW] = np.nan
    with pytest.raises(DatasetError) as err:
        write_d4rl(tmp_path / "out.hdf5", data)
    one_line(err, "rewards", f"row {BAD_ROW}")
    assert list(tmp_path.iterdir()) == []


def write_minari_by_hand(root: Path, episodes: list[dict], metadata: dict | None = None) -> Path:
    """Minari's on-disk layout written with h5py (what tests/test_datasets.py's _write_minari
    makes with the minari package); returns the dataset folder."""
    folder = root / "ogzoo" / "tiny-v0"
    (folder / "data").mkdir(parents=True)
    meta = {"dataset_id": "ogzoo/tiny-v0", "env_spec": json.dumps({"id": "Hopper-v5"}),
            **(metadata or {})}  # fmt: skip
    (folder / "data" / "metadata.json").write_text(json.dumps(meta))
    with h5py.File(folder / "data" / "main_data.hdf5", "w") as f:
        for i, episode in enumerate(episodes):
            group = f.create_group(f"episode_{i}")
            group["observations"] = episode["obs"]
            for key in ("actions", "rewards", "terminations", "truncations"):
                group[key] = episode[key]
            group["infos/qpos"] = episode["qpos"]
            group["infos/qvel"] = episode["qvel"]
    return folder


@pytest.mark.parametrize(
    "key, row", [("obs", 3), ("obs", 4), ("actions", 1), ("rewards", 2), ("qpos", 0), ("qvel", 3)]
)
def test_minari_episode_with_a_non_finite_value_is_refused(tmp_path, key, row):
    episodes = _episodes()
    episodes[1][key] = episodes[1][key].astype(np.float64)
    episodes[1][key].reshape(len(episodes[1][key]), -1)[row, -1] = np.nan  # 4 steps, 5 obs
    folder = write_minari_by_hand(tmp_path, episodes)
    name = {"obs": "observations", "qpos": "infos/qpos", "qvel": "infos/qvel"}.get(key, key)
    with pytest.raises(DatasetError) as err:
        read_minari(folder)
    one_line(err, "episode_1", name, f"row {row}")


def test_minari_reference_score_that_is_not_finite_is_refused(tmp_path):
    folder = write_minari_by_hand(tmp_path, _episodes(), {"ref_min_score": float("nan")})
    with pytest.raises(DatasetError) as err:
        read_minari(folder)
    one_line(err, "ref_min_score")


# ---------------------------------------------------------------- item 14: datagen info


def info_lines(capsys, name: str) -> list[str]:
    capsys.readouterr()
    assert dataset_cli(["info", name]) == 0, capsys.readouterr().err
    return capsys.readouterr().out.splitlines()


def d4rl_line(returns: np.ndarray) -> str:
    return f"D4RL-constant score {np.mean(d4rl_normalized_score(returns, 'hopper')):.1f}"


def test_info_reads_a_d4rl_file_by_path_and_name_with_d4rl_constant_scores(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    data = _flat(_episodes())
    path = tmp_path / "hopper-medium-v2.hdf5"
    _write_like_d4rl_download(path, data)  # no env_id, no references of its own
    for name in (str(path), "hopper-medium-v2"):
        out = "\n".join(info_lines(capsys, name))
        assert str(path) in out and "transitions 9, episodes 3" in out
        assert d4rl_line(data.episode_returns()) in out, out
        assert "normalized score n/a" in out


def test_info_reads_a_minari_dataset_by_id_and_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset_id = _write_minari(tmp_path, _episodes())  # references -5 and 95, env Hopper-v5
    returns = _flat(_episodes()).episode_returns()
    own = f"normalized score {np.mean(normalized_score(returns, -5.0, 95.0)):.1f}"
    for name in (dataset_id, str(tmp_path / dataset_id), str(tmp_path / dataset_id / "data")):
        out = "\n".join(info_lines(capsys, name))
        assert str(tmp_path / dataset_id / "data") in out
        assert own in out and d4rl_line(returns) in out, out


def test_info_on_a_task_without_d4rl_constants_says_so(tmp_path, capsys):
    data = _flat(_episodes(), metadata={"env_id": "Pendulum-v1"})
    path = tmp_path / "pendulum.hdf5"
    write_d4rl(path, data)
    out = "\n".join(info_lines(capsys, str(path)))
    assert "D4RL-constant score n/a" in out


def test_info_of_an_unknown_name_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    capsys.readouterr()
    assert dataset_cli(["info", "no-such-dataset"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "no-such-dataset" in err


# ---------------------------------------------------------------- item 13: progress lines


def test_dataset_generation_reports_progress_without_a_terminal(tmp_path, capsys):
    generate.make("hopper-random-v5", size=200, seed=0, root=tmp_path)
    lines = [line for line in capsys.readouterr().out.splitlines() if "transitions" in line]
    assert len(lines) == 10
    assert lines[0].startswith("hopper-random-v5: 20/200 transitions (10%)")
    assert lines[-1].startswith("hopper-random-v5: 200/200 transitions (100%)")


def test_spot_vae_pretraining_reports_progress_without_a_terminal(tmp_path, capsys):
    import gymnasium as gym

    from agents import spot

    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    agent = spot.Agent(spot.Config(vae_hidden=16, vae_steps=30, batch_size=8), obs_space,
                       act_space)  # fmt: skip
    data = long_dataset()
    agent.fit_dataset(data.observations, data.actions, tmp_path)
    lines = [line for line in capsys.readouterr().out.splitlines() if "VAE" in line]
    assert lines[0].startswith("SPOT VAE pretraining: 3/30 steps (10%)")
    assert "negative ELBO" in lines[0]
    assert lines[9].startswith("SPOT VAE pretraining: 30/30 steps (100%)")
    assert lines[10].startswith("SPOT VAE: cached for later runs")


# ---------------------------------------------------------------- item 10: durable datasets


def test_write_d4rl_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path, monkeypatch):
    import os
    import stat

    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append("fsync_dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync_file")
        return real_fsync(fd)

    def replace(src, dst, **kwargs):
        calls.append("replace")
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_d4rl(tmp_path / "data.hdf5", long_dataset())
    assert calls == ["fsync_file", "replace", "fsync_dir"]


def test_a_dataset_name_too_long_for_the_file_system_is_one_short_line(tmp_path, capsys):
    from envs.datasets.loading import load_dataset

    with pytest.raises(DatasetError) as err:
        load_dataset("x" * 5000, root=tmp_path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 700
    capsys.readouterr()
    assert dataset_cli(["info", "y" * 5000]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and len(err) < 700


# ------------------------------------------------ hardening: --json onto the run's own files


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One finished tiny run (tests/test_cli.py's command line); tests copy it before use."""
    import train
    from tests.test_cli import tiny_args

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert train.main(tiny_args(run_dir)) == 0
    return run_dir


@pytest.mark.parametrize(
    "target",
    ["checkpoints/final.pt", "checkpoints/latest.pt", "checkpoints/new.json", "config.yaml",
     "summary.json"],
)  # fmt: skip
@pytest.mark.parametrize("given", ["run", "checkpoint"])
def test_evaluate_json_onto_a_file_of_the_run_is_refused(finished_run, tmp_path, capsys,
                                                          target, given):  # fmt: skip
    import shutil

    import evaluate
    from tests.test_cli import assert_one_line_error, snapshot

    run = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run)
    source = run if given == "run" else run / "checkpoints" / "final.pt"
    capsys.readouterr()
    assert evaluate.main([str(source), "--episodes", "1", "--json", str(run / target)]) == 2
    line = assert_one_line_error(capsys)
    assert f"--json {run / target}" in line and "give another file name" in line, line
    assert snapshot(run) == before


def test_evaluate_json_to_a_new_file_in_the_run_folder_still_works(finished_run, tmp_path):
    import shutil

    import evaluate

    run = shutil.copytree(finished_run, tmp_path / "run")
    out = run / "generalization-1.json"  # bench/procgen_gpu.sh writes RUN/<report>.json
    assert evaluate.main([str(run), "--episodes", "1", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["episodes"] == 1


# ------------------------------------------------ hardening: non-numeric dataset arrays


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals", "timeouts"])
def test_a_d4rl_array_of_byte_strings_is_one_line_naming_key_and_dtype(tmp_path, capsys, key):
    path = tmp_path / "strings.hdf5"
    write_d4rl(path, long_dataset())
    with h5py.File(path, "r+") as f:
        shape = f[key].shape
        del f[key]
        f.create_dataset(key, data=np.full(shape, b"x"))
    before = path.read_bytes()
    with pytest.raises(DatasetError) as err:
        read_d4rl(path)
    one_line(err, str(path), f"'{key}' has dtype |S1 (byte strings)")
    capsys.readouterr()
    assert dataset_cli(["info", str(path)]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and err_text.startswith("error: ") and key in err_text
    assert path.read_bytes() == before


def test_training_on_a_dataset_with_string_rewards_is_one_line(tmp_path, capsys):
    import train

    path = tmp_path / "strrew.hdf5"
    write_d4rl(path, long_dataset())
    with h5py.File(path, "r+") as f:
        del f["rewards"]
        f.create_dataset("rewards", data=np.array([b"x"] * ROWS))
    run = tmp_path / "run"
    capsys.readouterr()
    args = ["--agent", "td3_bc", "--dataset", str(path), "--env", "Hopper-v5",
            "--total-steps", "10", "--progress", "off", "--run-dir", str(run)]  # fmt: skip
    code = train.main(args)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "'rewards' has dtype |S1" in err, err
    assert not run.exists()


def test_a_minari_array_of_byte_strings_is_one_line_naming_key_and_dtype(tmp_path):
    episodes = _episodes()
    episodes[1]["rewards"] = np.array([b"x"] * len(episodes[1]["rewards"]))
    folder = write_minari_by_hand(tmp_path, episodes)
    with pytest.raises(DatasetError) as err:
        read_minari(folder)
    one_line(err, "'episode_1/rewards' has dtype |S1 (byte strings)")


# ------------------------------------------------ hardening: datagen make checks come first


def fail_if_work_starts(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("make() started work before checking its arguments")

    monkeypatch.setattr(generate, "evaluate_policy", refuse)
    monkeypatch.setattr(generate, "collect", refuse)


@pytest.mark.parametrize("seed", ["-1", str(2**31)])
def test_datagen_make_with_a_seed_out_of_range_fails_before_any_work(
    tmp_path, capsys, monkeypatch, seed
):
    fail_if_work_starts(monkeypatch)
    capsys.readouterr()
    args = ["--root", str(tmp_path), "make", "hopper-random-v5", "--size", "50", "--seed", seed]
    assert dataset_cli(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert f"seed must be in [0, {2**31}), got {seed}" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["file", "below_file"])
def test_datagen_make_into_a_root_that_is_a_file_fails_before_any_work(
    tmp_path, capsys, monkeypatch, where
):
    fail_if_work_starts(monkeypatch)
    existing = tmp_path / "existing.json"
    existing.write_text("{}\n")
    root = existing if where == "file" else existing / "sub"
    capsys.readouterr()
    assert dataset_cli(["--root", str(root), "make", "hopper-random-v5", "--size", "50"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(existing) in err, err
    assert existing.read_text() == "{}\n" and sorted(tmp_path.iterdir()) == [existing]


def test_datagen_make_replay_from_without_a_finished_run_fails_before_any_work(
    tmp_path, capsys, monkeypatch
):
    fail_if_work_starts(monkeypatch)
    monkeypatch.setattr(generate, "load_policy", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("loaded a policy before checking --replay-from")))  # fmt: skip
    out = tmp_path / "out"
    capsys.readouterr()
    args = ["--root", str(out), "make", "hopper-medium-replay-v5", "--replay-from",
            str(tmp_path / "no-run")]  # fmt: skip
    assert dataset_cli(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--replay-from" in err and "final.pt" in err, err
    assert not out.exists()
