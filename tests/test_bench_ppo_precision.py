"""bench/ppo_precision.py: the collapse frame and the return bins by hand, the command each
run gets, and the record's round trip."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import ppo_precision as pp  # noqa: E402


def test_collapse_frame_is_the_first_step_below_the_threshold():
    points = [(4096, 2.70), (8192, 0.5), (12288, 0.09), (16384, 2.1), (20480, 0.01)]
    assert pp.collapse_frame(points, 0.1) == 12288
    assert pp.collapse_frame(points, 0.001) is None
    assert pp.collapse_frame([], 0.1) is None


def test_binned_means_by_hand():
    points = [(100, 0.0), (9_999, 10.0), (10_000, 4.0), (25_000, 6.0), (29_000, 10.0)]
    # bins [0, 10k): 0, 10 -> 5; [10k, 20k): 4; [20k, 30k): 6, 10 -> 8; the bin [30k, 40k) is
    # not whole below 35k, so it is left out
    assert pp.binned_means(points, 10_000, 35_000) == [5.0, 4.0, 8.0]
    assert pp.binned_means([(15_000, 3.0)], 10_000, 20_000) == [None, 3.0]


def test_each_run_gets_its_precision_and_minibatches_and_no_evaluation():
    argv = pp.train_argv("coinrun", "fp32", 8, 1, 60_000)
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags["--precision"] == "fp32" and flags["--seed"] == "1"
    assert flags["--total-steps"] == "60000" and int(flags["--eval-every"]) > 60_000
    assert "minibatches=8" in argv and "num_steps=256" in argv and flags["--train-levels"] == "10"


def test_record_round_trip_and_table(tmp_path):
    row = {"game": "coinrun", "precision": "bf16", "minibatches": 8, "seed": 0,
           "env_steps": 61_440, "min_entropy": 0.0004, "collapsed_at": 24_576,
           "final_entropy": 0.001, "returns_per_10k": "0.0 - 1.5"}  # fmt: skip
    other = {**row, "precision": "fp32", "collapsed_at": None, "min_entropy": 2.5}
    path = tmp_path / "r.csv"
    pp.RECORD.write(path, [row, other])
    assert pp.RECORD.read(path) == [row, other]
    text = pp.table([other, row])
    assert "| coinrun | bf16 | 8 | 0 | 61,440 | 0.000 | 24,576 | 0.001 | 0.0 - 1.5 |" in text
    assert "| fp32 | 8 | 0 | 61,440 | 2.500 | never |" in text
    assert text.index("bf16") < text.index("fp32")
