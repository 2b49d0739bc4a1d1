"""bench/procgen_study.py's record: a finished run's row from a hand-made summary.json, the CSV
round trip, the table, and the issue's bar (holding and failing) from hand-made rows."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from harness import plots

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("study", REPO / "bench" / "procgen_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def report(step, train_return, test_return):
    """An `evals` entry as train.py writes it on coinrun easy (range [5, 10])."""
    train, test = (train_return - 5) / 5, (test_return - 5) / 5
    return {"env_steps": step, "return_mean": train_return, "return_std": 1.0,
            "train_normalized": train, "test_return_mean": test_return, "test_return_std": 2.0,
            "test_normalized": test, "gap": train - test}  # fmt: skip


def summary(points):
    evals = [report(*p) for p in points]
    return {"env_steps": evals[-1]["env_steps"], "eval_return_mean": evals[-1]["return_mean"],
            "evals": evals, "wall_time_s": 321.5}  # fmt: skip


def test_row_from_a_summary_json(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary([(100, 6.0, 5.5), (200, 9.0, 7.5), (300, 8.5, 6.0)])))
    r = study.row(json.loads(path.read_text()), "coinrun", 10, 1)
    # the last evaluation: train 8.5 -> 0.7, held-out 6.0 -> 0.2, gap 0.5
    assert (r["game"], r["levels"], r["seed"], r["env_steps"]) == ("coinrun", 10, 1, 300)
    assert (r["train_return"], r["test_return"]) == (8.5, 6.0)
    assert (r["train_normalized"], r["test_normalized"]) == (0.7, 0.2)
    assert abs(r["gap"] - 0.5) < 1e-12
    # the best: train 9.0 -> 0.8 and held-out 7.5 -> 0.5, both at step 200
    assert (r["best_train_normalized"], r["best_test_normalized"], r["best_test_at"]) == (
        0.8, 0.5, 200)  # fmt: skip
    assert r["wall_time_s"] == 321.5
    assert r["curve"] == "100 0.2000 0.1000; 200 0.8000 0.5000; 300 0.7000 0.2000"
    assert study.parse_curve(r["curve"]) == [(100, 0.2, 0.1), (200, 0.8, 0.5), (300, 0.7, 0.2)]
    # an evaluation of the training levels alone (between two gen_every reports) is not a point
    between = summary([(100, 6.0, 5.5), (200, 9.0, 7.5), (300, 8.5, 6.0)])
    between["evals"].insert(1, {"env_steps": 150, "return_mean": 10.0, "return_std": 0.0,
                                "train_normalized": 1.0})  # fmt: skip
    assert study.row(between, "coinrun", 10, 1) == r


def test_train_argv_is_the_study_s_ppo_run():
    args = study.argparse.Namespace(frames=1000, num_envs=16, eval_every=500, eval_episodes=50,
                                    train_args="--set num_steps=64")  # fmt: skip
    argv = study.train_argv("coinrun", 10, 1, args)
    assert argv == ["--agent", "ppo", "--env", "procgen:coinrun", "--distribution-mode", "easy",
                    "--train-levels", "10", "--seed", "1", "--total-steps", "1000",
                    "--num-envs", "16", "--eval-every", "500", "--gen-every", "500",
                    "--eval-episodes", "50", "--precision", "auto",
                    "--set", "num_steps=64"]  # fmt: skip
    assert study.run_dir(Path("o"), "coinrun", 10, 1) == Path("o/ppo-coinrun-l10-s1")
    args.precision = "fp32"  # the study's --precision goes to train.py as given
    assert study.train_argv("coinrun", 10, 1, args)[-4:-2] == ["--precision", "fp32"]


def test_train_argv_of_the_value_based_agent_is_its_preset_with_the_study_s_split():
    args = study.argparse.Namespace(agent="revalued", frames=1000, num_envs=None, eval_every=500,
                                    eval_episodes=20, bias_every=400, bias_states=30,
                                    train_args="--set lr=1e-4")  # fmt: skip
    argv = study.train_argv("coinrun", 200, 0, args)
    assert argv == ["--config", "configs/revalued/procgen-coinrun-cpu.yaml",
                    "--env", "procgen:coinrun", "--distribution-mode", "easy",
                    "--train-levels", "200", "--seed", "0", "--total-steps", "1000",
                    "--eval-every", "500", "--gen-every", "500", "--eval-episodes", "20",
                    "--precision", "auto", "--bias-every", "400", "--bias-states", "30",
                    "--set", "lr=1e-4"]  # fmt: skip
    assert (REPO / argv[1]).is_file()
    assert study.run_dir(Path("o"), "coinrun", 200, 0, "revalued") == Path(
        "o/revalued-coinrun-l200-s0"
    )


def side(bias, redq):
    return {"bias_mean": bias, "bias_normalized_redq_mean": redq, "n_states": 50}


def test_value_based_rows_carry_the_last_bias_of_each_side_and_the_table_shows_it(tmp_path):
    rows = []
    for seed, (train, held) in enumerate([(0.5, 1.5), (1.5, 2.5)]):
        s = summary([(1000, 8.0, 6.0)])
        s["bias"] = [{"env_steps": 500, "train": side(9.0, 9.0), "test": side(9.0, 9.0)},
                     {"env_steps": 1000, "train": side(train, train / 10),
                      "test": side(held, held / 10)}]  # fmt: skip
        rows.append(study.row(s, "coinrun", 200, seed, "revalued"))
    assert (rows[0]["bias_train"], rows[0]["bias_test"]) == (0.5, 1.5)
    assert (rows[0]["bias_train_redq"], rows[0]["bias_test_redq"]) == (0.05, 0.15)
    assert study.row(summary([(1000, 8.0, 6.0)]), "coinrun", 10, 0)["bias_train"] is None
    study.RECORD.write(tmp_path / "r.csv", rows)
    assert study.RECORD.read(tmp_path / "r.csv") == rows
    lines = study.table(rows + rows_of({(10, 0): (0.8, 0.4)})).splitlines()
    # train (0.5, 1.5): +1.0 +- 0.5; held-out (1.5, 2.5): +2.0 +- 0.5; REDQ a tenth of those
    assert ("| revalued | coinrun | 200 | 0, 1 | +1.000 +- 0.500 | +0.100 +- 0.050 "
            "| +2.000 +- 0.500 | +0.200 +- 0.050 |") in lines  # fmt: skip
    assert not any(x.startswith("| ppo | coinrun | 10 | 0 | +") for x in lines)  # PPO: no Q
    assert "- revalued, coinrun: the bar needs two level counts; rows only for 200 levels" in lines


def rows_of(gaps):
    """Rows of coinrun from {(levels, seed): (train normalized, test normalized)}."""
    rows = []
    for (levels, seed), (train, test) in gaps.items():
        r = study.row(summary([(1000, 5 + 5 * train, 5 + 5 * test)]), "coinrun", levels, seed)
        rows.append(r)
    return rows


def test_record_round_trip(tmp_path):
    rows = rows_of({(10, 0): (0.8, 0.4), (200, 0): (0.6, 0.5)})
    rows[1]["curve"] = ""  # an empty text column survives as ''
    study.RECORD.write(tmp_path / "r.csv", rows)
    assert study.RECORD.read(tmp_path / "r.csv") == rows


def test_table_and_a_bar_that_holds():
    rows = rows_of({(10, 0): (0.8, 0.4), (10, 1): (0.6, 0.4),
                    (200, 0): (0.6, 0.5), (200, 1): (0.5, 0.4)})  # fmt: skip
    lines = study.table(rows).splitlines()
    assert "every run's row is in docs/procgen-study.csv." in lines[2]
    e64 = "docs/procgen-study-e64.csv"
    assert f"row is in {e64}." in study.table(rows, e64)
    # 10 levels: train (0.8, 0.6) 0.7 +- 0.1, held-out 0.4 +- 0, gap (0.4, 0.2) 0.3 +- 0.1;
    # returns 5 + 5x: train (9, 8), held-out (7, 7)
    assert (
        "| ppo | coinrun | 10 | 0, 1 | 1,000 | 0.700 +- 0.100 | 0.400 +- 0.000 "
        "| +0.300 +- 0.100 | 8.50 +- 0.50 | 7.00 +- 0.00 | 0.400 +- 0.000 |"
    ) in lines
    # 200 levels: train 0.55 +- 0.05, held-out 0.45 +- 0.05, gap 0.1 +- 0
    assert (
        "| ppo | coinrun | 200 | 0, 1 | 1,000 | 0.550 +- 0.050 | 0.450 +- 0.050 "
        "| +0.100 +- 0.000 | 7.75 +- 0.25 | 7.25 +- 0.25 | 0.450 +- 0.050 |"
    ) in lines
    assert (
        "- ppo, coinrun, train > held-out at 10 levels: seed 0 yes, seed 1 yes; mean yes" in lines
    )
    assert ("- ppo, coinrun, gap smaller at 200 than at 10 levels: seed 0 yes, seed 1 yes; "
            "mean yes (+0.100 vs +0.300, seeds 0, 1)") in lines  # fmt: skip
    assert any("**bar holds**" in line for line in lines)
    assert "- ppo, coinrun, 10 levels, seed 0: 1,000: 0.800 / 0.400" in lines
    # the aggregates per level count: held-out (0.4, 0.4) and (0.5, 0.4), train (0.5, 0.6)
    assert "| ppo, 10 training levels | 2 x 1 | 0.400 [0.400, 0.400] |" in " ".join(lines)
    assert any(x.startswith("| ppo, 200 training levels | 2 x 1 | 0.450 [") for x in lines)
    assert any(x.startswith("| ppo, 200 training levels | 2 x 1 | 0.550 [") for x in lines)


def test_bar_fails_when_one_seed_s_gap_grows_with_more_levels():
    # seed 1's gap: 0.1 at 10 levels, 0.3 at 200; the mean gap still shrinks (0.25 vs 0.2)
    rows = rows_of({(10, 0): (0.8, 0.4), (10, 1): (0.5, 0.4),
                    (200, 0): (0.6, 0.5), (200, 1): (0.7, 0.4)})  # fmt: skip
    lines = study.bar(rows, "coinrun")
    assert (
        lines[0]
        == "- ppo, coinrun, train > held-out at 10 levels: seed 0 yes, seed 1 yes; mean yes"
    )
    assert lines[1].startswith(
        "- ppo, coinrun, gap smaller at 200 than at 10 levels: seed 0 yes, seed 1 no; mean yes"
    )
    assert "**bar fails**" in lines[2]


def test_bar_fails_when_held_out_beats_train_with_few_levels():
    rows = rows_of({(10, 0): (0.3, 0.4), (200, 0): (0.3, 0.5)})  # gaps -0.1 and -0.2
    lines = study.bar(rows, "coinrun")
    assert lines[0] == "- ppo, coinrun, train > held-out at 10 levels: seed 0 no; mean no"
    assert "seed 0 yes; mean yes" in lines[1]  # the gap does shrink, yet the bar fails
    assert "**bar fails**" in lines[2]


def test_a_pattern_in_one_seed_does_not_decide_the_bar():
    # the pattern holds in seed 0 at both counts; seed 1 has a 10-level row only
    rows = rows_of({(10, 0): (0.8, 0.4), (200, 0): (0.6, 0.5), (10, 1): (0.7, 0.4)})
    lines = study.bar(rows, "coinrun")
    assert "seed 0 yes, seed 1 yes; mean yes" in lines[0]
    assert "**bar not decided: the pattern holds in 1 seed, the bar needs 2**" in lines[2]


def at_budgets(rows: list[dict], *steps: int) -> list[dict]:
    """`rows` with their env_steps set, in order."""
    for r, n in zip(rows, steps, strict=True):
        r["env_steps"] = n
    return rows


def test_a_bar_over_rows_of_different_budgets_is_not_decided():
    # the pattern holds on these gaps (0.4, 0.2 at 10 levels; 0.1, 0.1 at 200), but the 10-level
    # runs went on to 1.2M frames while the 200-level rows are still the 600k runs'
    rows = rows_of({(10, 0): (0.8, 0.4), (10, 1): (0.6, 0.4),
                    (200, 0): (0.6, 0.5), (200, 1): (0.5, 0.4)})  # fmt: skip
    at_budgets(rows, 1_200_128, 1_201_152, 600_416, 602_112)
    lines = study.bar(rows, "coinrun")
    assert "seed 0 yes, seed 1 yes; mean yes" in lines[0] and "mean yes" in lines[1]
    assert ("**bar not decided: its runs were trained to different budgets (600,416 to "
            "1,201,152 frames)**") in lines[2]  # fmt: skip
    # within 10% of one another (a rollout's rounding, 4,096 frames here) the bar is judged
    at_budgets(rows, 1_200_128, 1_201_152, 1_093_000, 1_196_032)
    assert "**bar holds**" in study.bar(rows, "coinrun")[2]
    rows[2]["env_steps"] = 1_091_000  # 1,201,152 > 1.1 x 1,091,000
    assert "**bar not decided: its runs were trained to different budgets" in study.bar(
        rows, "coinrun")[2]  # fmt: skip


def test_a_first_part_that_fails_at_one_budget_decides_the_bar_beside_older_rows():
    # the 16-environment grid of 2026-12-06: both 10-level runs at 1.2M, seed 1 collapsed to the
    # same score on both sides (no gap); the 200-level rows are still the 600k runs'
    rows = at_budgets(rows_of({(10, 0): (0.7, 0.34), (10, 1): (0.0, 0.0),
                               (200, 0): (0.4, 0.36), (200, 1): (0.44, 0.37)}),
                      1_200_128, 1_200_128, 602_112, 602_112)  # fmt: skip
    lines = study.bar(rows, "coinrun")
    assert lines[0].endswith("at 10 levels: seed 0 yes, seed 1 no; mean yes")
    assert ("**bar fails at 1,200,128 frames on its 10-level runs alone (the 200-level runs, at "
            "other budgets, cannot change that)**") in lines[2]  # fmt: skip
    # 10-level rows of two budgets themselves: not decided, whichever part fails
    rows[1]["env_steps"] = 602_112
    assert "**bar not decided: its runs were trained to different budgets" in study.bar(
        rows, "coinrun")[2]  # fmt: skip


def test_bar_with_one_level_count_or_no_common_seed():
    assert "needs two level counts" in study.bar(rows_of({(10, 0): (0.8, 0.4)}), "coinrun")[0]
    lines = study.bar(rows_of({(10, 0): (0.8, 0.4), (200, 1): (0.6, 0.5)}), "coinrun")
    assert "no seed; mean no" in lines[1] and "**bar fails**" in lines[2]


def test_a_csv_of_something_else_is_refused(tmp_path):
    (tmp_path / "x.csv").write_text("preset,seed\na,0\n")
    try:
        study.RECORD.read(tmp_path / "x.csv")
    except SystemExit as exc:
        assert "Procgen-study" in str(exc)
    else:
        raise AssertionError("read a CSV without the key columns")


def final(train, test, n=100, train_std=0.9, test_std=1.2, steps=1000, seed=7):
    """A final report as evaluate.py --generalization --json writes it (the keys used)."""
    return {"train_normalized": train, "test_normalized": test, "gap": train - test,
            "train_normalized_std": train_std, "test_normalized_std": test_std,
            "n_episodes": n, "seed": seed, "env_steps": steps}  # fmt: skip


def test_final_fields_carry_the_gap_and_its_standard_error():
    fields = study.final_fields(final(0.5, 0.25))
    # s.e. = sqrt((0.9^2 + 1.2^2) / 100) = sqrt(2.25) / 10 = 0.15
    assert abs(fields["final_gap_se"] - 0.15) < 1e-12
    assert (fields["final_episodes"], fields["final_gap"]) == (100, 0.25)
    assert fields["final_train_levels"] == ""  # the report says nothing of its levels
    assert study.final_fields(None) == {**dict.fromkeys(study.FINAL_FIELDS),
                                        "final_train_levels": ""}  # fmt: skip


def test_a_small_level_count_keeps_its_training_side_by_level(tmp_path):
    made = final(0.4, 0.3)
    # 6 episodes on 3 training levels: level 2 twice (10, 0), level 0 three times (10, 10, 0),
    # level 7 once (0); in level order: 0 -> 20/3, 2 -> 5, 7 -> 0
    made.update(n_train_levels=10, train_levels=[2, 0, 7, 0, 2, 0],
                train_returns=[10.0, 10.0, 0.0, 10.0, 0.0, 0.0])  # fmt: skip
    assert study.final_fields(made)["final_train_levels"] == "0:3:6.67 2:2:5.00 7:1:0.00"
    # more training levels than PER_LEVEL_MAX: not kept (the row would be as long as the run)
    assert study.per_level_text({**made, "n_train_levels": study.PER_LEVEL_MAX + 1}) == ""
    assert study.per_level_text({**made, "n_train_levels": study.PER_LEVEL_MAX}) != ""
    r = study.row(summary([(1000, 7.0, 6.5)]), "coinrun", 10, 0, final=made)
    study.RECORD.write(tmp_path / "r.csv", [r])
    assert study.RECORD.read(tmp_path / "r.csv") == [r]
    assert ("final report (100 episodes a side): 0.400 / 0.300, gap +0.100 +- 0.150 (s.e.); by "
            "training level (level: mean return (episodes)): 0: 6.67 (3), 2: 5.00 (2), 7: 0.00 (1)"
            ) in study.table([r])  # fmt: skip
    # a record written before the column reads it as '' and draws no breakdown
    with open(tmp_path / "r.csv", newline="") as f:
        old = [{k: v for k, v in row.items() if k != "final_train_levels"}
               for row in csv.DictReader(f)]  # fmt: skip
    with open(tmp_path / "old.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(old[0]))
        writer.writeheader()
        writer.writerows(old)
    (back,) = study.RECORD.read(tmp_path / "old.csv")
    assert back["final_train_levels"] == "" and "by training level" not in study.table([back])


def test_the_bar_is_judged_on_the_final_reports_when_every_row_has_one(tmp_path):
    # the last evaluations hold the pattern (as test_table_and_a_bar_that_holds) ...
    gaps = {(10, 0): (0.8, 0.4), (10, 1): (0.6, 0.4), (200, 0): (0.6, 0.5), (200, 1): (0.5, 0.4)}
    # ... the final reports do not: seed 1 scores lower on its 10 training levels
    finals = {(10, 0): (0.5, 0.3), (10, 1): (0.3, 0.4), (200, 0): (0.4, 0.4), (200, 1): (0.4, 0.3)}
    rows = []
    for (levels, seed), (train, test) in gaps.items():
        s = summary([(1000, 5 + 5 * train, 5 + 5 * test)])
        rows.append(study.row(s, "coinrun", levels, seed, final=final(*finals[levels, seed])))
    lines = study.bar(rows, "coinrun")
    # mean at 10 levels: train 0.4 vs held-out 0.35 (yes); gaps 0.2, -0.1 -> 0.05 vs 0, 0.1
    assert (
        lines[0] == "- ppo, coinrun, train > held-out at 10 levels: seed 0 yes, seed 1 no; mean yes"
    )
    assert lines[1] == ("- ppo, coinrun, gap smaller at 200 than at 10 levels: seed 0 yes, "
                        "seed 1 no; mean no (+0.050 vs +0.050, seeds 0, 1)")  # fmt: skip
    assert lines[2].startswith("- ppo, coinrun: **bar fails**")
    assert lines[2].endswith("on the final reports, 100 episodes a side)")
    study.RECORD.write(tmp_path / "r.csv", rows)
    assert study.RECORD.read(tmp_path / "r.csv") == rows  # the final columns round-trip
    text = study.table(rows)
    # 10 levels: train (0.5, 0.3), held-out (0.3, 0.4), gaps (0.2, -0.1); s.e. 0.15 each
    assert ("| ppo | coinrun | 10 | 0, 1 | 100 | 0.400 +- 0.100 | 0.350 +- 0.050 "
            "| +0.050 +- 0.150 | 0.150 |") in text.splitlines()  # fmt: skip
    assert ("- ppo, coinrun, 10 levels, seed 1: 1,000: 0.600 / 0.400; final report (100 episodes "
            "a side): 0.300 / 0.400, gap -0.100 +- 0.150 (s.e.)") in text  # fmt: skip
    # the aggregates take the final reports: held-out at 10 levels (0.3, 0.4) -> mean 0.35
    assert "| ppo, 10 training levels | 2 x 1 | 0.350 [" in text
    # one row without a final report: the bar goes back to the last evaluations and says so
    rows[3] = study.row(summary([(1000, 7.5, 7.0)]), "coinrun", 200, 1)
    assert study.bar(rows, "coinrun")[2].endswith("on the last evaluations during training)")
    assert "**bar holds**" in study.bar(rows, "coinrun")[2]


def test_a_final_report_is_read_from_the_run_folder_once_made(tmp_path, monkeypatch):
    calls = []

    def evaluate(argv, **kwargs):
        calls.append(argv)
        out = Path(argv[argv.index("--json") + 1])
        out.write_text(json.dumps(final(0.5, 0.25, n=int(argv[argv.index("--episodes") + 1]))))
        return study.subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(study.subprocess, "run", evaluate)
    assert study.final_report(tmp_path, 1000, 100, 7, compute=False) is None
    assert study.final_report(tmp_path, 1000, 100, 7)["gap"] == 0.25
    assert calls[0][1:] == [str(study.REPO / "evaluate.py"), str(tmp_path), "--generalization",
                            "--episodes", "100", "--seed", "7", "--json",
                            str(tmp_path / "generalization-1000-100ep-seed7.json")]  # fmt: skip
    assert study.final_report(tmp_path, 1000, 100, 7)["gap"] == 0.25
    assert len(calls) == 1  # the second call read the cache
    # a cached report that is not of this (env step, episodes, seed) is refused by name
    (tmp_path / "generalization-2000-100ep-seed7.json").write_text(json.dumps(final(0.5, 0.2)))
    try:
        study.final_report(tmp_path, 2000, 100, 7)
    except SystemExit as exc:
        assert "(1000, 100, 7), not (2000, 100, 7)" in str(exc)
    else:
        raise AssertionError("used a report made at another env step")


def test_a_failed_final_report_leaves_the_row_without_one(tmp_path, monkeypatch, capsys):
    def fail(argv, **kwargs):
        return study.subprocess.CompletedProcess(argv, 1, "", "error: no checkpoint in x\n")

    monkeypatch.setattr(study.subprocess, "run", fail)
    assert study.final_report(tmp_path, 1000, 200, 7) is None
    assert "final report failed: error: no checkpoint in x" in capsys.readouterr().err


def test_start_level_seed_gives_each_seed_a_level_block_of_its_own():
    assert [study.start_level("seed", s) for s in (0, 1, 2)] == [1_000_000, 2_000_000, 3_000_000]
    assert [study.start_level("0", 1), study.start_level("500", 1)] == [0, 500]
    assert (study.level_sets("seed"), study.level_sets("0"), study.level_sets("7")) == (
        "per seed", "from 0", "from 7")  # fmt: skip
    args = study.argparse.Namespace(frames=1000, num_envs=16, eval_every=500, eval_episodes=50,
                                    train_args="", start_level="seed")  # fmt: skip
    argv = study.train_argv("coinrun", 10, 1, args)
    i = argv.index("--start-level")
    assert argv[i + 1] == "2000000" and argv[argv.index("--seed") + 1] == "1"
    assert study.run_dir(Path("o"), "coinrun", 10, 1, start=2_000_000) == Path(
        "o/ppo-coinrun-l10-s1-start2000000"
    )
    args.start_level = "0"  # the protocol's split: no flag, the folder named as before
    assert "--start-level" not in study.train_argv("coinrun", 10, 1, args)


def per_seed(rows):
    for r in rows:
        r["start_level"], r["level_sets"] = study.start_level("seed", r["seed"]), "per seed"
    return rows


def test_level_sets_are_kept_apart_in_the_record_the_table_and_the_bar(tmp_path):
    # from level 0 the bar fails (train below held-out at 10 levels); per seed it holds
    fixed = rows_of({(10, 0): (0.3, 0.4), (10, 1): (0.2, 0.4),
                     (200, 0): (0.6, 0.5), (200, 1): (0.5, 0.4)})  # fmt: skip
    own = per_seed(rows_of({(10, 0): (0.8, 0.4), (10, 1): (0.6, 0.4),
                            (200, 0): (0.6, 0.5), (200, 1): (0.5, 0.4)}))  # fmt: skip
    # the same (agent, game, levels, seed) from another start level is another row
    rows = study.RECORD.merge(fixed, own)
    assert len(rows) == 8
    study.RECORD.write(tmp_path / "r.csv", rows)
    assert study.RECORD.read(tmp_path / "r.csv") == rows
    lines = study.table(rows).splitlines()
    assert any(
        x.startswith("| ppo | coinrun | 10 | 0, 1 | 1,000 | 0.250 +- 0.050 |") for x in lines
    )
    assert any(x.startswith("| ppo | coinrun | 10 (per seed) | 0, 1 | 1,000 | 0.700 +- 0.100 |")
               for x in lines)  # fmt: skip
    assert "- ppo, coinrun, train > held-out at 10 levels: seed 0 no, seed 1 no; mean no" in lines
    assert ("- ppo, coinrun, level sets per seed, train > held-out at 10 levels: seed 0 yes, "
            "seed 1 yes; mean yes") in lines  # fmt: skip
    verdicts = [x for x in lines if "**bar" in x]
    assert len(verdicts) == 2 and "fails" in verdicts[0] and "holds" in verdicts[1]
    assert "- ppo, coinrun, 10 levels 2,000,000-2,000,009, seed 1: 1,000: 0.600 / 0.400" in lines
    assert any(x.startswith("| ppo, 10 (per seed) training levels | 2 x 1 |") for x in lines)


def test_rows_written_before_the_start_level_columns_read_as_from_level_0(tmp_path):
    rows = rows_of({(10, 0): (0.8, 0.4)})
    old = [k for k in study.CSV_FIELDS if k not in ("start_level", "level_sets")]
    with open(tmp_path / "old.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    back = study.RECORD.read(tmp_path / "old.csv")
    assert (back[0]["start_level"], back[0]["level_sets"]) == (0, "from 0")
    assert back == rows


def test_the_record_s_curves_are_drawn_per_level_count_on_common_steps(tmp_path):
    def rec(levels, seed, curve):
        return {"agent": "ppo", "game": "coinrun", "levels": levels, "level_sets": "from 0",
                "seed": seed, "curve": curve}  # fmt: skip

    rows = [rec(10, 0, "100704 0.2000 0.1000; 203104 0.6000 0.2000"),
            rec(10, 1, "102400 0.4000 0.3000; 200704 0.8000 0.2000"),
            rec(200, 0, "102400 0.3000 0.3000; 200704 0.5000 0.4000")]  # fmt: skip
    groups = study.curve_groups(rows)
    assert list(groups) == ["ppo coinrun, 10 levels", "ppo coinrun, 200 levels"]
    # evaluations ~100k apart: steps floored to 10,000, so both seeds meet at 100k and 200k
    assert [g["env_steps"] for g in groups["ppo coinrun, 10 levels"][1]["summary"][
        "generalization"]] == [100_000, 200_000]  # fmt: skip
    fig = plots.plot(groups, tmp_path / "c.png")
    sides, gap = fig.axes
    solid = [ln for ln in sides.lines if ln.get_linestyle() == "-"]
    # 10 levels, train: (0.2 + 0.4) / 2 = 0.3, (0.6 + 0.8) / 2 = 0.7
    assert solid[0].get_xdata().tolist() == [100_000, 200_000]
    assert solid[0].get_ydata().tolist() == pytest.approx([0.3, 0.7])
    # gap: (0.1 + 0.1) / 2 = 0.1, then (0.4 + 0.6) / 2 = 0.5
    assert gap.lines[0].get_ydata().tolist() == pytest.approx([0.1, 0.5])
    study.draw_curves(rows, tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
