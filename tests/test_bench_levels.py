"""bench/levels_study.py's record: a finished run's row from its summary and final report, the
CSV round trip, and the table's means over seeds."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("levels_study", REPO / "bench" / "levels_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)
TD3_20 = "configs/td3/hopper-levels-20.yaml"


def report(train, test, extrap, biases=(-0.1, 0.2, 0.5), target="reward"):
    return {
        "n_train_levels": 20, "train_return_mean": train, "test_return_mean": test,
        "extrapolation_return_mean": extrap, "gap": train - test,
        "gap_extrapolation": train - extrap,
        "bias": {side: {"bias_normalized_mean": b, "bias_target": target}
                 for side, b in zip(("train", "test", "extrapolation"), biases)},
    }  # fmt: skip


def summary(env_steps=200_000, updates=200_000, gen=3.0, wall=100.0):
    return {"agent": "td3", "env_steps": env_steps, "gradient_updates": updates,
            "gen_time_s": gen, "wall_time_s": wall}  # fmt: skip


def test_row_takes_each_side_and_the_held_out_share_of_wall_time():
    r = study.row(summary(), report(3000.0, 2000.0, 500.0), TD3_20, 1)
    assert (r["train_return"], r["test_return"], r["extrapolation_return"]) == (3000, 2000, 500)
    assert (r["gap"], r["gap_extrapolation"]) == (1000.0, 2500.0)
    assert (r["train_bias"], r["test_bias"], r["extrapolation_bias"]) == (-0.1, 0.2, 0.5)
    assert r["gen_share"] == pytest.approx(0.03) and r["env_steps"] == 200_000
    offline = study.row(summary(env_steps=0, updates=5000), report(1.0, 1.0, 1.0), TD3_20, 0)
    assert offline["env_steps"] == 5000  # offline: the updates


def test_record_round_trip_and_table_means_over_seeds(tmp_path):
    rows = [study.row(summary(gen=g), report(t, 1000.0, 0.0), TD3_20, seed)
            for seed, (t, g) in enumerate([(3000.0, 2.0), (2000.0, 4.0)])]  # fmt: skip
    path = tmp_path / "levels.csv"
    study.RECORD.write(path, rows)
    back = study.RECORD.read(path)
    assert back == rows
    line = next(x for x in study.table(back).splitlines() if TD3_20 in x)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "0, 1" and cells[3] == "2500.0 +- 500.0"  # training-level return
    assert cells[6] == "1500.0 +- 500.0"  # gap to interpolation levels
    assert cells[-1] == "3.0 +- 1.0%" and cells[-2] == "reward"
    # the aggregates per side: training-level returns 3000 and 2000 as D4RL Hopper scores
    # (x + 20.27) / 3254.57 -> 0.928, 0.621
    text = study.table(back)
    assert "| td3/hopper-levels-20 | 2 x 1 | 0.774 [" in text
    assert "### return on interpolation (held out)" in text
