"""bench/peer_saturation.py: the saturation statistics and both forms of -log pi by hand."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import peer_saturation as ps  # noqa: E402


def test_saturation_by_hand():
    # one state, two dims: mu 0 with u 0 (the centre), mu 8 with u 10 (deep in tanh's tail)
    mean = torch.tensor([[0.0, 8.0]], dtype=torch.float64)
    log_std = torch.zeros_like(mean)  # sigma 1
    u = torch.tensor([[0.0, 10.0]], dtype=torch.float64)
    s = ps.saturation(mean, log_std, u)
    assert (s["mu_abs_mean"], s["mu_abs_above_3"], s["mu_abs_above_7"]) == (4.0, 0.5, 0.5)
    assert (s["sigma_mean"], s["u_abs_above_7"]) == (1.0, 0.5)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    gaussian = -half_log_2pi + (-2.0 - half_log_2pi)  # (u - mu)^2 / 2 = 0 and 2
    # exact: log(1 - tanh(u)^2) = 0 at u 0, 2 (log 2 - 10 - softplus(-20)) at u 10
    exact_jacobian = 2 * (math.log(2) - 10 - math.log1p(math.exp(-20)))
    assert s["neg_log_pi_exact"] == pytest.approx(-(gaussian - exact_jacobian), abs=1e-9)
    # SB3: log(1 - tanh(u)^2 + 1e-6): log(1 + 1e-6) at 0, log(sech(10)^2 + 1e-6) at 10
    sb3_jacobian = math.log1p(1e-6) + math.log(1 / math.cosh(10) ** 2 + 1e-6)
    assert s["neg_log_pi_sb3"] == pytest.approx(-(gaussian - sb3_jacobian), abs=1e-9)
    # SB3's capped Jacobian reads 4.8 nats more entropy in the tail (docs/peer-parity.md at u 10)
    assert s["neg_log_pi_sb3"] - s["neg_log_pi_exact"] == pytest.approx(4.81, abs=0.01)


def test_unsaturated_actions_leave_the_two_forms_equal():
    torch.manual_seed(0)
    mean = torch.randn(1000, 6, dtype=torch.float64)  # |mu| mostly < 3
    log_std = torch.full_like(mean, math.log(0.5))
    u = mean + 0.5 * torch.randn_like(mean)
    s = ps.saturation(mean, log_std, u)
    assert s["u_abs_above_7"] == 0.0
    assert abs(s["neg_log_pi_exact"] - s["neg_log_pi_sb3"]) < 1e-3


def test_entropy_by_sigma_peaks_near_1_and_the_forms_part_only_when_wide():
    rows = ps.entropy_by_sigma([0.3, 1.0, 3.0, 7.0], samples=50_000)
    exact = [r["neg_log_pi_exact"] for r in rows]
    assert exact[1] == max(exact)  # an entropy bonus alone takes sigma to about 1
    gaps = [r["neg_log_pi_sb3"] - r["neg_log_pi_exact"] for r in rows]
    assert abs(gaps[0]) < 1e-5 and abs(gaps[1]) < 1e-5  # no sample reaches tanh's flat tail
    assert gaps[3] > 1.0 and rows[3]["u_abs_above_7"] > 0.25  # sigma 7: a third of |u| > 7


def test_upside_down_is_a_pitch_past_90_degrees_in_any_turn():
    assert not ps.upside_down(0.0) and not ps.upside_down(1.5) and not ps.upside_down(-1.5)
    assert ps.upside_down(math.pi) and ps.upside_down(1.6) and ps.upside_down(-1.6)
    assert not ps.upside_down(2 * math.pi + 0.1) and ps.upside_down(3 * math.pi)  # whole turns


def test_replay_states_read_ours_and_sb3s_buffer_files(tmp_path):
    """The observations stored in our replay-N.pt and in SB3's pickled replay.pkl, in order."""
    import numpy as np

    from agents.buffer import ReplayBuffer

    obs = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    ours = ReplayBuffer(10, (3,), (2,), num_envs=1, seed=0)
    for t in range(5):
        ours.add(obs[t : t + 1], np.zeros((1, 2)), np.zeros(1), obs[t : t + 1] + 100,
                 np.zeros(1), np.zeros(1))  # fmt: skip
    ours.save(tmp_path / "replay-5.pt")
    assert np.array_equal(ps.replay_states(str(tmp_path / "replay-5.pt")), obs)

    buffers = pytest.importorskip("stable_baselines3.common.buffers")
    import pickle

    from gymnasium import spaces

    theirs = buffers.ReplayBuffer(10, spaces.Box(-1e3, 1e3, (3,)), spaces.Box(-1, 1, (2,)))
    for t in range(5):
        theirs.add(obs[t : t + 1], obs[t : t + 1] + 100, np.zeros((1, 2)), np.zeros(1),
                   np.zeros(1), [{}])  # fmt: skip
    (tmp_path / "replay.pkl").write_bytes(pickle.dumps(theirs))
    assert np.array_equal(ps.replay_states(str(tmp_path / "replay.pkl")), obs)
