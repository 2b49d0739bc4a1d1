"""bench/ppo_speed.py's arithmetic: medians, the ratio to the plain variant, the acting /
updating split, the alternating order, and the update timer."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_ppo_speed", REPO / "bench" / "ppo_speed.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def rec(frames, acting, update):
    seconds = acting + update
    return {"frames": frames, "seconds": seconds, "acting_s": acting, "update_s": update,
            "fps": frames / seconds}  # fmt: skip


def test_summary_medians_ratio_and_split():
    records = {
        "ours": [rec(1000, 1.0, 1.0), rec(1000, 1.0, 3.0), rec(1000, 2.0, 2.0)],  # 500/250/250
        "plain": [rec(1000, 1.0, 9.0), rec(1000, 2.0, 3.0), rec(1000, 1.0, 4.0)],  # 100/200/200
    }
    s = bench.summarize(records)
    assert s["plain"]["median_fps"] == pytest.approx(200.0)
    assert s["ours"]["median_fps"] == pytest.approx(250.0)
    assert s["ours"]["ratio"] == pytest.approx(1.25)
    assert s["plain"]["ratio"] == pytest.approx(1.0)
    assert (s["ours"]["min_fps"], s["ours"]["max_fps"]) == pytest.approx((250.0, 500.0))
    # medians of the parts: ours acting 1.0, update 2.0; plain acting 1.0, update 4.0
    assert s["ours"]["acting_s"] == 1.0 and s["ours"]["update_s"] == 2.0
    assert s["ours"]["update_share"] == pytest.approx(2 / 3)
    assert s["plain"]["update_share"] == pytest.approx(0.8)


def test_rounds_alternate_which_variant_goes_first():
    names = ["ours", "plain"]
    assert [bench.round_order(i, names) for i in range(3)] == [
        ["ours", "plain"], ["plain", "ours"], ["ours", "plain"]]  # fmt: skip


def test_timed_update_returns_metrics_and_accumulates_time(monkeypatch):
    # A fake clock: an update of batch b takes b seconds, a sync 0.25 s, and time outside the
    # timer (100 s between calls) is not counted: (3 + 0.25) + (4 + 0.25) = 7.5 s.
    now = [1000.0]
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def update(batch):
        now[0] += batch
        return {"loss": batch}

    def sync():
        synced.append(1)
        now[0] += 0.25

    synced = []
    timer = bench.TimedUpdate(update, sync)
    assert timer(3) == {"loss": 3}
    now[0] += 100.0
    assert timer(4) == {"loss": 4}
    assert len(synced) == 2 and timer.seconds == 7.5


def test_variants_are_ours_bf16_channels_last_and_plain_fp32_channels_first():
    assert bench.VARIANTS == {"ours": (True, "bf16"), "plain": (False, "fp32")}
    assert bench.BASE == "plain"
