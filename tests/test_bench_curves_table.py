"""bench/curves_table.py: runs' TensorBoard curves as window means, on hand-written events."""

from __future__ import annotations

import pytest

from bench import curves_table


def write_events(run, points: dict[str, list[tuple[int, float]]]) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run))
    for tag, pairs in points.items():
        for step, value in pairs:
            writer.add_scalar(tag, value, step)
    writer.close()


def test_window_means_counts_and_gaps(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write_events(a, {"len": [(0, 1.0), (10, 2.0), (20, 3.0), (39, 5.0)], "ret": [(5, 8.0)]})
    write_events(b, {"len": [(45, 4.0)]})
    argv = [str(a), str(b), "--tags", "len", "ret", "--every", "20", "--count"]
    assert curves_table.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| steps | a len | a ret | a n | b len | b ret | b n |"
    # [0, 20): a's len 1, 2 -> 1.5; [20, 40): 3, 5 -> 4; [40, 60): only b's 45 (the last step
    # logged, 45, ends the default range)
    assert lines[2:] == [
        "| 0-20 | 1.5 | 8 | 2 | - | - | 0 |",
        "| 20-40 | 4 | - | 2 | - | - | 0 |",
        "| 40-60 | - | - | 0 | 4 | - | 1 |",
    ]
    assert curves_table.main([*argv, "--start", "20", "--end", "40"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == ["| 20-40 | 4 | - | 2 | - | - | 0 |"]


def test_outcomes_split_the_episodes_by_how_they_ended(tmp_path, capsys):
    run = tmp_path / "a"
    returns = [(10, 10.0), (20, 0.0), (30, 0.0), (45, 10.0)]  # coin, stood, died | coin
    lengths = [(10, 50.0), (20, 1000.0), (30, 40.0), (45, 60.0)]
    write_events(run, {"train/episode_return": returns, "train/episode_length": lengths})
    argv = [str(run), "--tags", "train/episode_return", "--every", "40", "--outcomes", "1000"]
    assert curves_table.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("| a return > 0 / timeout / other |")
    assert lines[2:] == [
        "| 0-40 | 3.33 | 0.33 / 0.33 / 0.33 |",  # mean return (10 + 0 + 0) / 3
        "| 40-80 | 10 | 1.00 / 0.00 / 0.00 |",
    ]
    write_events(tmp_path / "b", {"train/episode_return": returns,
                                  "train/episode_length": lengths[:3]})  # fmt: skip
    with pytest.raises(SystemExit, match="do not pair up"):
        curves_table.main([str(tmp_path / "b"), "--outcomes", "1000"])


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--every", "0"], "--every must be > 0"),
        (["--start", "50", "--end", "40"], "is not past --start 50"),
        (["MISSING"], "holds no TensorBoard events"),
        (["--outcomes", "0"], "--outcomes takes the episode timeout (> 0)"),
    ],
)
def test_bad_input_is_one_line(tmp_path, extra, needle):
    write_events(tmp_path / "a", {"len": [(0, 1.0)]})
    extra = [str(tmp_path / "missing") if x == "MISSING" else x for x in extra]
    with pytest.raises(SystemExit) as exit_info:
        curves_table.main([str(tmp_path / "a"), *extra, "--tags", "len"])
    message = str(exit_info.value.code)
    assert needle in message and "\n" not in message
