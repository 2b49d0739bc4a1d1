"""bench/bias_study.py's record: a run's row from its summary (soft and deterministic parts),
the CSV round trip with its text column, and the table over seeds."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bias_study", REPO / "bench" / "bias_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)
TQC = "configs/tqc/hopper-cpu-bias-drop2.yaml"
TD3 = "configs/td3/hopper-bias.yaml"


def measurement(norm, redq, g, target="reward", **extra):
    return {"bias_normalized_mean": norm, "bias_normalized_redq_mean": redq,
            "bias_normalized_redq_sample_mean": 2 * redq,
            "bias_mean": norm * g, "q_mean": g + norm * g, "mc_return_mean": g,
            "bias_target": target, **extra}  # fmt: skip


def soft(step, norm, redq, det_norm, alpha=0.05):
    return {"env_steps": step, **measurement(norm, redq, 200.0, "soft", alpha=alpha),
            "deterministic": measurement(det_norm, det_norm / 2, 150.0)}  # fmt: skip


def summary(biases, final=1000.0):
    return {"env_steps": 100_000, "eval_return_mean": final, "bias": biases,
            "wall_time_s": 60.0}  # fmt: skip


def test_soft_row_keeps_both_measurements_and_means_over_the_run():
    r = study.row(summary([soft(50_000, 0.5, 0.4, 0.9), soft(100_000, -0.1, -0.2, 0.3)]), TQC, 1)
    assert (r["bias_target"], r["bias_at"], r["alpha"]) == ("soft", 100_000, 0.05)
    assert (r["norm_main"], r["redq_main"], r["g_main"]) == (-0.1, -0.2, 200.0)
    assert (r["redq_sample_main"], r["redq_sample_det"]) == (-0.4, 0.3)
    assert (r["norm_det"], r["redq_det"], r["g_det"]) == (0.3, 0.15, 150.0)
    assert r["norm_main_all"] == (0.5 - 0.1) / 2 and r["norm_det_all"] == (0.9 + 0.3) / 2
    assert r["redq_main_all"] == (0.4 - 0.2) / 2 and r["redq_det_all"] == (0.45 + 0.15) / 2


def test_deterministic_row_is_its_own_deterministic_part():
    b = {"env_steps": 100_000, **measurement(0.25, 0.125, 100.0)}
    r = study.row(summary([b]), TD3, 0)
    assert r["bias_target"] == "reward" and r["alpha"] is None
    assert r["norm_main"] == r["norm_det"] == 0.25


def test_record_round_trip_and_table(tmp_path):
    td3 = {"env_steps": 100_000, **measurement(-0.5, -0.25, 80.0)}
    rows = [study.row(summary([soft(100_000, 0.2, 0.1, 0.6)], 900.0), TQC, 1),
            study.row(summary([soft(100_000, 0.0, 0.1, 0.4, alpha=0.03)], 1100.0), TQC, 0),
            study.row(summary([td3]), TD3, 0)]  # fmt: skip
    study.RECORD.write(tmp_path / "b.csv", rows)
    back = study.RECORD.read(tmp_path / "b.csv")
    assert back == rows  # bias_target stays text
    lines = study.table(back).splitlines()
    assert lines[2] == (f"| {TQC} | 0, 1 | 100,000, 100,000 | 1000.0 +- 100.0 | soft "
                        "| +0.100 +- 0.100 | +0.100 +- 0.000 | +0.200 +- 0.000 "
                        "| +0.100 +- 0.100 | 220.0 +- 20.0 "
                        "| 200.0 +- 0.0 | +0.500 +- 0.100 | +0.250 +- 0.050 | +0.500 +- 0.100 "
                        "| 150.0 +- 0.0 | 0.0400 +- 0.0100 |")  # fmt: skip
    assert (
        lines[3].startswith(f"| {TD3} | 0 |") and "| same | same | same | same | n/a |" in lines[3]
    )
    # the aggregates: final returns 900 and 1100 as D4RL Hopper scores (x + 20.27) / 3254.57
    assert "## Aggregates" in lines
    assert any(x.startswith("| tqc/hopper-cpu-bias-drop2 | 2 x 1 | 0.313 [") for x in lines)
