"""harness/aggregates.py against hand-computed IQM, mean and optimality gap; the bootstrap's
seed, one-run configurations, missing scores, performance profiles; and bench/jobs.py's
Aggregates, which turns a bench's rows into runs x tasks arrays and the markdown section."""

import sys
from pathlib import Path

import numpy as np
import pytest

from harness import aggregates

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import jobs  # noqa: E402  (bench/jobs.py, as the bench scripts import it)

REPS = 200  # enough for the properties tested, fast
# 2 runs x 4 tasks; sorted: -0.1 0.1 | 0.2 0.4 0.5 0.7 | 0.9 1.3
SMALL = np.array([[0.1, 0.4, 0.9, 1.3], [0.2, 0.5, 0.7, -0.1]])


def spread(seed: int = 3, shape=(5, 3)) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.5, 0.3, size=shape)


def test_point_estimates_are_the_hand_computed_ones():
    result = aggregates.interval_estimates({"a": SMALL}, reps=REPS)["a"]
    assert result["iqm"][0] == pytest.approx((0.2 + 0.4 + 0.5 + 0.7) / 4)  # middle 50%
    assert result["mean"][0] == pytest.approx(4.0 / 8)
    # 1.3 counts as gamma = 1: 1 - (3.7 / 8)
    assert result["optimality_gap"][0] == pytest.approx(1 - 3.7 / 8)
    assert (result["runs"], result["tasks"], result["dropped_runs"], result["missing"]) == (
        2, 4, 0, 0)  # fmt: skip
    lower = aggregates.interval_estimates({"a": SMALL}, reps=REPS, gamma=0.5)["a"]
    assert lower["optimality_gap"][0] == pytest.approx(0.5 - (-0.1 + 0.1 + 0.2 + 0.4 + 4 * 0.5) / 8)


def test_intervals_contain_the_point_and_depend_only_on_the_seed():
    scores = {"a": spread(), "b": spread(4)}
    first = aggregates.interval_estimates(scores, reps=REPS, seed=1)
    again = aggregates.interval_estimates(scores, reps=REPS, seed=1)
    other = aggregates.interval_estimates(scores, reps=REPS, seed=2)
    assert first == again
    assert first["a"]["iqm"][1:] != other["a"]["iqm"][1:]
    for result in first.values():
        for metric in aggregates.METRICS:
            point, low, high = result[metric]
            assert low <= point <= high and low < high
    alone = aggregates.interval_estimates({"b": scores["b"]}, reps=REPS, seed=1)
    assert alone["b"] == first["b"]  # each configuration's bootstrap starts from the seed


def test_the_callers_global_random_state_is_left_as_it_was():
    np.random.seed(7)
    expected = np.random.random()
    np.random.seed(7)
    aggregates.interval_estimates({"a": spread()}, reps=REPS)
    aggregates.performance_profile({"a": spread()}, np.linspace(0, 1, 5), reps=REPS)
    assert np.random.random() == expected


def test_wider_confidence_gives_a_wider_interval():
    narrow = aggregates.interval_estimates({"a": spread()}, reps=REPS, confidence=0.5)["a"]
    wide = aggregates.interval_estimates({"a": spread()}, reps=REPS, confidence=0.99)["a"]
    assert wide["mean"][1] < narrow["mean"][1] and narrow["mean"][2] < wide["mean"][2]


def test_one_run_gives_the_point_as_its_interval_and_says_so():
    one = {"a": np.array([[0.2, 0.6, 1.0]])}
    result = aggregates.interval_estimates(one, reps=REPS)["a"]
    for metric in aggregates.METRICS:
        point, low, high = result[metric]
        assert low == pytest.approx(point) and high == pytest.approx(point)
    assert result["iqm"][0] == pytest.approx(0.6)  # a quarter of 3 scores trims none
    text = aggregates.markdown_aggregates(one, reps=REPS)
    assert "| a | 1 x 3 | 0.600 [0.600, 0.600] |" in text
    assert "one run: the interval is the point" in text


def test_runs_missing_a_score_are_left_out_and_counted():
    scores = np.array([[0.2, 0.4], [np.nan, 0.9], [0.6, 0.8], [None, None]], dtype=object)
    result = aggregates.interval_estimates({"a": scores}, reps=REPS)["a"]
    assert (result["runs"], result["tasks"], result["dropped_runs"], result["missing"]) == (
        2, 2, 2, 3)  # fmt: skip
    assert result["mean"][0] == pytest.approx(0.5)  # the complete runs only
    text = aggregates.markdown_aggregates({"a": scores}, reps=REPS)
    assert "2 runs left out (3 missing scores)" in text
    empty = {"b": np.array([[np.nan, 0.3]])}
    none = aggregates.interval_estimates(empty, reps=REPS)["b"]
    assert none["runs"] == 0 and none["iqm"] is None
    text = aggregates.markdown_aggregates(empty, reps=REPS)
    assert (
        "| b | 0 x 2 | n/a | n/a | n/a | no run has a score on every task; 1 run left out" in text
    )
    assert aggregates.performance_profile(empty, np.linspace(0, 1, 3), reps=REPS) == ({}, {})


def test_markdown_states_its_statistics_and_normalization():
    text = aggregates.markdown_aggregates({"a": SMALL}, reps=REPS, seed=5, confidence=0.9,
                                          normalization="Normalization: by hand.")  # fmt: skip
    assert "| configuration | runs x tasks | IQM [90% CI] |" in text
    assert "| a | 2 x 4 | 0.450 [" in text
    assert "Normalization: by hand." in text
    assert f"{REPS} reps, seed 5" in text and "gamma = 1" in text


