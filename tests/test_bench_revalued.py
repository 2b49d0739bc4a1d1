"""bench/revalued_study.py's record: a finished run's row from its summary, the CSV round
trip, and the table drawn from rows of several seeds and sessions."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("study", REPO / "bench" / "revalued_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)
HOPPER = "configs/revalued/hopper-cpu.yaml"


def summary(returns, biases=(), member_std=None):
    evals = [{"env_steps": 10_000 * (i + 1), "return_mean": r} for i, r in enumerate(returns)]
    return {
        "env_steps": evals[-1]["env_steps"], "eval_return_mean": returns[-1], "evals": evals,
        "bias": [{"env_steps": s, "bias_normalized_mean": b} for s, b in biases],
        "last_update_metrics": {} if member_std is None else {"target/member_std": member_std},
        "wall_time_s": 12.5,
    }  # fmt: skip


def test_row_finds_best_first_crossing_of_1500_and_last_bias():
    s = summary([900.0, 1500.0, 2100.0, 1700.0], biases=[(20_000, 0.5), (40_000, -0.25)],
                member_std=0.75)  # fmt: skip
    r = study.row(s, HOPPER, 1)
    assert (r["final_return"], r["best_return"], r["best_at"]) == (1700.0, 2100.0, 30_000)
    assert r["last10_return"] == (900 + 1500 + 2100 + 1700) / 4  # fewer than 10: all of them
    assert r["first_at_1500"] == 20_000  # >= 1500 counts
    assert (r["bias_normalized"], r["bias_at"], r["target_member_std"]) == (-0.25, 40_000, 0.75)
    assert r["bias_normalized_all"] == (0.5 - 0.25) / 2


def test_row_of_a_run_that_never_reached_1500_nor_measured_bias():
    r = study.row(summary([100.0, 1499.9]), HOPPER, 0)
    assert r["first_at_1500"] is None and r["bias_normalized"] is None
    assert r["bias_normalized_all"] is None
    assert r["target_member_std"] is None


def test_record_round_trip_and_table_over_seeds(tmp_path):
    rows = [study.row(summary([1000.0, 2000.0], [(10_000, 0.5), (20_000, 0.1)], 0.5), HOPPER, 1),
            study.row(summary([1200.0, 1000.0], [(20_000, 0.3)], 0.25), HOPPER, 0)]  # fmt: skip
    study.RECORD.write(tmp_path / "r.csv", rows)
    back = study.RECORD.read(tmp_path / "r.csv")
    assert back == rows
    line = study.table(back).splitlines()[2]
    # seeds sorted; final (2000, 1000): 1500 +- 500; mean of the evals (1500, 1100):
    # 1300 +- 200; best (2000, 1200): 1600 +- 400; last bias (0.1, 0.3): 0.2 +- 0.1; mean of
    # each run's biases ((0.5 + 0.1) / 2, 0.3): 0.3 +- 0.0
    assert line == (f"| {HOPPER} | 0, 1 | 20,000, 20,000 | 1500.0 +- 500.0 | 1300.0 +- 200.0 "
                    "| 1600.0 +- 400.0 "
                    "| never, 20,000 | +0.200 +- 0.100 | +0.300 +- 0.000 "
                    "| 0.375 +- 0.125 |")  # fmt: skip
    # the aggregates per method across envs: finals 2000 and 1000 as D4RL Hopper scores
    # (x + 20.27) / 3254.57 -> 0.621, 0.313
    text = study.table(back)
    assert "| revalued/*-cpu | 2 x 1 | 0.467 [" in text
    assert "### final eval return" in text and "### mean of the last 10 evals" in text


def test_a_csv_of_something_else_is_refused(tmp_path):
    (tmp_path / "x.csv").write_text("agent,seed\ntd3,0\n")
    with pytest.raises(SystemExit, match="not a REValueD-study CSV"):
        study.RECORD.read(tmp_path / "x.csv")


def test_last10_averages_only_the_last_ten_evaluations():
    r = study.row(summary([5000.0, 5000.0] + [100.0] * 9 + [1200.0]), HOPPER, 0)
    assert r["last10_return"] == pytest.approx((100.0 * 9 + 1200.0) / 10)
    assert r["best_return"] == 5000.0 and r["first_at_1500"] == 10_000
