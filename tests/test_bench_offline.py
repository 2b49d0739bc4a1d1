"""bench/offline.py's record: the CSV keeps rows across machines and sessions, the table is
drawn from every row."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_offline", REPO / "bench" / "offline.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def make_row(agent, dataset, seed, last, best, own=26.4, sampler="uniform"):
    row = dict.fromkeys(bench.CSV_FIELDS)
    row.update(agent=agent, dataset=dataset, sampler=sampler, seed=seed,
               gradient_updates=300_000, last_score=last, best_score=best,
               dataset_score=own)  # fmt: skip
    return row


def test_csv_round_trip_keeps_numbers_and_missing_values(tmp_path):
    rows = [make_row("td3_bc", "hopper-medium-v5", 0, 33.1, 55.2),
            make_row("prdc", "hopper-medium-v5", 1, 70.25, 89.5, own=None)]  # fmt: skip
    bench.RECORD.write(tmp_path / "o.csv", rows)
    back = bench.RECORD.read(tmp_path / "o.csv")
    assert back == rows
    assert bench.RECORD.read(tmp_path / "absent.csv") == []


def test_merge_replaces_same_key_keeps_old_and_appends_new():
    old = [make_row("td3_bc", "h", 0, 1.0, 2.0), make_row("prdc", "h", 0, 3.0, 4.0)]
    new = [make_row("prdc", "h", 0, 5.0, 6.0), make_row("spot", "h", 0, 7.0, 8.0),
           make_row("prdc", "h", 0, 3.0, 4.0, sampler="aw")]  # fmt: skip
    merged = bench.RECORD.merge(old, new)
    assert [(r["agent"], r["sampler"], r["last_score"]) for r in merged] == [
        ("td3_bc", "uniform", 1.0), ("prdc", "uniform", 5.0), ("spot", "uniform", 7.0),
        ("prdc", "aw", 3.0)]  # fmt: skip


def test_table_gives_mean_and_population_std_over_seeds():
    rows = [make_row("td3_bc", "h", 0, 10.0, 20.0), make_row("td3_bc", "h", 1, 30.0, 20.0)]
    line = bench.table(rows).splitlines()[2]
    # last: mean 20, pstd 10; best: 20 +- 0; own score from the rows
    assert line == "| td3_bc | h | uniform | 2 | 300,000 | 20.0 +- 10.0 | 20.0 +- 0.0 | 26.4 |"
    # the aggregates: last scores / 100 (0.1, 0.3), per agent and sampler over datasets
    assert "| td3_bc (uniform) | 2 x 1 | 0.200 [" in bench.table(rows)


def test_a_csv_of_something_else_is_refused(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit, match="not an offline-benchmark CSV"):
        bench.RECORD.read(tmp_path / "x.csv")


def test_preset_by_sampler_then_by_dataset_else_agent_defaults(tmp_path):
    (tmp_path / "configs" / "td3_bc").mkdir(parents=True)
    for name in ("mix-aw.yaml", "mix.yaml"):
        (tmp_path / "configs" / "td3_bc" / name).write_text("agent: td3_bc\n")
    assert bench.preset_of("td3_bc", "mix-v5", "aw", tmp_path).name == "mix-aw.yaml"
    assert bench.preset_of("td3_bc", "mix-v5", "uniform", tmp_path).name == "mix.yaml"
    assert bench.preset_of("prdc", "mix-v5", "aw", tmp_path) is None
    # the repository's own bar-2 presets are found for both samplers (300k updates each)
    for sampler in ("uniform", "aw"):
        preset = bench.preset_of("td3_bc", "hopper-random-expert-5-v5", sampler)
        assert preset.name == f"hopper-random-expert-5-{sampler}.yaml"
        assert "total_steps: 300000" in preset.read_text()