def test_performance_profile_falls_with_tau_inside_its_band():
    taus = np.linspace(-0.5, 1.5, 41)
    profiles, bands = aggregates.performance_profile({"a": spread(), "b": SMALL}, taus, REPS)
    for name, profile in profiles.items():
        assert profile.shape == taus.shape and bands[name].shape == (2, len(taus))
        assert np.all(np.diff(profile) <= 0)
        assert np.all(bands[name][0] <= profile + 1e-12)
        assert np.all(profile <= bands[name][1] + 1e-12)
    # SMALL: 8 scores, 3 of them above 0.6 (0.7, 0.9, 1.3)
    assert profiles["b"][np.searchsorted(taus, 0.6)] == pytest.approx(3 / 8)
    assert profiles["b"][0] == 1.0 and profiles["b"][-1] == 0.0


def test_profiles_plot_to_a_png(tmp_path):
    taus = np.linspace(0, 1, 11)
    panel = aggregates.performance_profile({"a": spread(), "b": SMALL}, taus, REPS)
    aggregates.plot_performance_profiles(tmp_path / "p.png", taus, {"held out": panel}, "t")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


# ---- bench/jobs.py: a bench's rows -> runs x tasks -> the section ----------------------------
def rows_of(table: dict) -> list[dict]:
    """{(configuration, task, seed): score} -> rows as a bench's record holds them."""
    return [{"config": c, "task": t, "seed": s, "score": v} for (c, t, s), v in table.items()]


SPEC = jobs.Aggregates(
    configuration=lambda r: r["config"],
    task=lambda r: r["task"],
    measures={"final score": lambda r: r["score"]},
    normalization="Normalization: already normalized.",
    reps=REPS,
)
TWO_BY_TWO = {
    # A: x (0.2, 0.4), y (0.6, 0.8): IQM 0.5, mean 0.5, gap 0.5
    ("A", "x", 0): 0.2, ("A", "x", 1): 0.4, ("A", "y", 0): 0.6, ("A", "y", 1): 0.8,
    # B: x (1.2, 1.0), y (0.0, 0.4): IQM of 0, 0.4, 1.0, 1.2 = 0.7; mean 0.65; gap
    # 1 - (0 + 0.4 + 1 + 1) / 4 = 0.4
    ("B", "x", 0): 1.2, ("B", "x", 1): 1.0, ("B", "y", 0): 0.0, ("B", "y", 1): 0.4,
}  # fmt: skip


def test_rows_become_seeds_x_tasks_arrays_per_configuration():
    rows = rows_of({**TWO_BY_TWO, ("C", "x", 0): 0.5, ("C", "y", 1): None})
    arrays = SPEC.scores(rows, "final score")
    assert list(arrays) == ["A", "B", "C"]
    np.testing.assert_array_equal(arrays["A"], [[0.2, 0.6], [0.4, 0.8]])  # seeds x tasks
    np.testing.assert_array_equal(arrays["C"], [[0.5, np.nan], [np.nan, np.nan]])
    assert SPEC.tasks(rows) == {"A": ["x", "y"], "B": ["x", "y"], "C": ["x", "y"]}


def test_the_bench_section_has_the_hand_computed_numbers():
    text = SPEC.markdown(rows_of(TWO_BY_TWO))
    lines = text.splitlines()
    assert "## Aggregates" in lines and "### final score" in lines
    assert "Tasks: x, y (every configuration)." in text
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in lines if line.startswith(("| A |", "| B |"))}  # fmt: skip
    assert cells["A"][1] == cells["B"][1] == "2 x 2"
    # IQM, mean, optimality gap: the points before their intervals
    assert [c.split(" [")[0] for c in cells["A"][2:5]] == ["0.500", "0.500", "0.500"]
    assert [c.split(" [")[0] for c in cells["B"][2:5]] == ["0.700", "0.650", "0.400"]
    assert "Normalization: already normalized." in text
    assert SPEC.markdown(rows_of(TWO_BY_TWO)) == text  # the seeded bootstrap: the same text


def test_the_bench_section_with_different_tasks_and_a_missing_run():
    rows = rows_of({("A", "x", 0): 0.2, ("A", "x", 1): 0.4, ("A", "y", 0): 0.6,
                    ("B", "x", 0): 0.3})  # fmt: skip
    text = SPEC.markdown(rows)
    assert "Tasks (aggregates over different tasks do not compare directly): A: x, y; B: x." in (
        text
    )
    assert "| A | 1 x 2 | 0.400 [0.400, 0.400] |" in text  # seed 1 has no score on y
    assert "1 run left out (1 missing score)" in text
    assert "| B | 1 x 1 | 0.300 [0.300, 0.300] |" in text


def test_the_bench_profiles_are_drawn_only_for_several_configurations(tmp_path):
    assert SPEC.plot(rows_of(TWO_BY_TWO), tmp_path / "p.png")
    assert (tmp_path / "p.png").is_file()
    one = rows_of({k: v for k, v in TWO_BY_TWO.items() if k[0] == "A"})
    assert not SPEC.plot(one, tmp_path / "q.png") and not (tmp_path / "q.png").exists()


def test_d4rl_fraction_is_0_at_random_and_1_at_expert():
    from envs.datasets.scores import D4RL_REF_SCORES

    random, expert = D4RL_REF_SCORES["hopper"]
    assert jobs.d4rl_fraction(random, "hopper") == pytest.approx(0.0)
    assert jobs.d4rl_fraction(expert, "Hopper-v5") == pytest.approx(1.0)
    assert jobs.d4rl_fraction(None, "hopper") is None
    assert jobs.env_task("configs/revalued/walker2d-cpu-decqn.yaml (a note)") == "walker2d"
    assert jobs.preset_name("configs/td3/hopper-bias.yaml (a note)") == "td3/hopper-bias (a note)"
