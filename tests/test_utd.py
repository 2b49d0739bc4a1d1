"""harness/utd.py: threshold crossings, the D_J(sigma) fit, the seeded bootstrap, Pareto
points, best hyperparameters, the extrapolation check, bias per sigma, and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from core.errors import UserError
from harness import utd

SIGMAS = [0.5, 1.0, 2.0, 4.0, 8.0]


def law(sigma, d_min=2e4, beta=5e4, alpha=0.8):
    return d_min + (beta / np.asarray(sigma, dtype=float)) ** alpha


def noisy_seeds(sigmas, noise, seeds=8, rng_seed=0):
    """sigma -> per-seed steps: the law times (1 + noise * standard normal)."""
    rng = np.random.default_rng(rng_seed)
    return {s: list(law(s) * (1 + noise * rng.standard_normal(seeds))) for s in sigmas}


# 1. Steps to threshold


def test_smooth_is_a_trailing_mean_that_starts_with_what_it_has():
    assert np.allclose(utd.smooth([3, 6, 9, 12], 2), [3, 4.5, 7.5, 10.5])
    assert np.allclose(utd.smooth([3, 6, 9, 12], 3), [3, 4.5, 6, 9])
    assert np.allclose(utd.smooth([3, 6, 9], 1), [3, 6, 9])


def test_steps_to_threshold_on_hand_made_curves():
    steps = [10, 20, 30, 40, 50, 60, 70, 80]
    assert utd.steps_to_threshold(steps[:3], [1, 2, 3], 5) is None  # never crossed
    assert utd.steps_to_threshold(steps[:4], [0, 6, 1, 7], 5) == 20  # crossed, dropped: first
    assert utd.steps_to_threshold(steps[:3], [9, 1, 1], 5, window=3) == 10  # first evaluation
    # One spike above J: raw it counts; with window 3 the means are 0, 0, 3.3, 3.3, 3.3, 2, 4, 6.
    spike = [0, 0, 10, 0, 0, 6, 6, 6]
    assert utd.steps_to_threshold(steps, spike, 5) == 30
    assert utd.steps_to_threshold(steps, spike, 5, window=3) == 80
    assert utd.steps_to_threshold([], [], 5) is None


# 2. The fit


def test_fit_is_exact_on_noise_free_data():
    for d_min, beta, alpha in [(2e4, 5e4, 0.8), (1e4, 4e4, 1.0), (5e4, 300.0, 1.7), (0, 1e6, 0.5)]:
        fit = utd.fit_data_efficiency(SIGMAS, law(SIGMAS, d_min, beta, alpha))
        assert fit.d_min == pytest.approx(d_min, rel=1e-6, abs=1e-6)  # abs: for D_min = 0
        assert fit.beta == pytest.approx(beta, rel=1e-6)
        assert fit.alpha == pytest.approx(alpha, rel=1e-6)
        assert np.allclose(utd.predict(fit, SIGMAS), law(SIGMAS, d_min, beta, alpha), rtol=1e-9)


def test_fit_recovers_the_law_from_noisy_seeds():
    """2% noise per seed, 10 seeds, 6 sigmas. Tolerances (the worst of 30 noise draws was
    D_min 3%, alpha 5%, beta 50%): D_min 5%, alpha 7.5%, beta within a factor 1.6, D_J within
    2% everywhere. beta is the loose one: beta = (beta^alpha)^(1/alpha) and beta^alpha is in
    env steps, so a small alpha error is multiplied by log(beta^alpha) ~ 10."""
    sigmas = [0.5, 1, 2, 4, 8, 16]
    per = noisy_seeds(sigmas, 0.02, seeds=10, rng_seed=1)
    fit = utd.fit_data_efficiency(np.repeat(sigmas, 10), np.concatenate(list(per.values())))
    assert fit.d_min == pytest.approx(2e4, rel=0.05)
    assert fit.alpha == pytest.approx(0.8, rel=0.075)
    assert abs(np.log(fit.beta / 5e4)) < np.log(1.6)
    assert np.allclose(utd.predict(fit, sigmas), law(sigmas), rtol=0.02)


def test_fit_refuses_fewer_than_three_sigmas():
    with pytest.raises(UserError, match="3 distinct"):
        utd.fit_data_efficiency([1, 1, 2, 2], [5, 6, 3, 4])


# 3. Bootstrap


def test_bootstrap_is_seeded_and_contains_the_point_estimate():
    per = noisy_seeds(SIGMAS, 0.01)
    a = utd.bootstrap_fit(per, reps=100, seed=3)
    b = utd.bootstrap_fit(per, reps=100, seed=3)
    c = utd.bootstrap_fit(per, reps=100, seed=4)
    assert a.intervals() == b.intervals()
    assert a.predict_interval(16.0) == b.predict_interval(16.0)
    assert a.intervals() != c.intervals()
    for name, (lo, hi) in a.intervals().items():
        assert lo <= getattr(a.fit, name) <= hi and lo < hi
    lo, hi = a.predict_interval(np.array(SIGMAS))
    assert np.all(lo <= utd.predict(a.fit, SIGMAS)) and np.all(utd.predict(a.fit, SIGMAS) <= hi)


def test_bootstrap_leaves_out_a_sigma_with_a_seed_that_never_crossed():
    per = noisy_seeds(SIGMAS, 0.01)
    per[0.5][2] = None
    boot = utd.bootstrap_fit(per, reps=20)
    assert boot.excluded == {0.5: "1 of 8 seeds never reached J"}
    assert boot.fit.sigmas == (1.0, 2.0, 4.0, 8.0)
    per[1.0][0] = per[2.0][0] = None
    with pytest.raises(UserError, match="got 2"):
        utd.bootstrap_fit(per, reps=20)


# 4-5. Pareto frontier, power laws, best values


def test_pareto_frontier_on_hand_points():
    points = [(1, 10), (2, 5), (3, 5), (2, 8), (4, 1), (1, 10), (5, 0.5), (0.5, 20), (6, 0.5)]
    assert utd.pareto_frontier(points) == [(0.5, 20), (1, 10), (2, 5), (4, 1), (5, 0.5)]
    assert utd.pareto_frontier([]) == []


def test_compute_is_flops_when_given_else_wall_time_prorated_to_the_crossing():
    run = {"gradient_updates": 1000, "wall_time_s": 50.0, "env_steps": 500}
    assert utd.run_compute(run, 2e6) == 2e9
    assert utd.run_compute(run) == 50.0
    assert utd.compute_to_threshold(run, 100) == 10.0


def test_power_law_fit_recovers_a_known_law():
    x = np.array([0.5, 1, 2, 4, 8])
    coef, exponent = utd.power_law_fit(x, 3e-4 * x**-0.285)
    assert coef == pytest.approx(3e-4, rel=1e-10)
    assert exponent == pytest.approx(-0.285, rel=1e-10)


def test_best_value_per_sigma_with_ties_and_non_crossing_runs():
    sigmas = [1, 1, 1, 1, 2, 2, 2, 2, 4, 4]
    values = [512, 512, 256, 256, 256, 256, 512, 512, 256, 512]
    steps = [15, 15, 10, 20, 30, None, 40, 50, None, None]
    best = utd.best_per_sigma(sigmas, values, steps)
    assert best[1.0] == utd.Best(256, 15.0, (256, 512))  # a tie goes to the smaller value
    assert best[2.0] == utd.Best(512, 45.0, (512,))  # 256 had a run that never crossed
    assert 4.0 not in best  # no value with every run crossing


# 6. Extrapolation


def test_extrapolation_passes_on_the_law_and_fails_when_the_largest_sigma_moves():
    per = noisy_seeds(SIGMAS, 0.03)
    check = utd.extrapolation_check(per, reps=100, seed=0)
    assert check["target_sigma"] == 8.0 and check["fit_sigmas"] == [0.5, 1.0, 2.0, 4.0]
    assert check["inside"] and check["observed_mean"] == pytest.approx(np.mean(per[8.0]))
    assert check["predicted"] == pytest.approx(law(8.0), rel=0.05)
    per[8.0] = [3 * v for v in per[8.0]]
    assert not utd.extrapolation_check(per, reps=100, seed=0)["inside"]
    with pytest.raises(UserError, match="among the fitted"):
        utd.extrapolation_check(per, fit_sigmas=[1.0, 2.0, 8.0])


# 7. Bias


def test_bias_per_sigma_is_mean_and_std_over_seeds_of_each_runs_mean_and_last():
    runs = [{"agent": "td3", "env": "E", "utd": u, "run_dir": f"r{u}-{s}", "seed": s}
            for u in (1, 2) for s in (0, 1)]  # fmt: skip
    rows = [
        {"run_dir": "r1-0", "env_steps": 20, "bias_normalized_mean": 0.3},
        {"run_dir": "r1-0", "env_steps": 10, "bias_normalized_mean": 0.1},
        {"run_dir": "r1-1", "env_steps": 10, "bias_normalized_mean": 0.5},
        {"run_dir": "r1-1", "env_steps": 20, "bias_normalized_mean": 0.7},
        {"run_dir": "r2-0", "env_steps": 10, "bias_normalized_mean": -0.2},
    ]
    out = utd.bias_by_sigma(rows, runs)
    assert [(r["utd"], r["runs"]) for r in out] == [(1.0, 2), (2.0, 1)]
    # run means 0.2 and 0.6; last measurements 0.3 and 0.7
    assert out[0]["mean"] == pytest.approx(0.4) and out[0]["std"] == pytest.approx(0.2)
    assert out[0]["last_mean"] == pytest.approx(0.5) and out[0]["last_std"] == pytest.approx(0.2)
    assert out[1]["mean"] == pytest.approx(-0.2) and out[1]["std"] == 0.0


# 8. The CLI on a hand-written sweep folder

BUDGET, EVERY = 60000, 5000


def law_runs(sigmas=(0.5, 1, 2, 4, 8)):
    """Two seeds per sigma; seed 0 reaches return 1000 at D = 1e4 + 4e4 / sigma, seed 1 5000
    steps later, so the seeds' mean follows D_min = 12500, beta = 4e4, alpha = 1. At sigma 0.5
    D is 90000, past the budget: neither seed reaches J."""
    return [(s, seed, 1e4 + 4e4 / s + 5000 * seed, {"batch_size": 256})
            for s in sigmas for seed in (0, 1)]  # fmt: skip


def write_sweep(folder, runs, bias=True):
    """The three CSVs of a sweep of `runs`: (sigma, seed, the step at which the return, rising
    linearly from 0, reaches 1000, extra results.csv columns). Runs at utd 1 and 2 measure their
    bias twice: 0.1 utd + 0.1 seed at step 30000, 0.2 utd at 60000."""
    folder.mkdir()
    results, evals, biases = [], [], []
    for sigma, seed, cross, extra in runs:
        run = f"runs/td3-utd{sigma}-s{seed}-{len(results)}"
        results.append({"agent": "td3", "env": "Hopper-v5", "seed": seed, "utd": sigma,
                        "run_dir": run, "final_eval_return_mean": 1000.0,
                        "best_eval_return_mean": 1000.0, "env_steps": BUDGET,
                        "gradient_updates": int(sigma * BUDGET), "wall_time_s": 100.0 * sigma,
                        **extra})  # fmt: skip
        evals += [{"run_dir": run, "env_steps": step, "return_mean": 1000.0 * step / cross,
                   "return_std": 1.0} for step in range(EVERY, BUDGET + 1, EVERY)]  # fmt: skip
        if sigma in (1, 2):
            for step, b in ((30000, 0.1 * sigma + 0.1 * seed), (60000, 0.2 * sigma)):
                biases.append({"run_dir": run, "env_steps": step, "bias_normalized_mean": b,
                               "bias_mean": 10 * b, "q_mean": 1.0, "mc_return_mean": 1.0,
                               "bias_target": "mc"})  # fmt: skip
    tables = [("results.csv", results), ("evals.csv", evals)] + [("bias.csv", biases)] * bias
    for name, rows in tables:
        with (folder / name).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return folder


def test_cli_prints_and_writes_the_expected_numbers(tmp_path, capsys):
    folder = write_sweep(tmp_path / "sweep", law_runs())
    out = tmp_path / "out" / "utd"
    code = utd.main([str(folder), "--threshold", "1000", "--reps", "40", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| 1 | - | 0,1 | 50000, 55000 | 52500 |" in printed
    assert "left out: 2 of 2 seeds never reached J" in printed
    assert "every run started below J." in printed
    report = json.loads(out.with_name("utd.json").read_text())
    (group,) = report["groups"]
    rows = {row["sigma"]: row for row in group["sigmas"]}
    assert [r["steps_to_threshold"] for r in rows[2.0]["runs"]] == [30000, 35000]
    assert rows[2.0]["mean_steps"] == 32500
    assert rows[2.0]["mean_compute"] == pytest.approx(200 * 32500 / BUDGET)  # wall s, pro-rated
    assert rows[0.5]["mean_steps"] is None and "never" in rows[0.5]["excluded"]
    fit = group["fit"]
    assert fit["sigmas"] == [1.0, 2.0, 4.0, 8.0]
    assert fit["d_min"] == pytest.approx(12500, rel=1e-6)
    assert fit["beta"] == pytest.approx(4e4, rel=1e-6)
    assert fit["alpha"] == pytest.approx(1.0, rel=1e-6)
    lo, hi = fit["intervals"]["alpha"]
    assert lo <= 1.0 <= hi
    check = group["extrapolation"]
    assert check["fit_sigmas"] == [1.0, 2.0, 4.0] and check["target_sigma"] == 8.0
    assert check["predicted"] == pytest.approx(17500, rel=1e-6) and check["inside"]
    # Wall time to J = 100 sigma * D / budget grows with sigma here, so every point is optimal.
    assert [p["sigma"] for p in group["pareto"]] == [1.0, 2.0, 4.0, 8.0]
    assert group["grid_keys"] == []  # batch_size did not vary
    bias = {b["utd"]: b for b in group["bias"]}
    # utd 1: seed 0 measured 0.1, 0.2 (mean 0.15), seed 1 0.2, 0.2 (mean 0.2)
    assert bias[1.0]["mean"] == pytest.approx(0.175) and bias[1.0]["std"] == pytest.approx(0.025)
    assert bias[2.0]["last_mean"] == pytest.approx(0.4) and bias[2.0]["last_std"] == 0.0
    for kind in ("dj", "pareto", "bias"):
        assert out.with_name(f"utd-td3-Hopper-v5-{kind}.png").stat().st_size > 1000


def test_cli_picks_the_best_batch_size_per_sigma_and_leaves_out_unfinished_runs(tmp_path):
    """At each utd the batch size 512 / utd reaches J on the law above, the others 10000 steps
    later; the best batch size falls as 512 * utd^-1. One run failed (no evaluations)."""
    runs = [(s, seed, 1e4 + 4e4 / s + 5000 * seed + (0 if b == 512 / s else 1e4),
             {"batch_size": b, "status": "finished"})
            for s in (1, 2, 4) for b in (128, 256, 512) for seed in (0, 1)]  # fmt: skip
    folder = write_sweep(tmp_path / "sweep", runs, bias=False)
    with (folder / "results.csv").open("a") as f:
        f.write("td3,Hopper-v5,2,1,runs/failed,,,,,,256,failed (exit 1)\n")
    out = tmp_path / "utd"
    assert utd.main([str(folder), "--threshold", "1000", "--reps", "20", "--out", str(out)]) == 0
    report = json.loads(out.with_name("utd.json").read_text())
    (group,) = report["groups"]
    assert group["grid_keys"] == ["batch_size"]
    assert [row["config"] for row in group["sigmas"]] == [
        {"batch_size": b} for b in (512, 256, 128)
    ]
    assert group["power_laws"]["batch_size"] == pytest.approx({"coef": 512, "exponent": -1})
    assert group["fit"]["alpha"] == pytest.approx(1.0, rel=1e-6)
    assert group["fit"]["d_min"] == pytest.approx(12500, rel=1e-6)
    assert report["notes"] == ["not finished, left out: runs/failed (failed (exit 1))"]


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("missing dir", ["--threshold", "1000"], "no such sweep folder"),
        ("no evals", ["--threshold", "1000"], "no evals.csv"),
        ("unreachable", ["--threshold", "1e9"], "no run reached"),
        ("two sigmas", ["--threshold", "1000"], ">= 3 sigmas"),
        ("bad threshold", ["--threshold", "Hopper-v5=high"], "J or ENV=J"),
        ("bad window", ["--threshold", "1000", "--window", "0"], "--window"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, args, message):
    folder = tmp_path / "sweep"
    if case == "no evals":
        write_sweep(folder, law_runs(), bias=False)
        (folder / "evals.csv").unlink()
    elif case == "two sigmas":
        write_sweep(folder, law_runs(sigmas=(1, 2)), bias=False)
    elif case != "missing dir":
        write_sweep(folder, law_runs(), bias=False)
    code = utd.main([str(folder), *args, "--reps", "5", "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_the_data_efficiency_figure_shows_the_data_not_the_band_beyond_it():
    """With few seeds the bootstrap band below the smallest sigma can reach millions of steps;
    the y-axis keeps the measured points and the fit in view instead."""
    from harness.utd import bootstrap_fit
    from harness.utd_plots import plot_data_efficiency

    per_sigma = {0.5: [13000, 7000, 10500], 1.0: [8000, 3000, 4500], 2.0: [5000, 3000, 3500],
                 4.0: [3500, 3000, 2000], 8.0: [5500, 2000, 2000]}  # fmt: skip
    boot = bootstrap_fit(per_sigma, reps=200, seed=0)
    ax = plot_data_efficiency(per_sigma, boot).axes[0]
    low, high = ax.get_ylim()
    assert low == 0 and 13000 < high <= 1.5 * 13000 + 1e-6


def test_first_evaluations_flag_runs_already_at_j_before_learning():
    """A J within reach of an untrained policy: the runs at or above it at their first
    evaluation (the earliest step, whatever the CSV's order) are named, and the best start."""
    curves = {"a": (np.array([1000, 500]), np.array([-30.0, -9.0])),
              "b": (np.array([500, 1000]), np.array([-20.0, -8.0])),
              "c": (np.array([]), np.array([]))}  # fmt: skip
    sweep = utd.Sweep(runs=[], curves=curves, bias=[])
    runs = [{"run_dir": name} for name in curves]
    check = utd.first_evaluation_check(runs, sweep, threshold=-10.0)
    assert check == {"best_return": -9.0, "best_run": "a", "at_or_above_threshold": ["a"]}
    assert utd.first_evaluation_check(runs, sweep, -5.0)["at_or_above_threshold"] == []
    assert utd.first_evaluation_check(runs[2:], sweep, -5.0) is None
