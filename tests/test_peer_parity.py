"""Our SAC and TQC updates against Stable-Baselines3's (bench/peer_update_check.py): with the
same weights, batch and noise, the pieces that must match do, to float tolerance; skipped
where SB3, sb3-contrib or MuJoCo is not installed."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")
pytest.importorskip("mujoco")

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "peer_update_check", REPO / "bench" / "peer_update_check.py"
)
check = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = check  # its dataclass looks its module up
spec.loader.exec_module(check)


ACTION_ULPS = 8 * torch.finfo(torch.float32).eps  # actions lie in [-1, 1]


@pytest.fixture(scope="module")
def data():
    return check.transitions()


def update_diffs(algo, data, extra=check.SB3_LOG_PROB, **kwargs):
    torch.set_num_threads(1)
    agent, model, cfg = check.build_pair(algo, extra=extra)
    batch = check.make_batch(data, cfg.batch_size, cfg.gamma, seed=0)
    assert batch.terminated.sum() >= 16 and batch.truncated[-1] == 1  # both masks exercised
    return check.one_update(algo, agent, model, cfg, batch, seed=0, **kwargs)


@pytest.mark.parametrize("algo", ["tqc", "sac"])
def test_one_update_matches_sb3_with_its_log_prob_form(algo, data):
    result = update_diffs(algo, data)
    d = {k.split(" (")[0]: v for k, v in result["diffs"].items()}
    # The same noise gives the same actions; SB3's log pi differs from ours only in rounding.
    # Actions: bit for bit on an AVX-512 CPU, a few float32 ulps apart on an AVX2 one (the two
    # actors' matmuls take different MKL kernels there).
    assert d["a ~ pi(s)"] < ACTION_ULPS and d["a' ~ pi(s')"] < ACTION_ULPS
    # log pi carries the actions' ulps through log(1 - tanh(u)^2), steep near |a| = 1: 3.6e-5
    # on the AVX2 CPU (under 1e-5 on the AVX-512 one); the other form of log pi differs by 1e-2.
    assert d["log pi(a|s)"] < 1e-4 and d["log pi(a'|s')"] < 1e-4
    q = "atoms" if algo == "tqc" else "Q"
    assert d[f"target critics' {q} at"] < 1e-5 and d[f"critics' {q} at"] < 1e-5
    assert d["target"] < 1e-5
    assert d["critic loss"] < 1e-4 and d["actor loss"] < 1e-4 and d["temperature loss"] < 1e-6
    assert d["critic gradients"] < 1e-5 and d["actor gradients"] < 1e-5
    assert d["log alpha gradient"] < 1e-6
    # Both use alpha from before the temperature step, in the target and in the actor loss;
    # the rebuilt target tells the two alphas apart.
    assert d["alpha in target and actor loss"] == 0
    assert d["SB3 target rebuilt with alpha before the temperature step"] < 1e-5
    assert d["SB3 target rebuilt with alpha after the temperature step"] > 1e-4
    assert d["actor weights after the update"] < 1e-5
    assert d["critic_target weights after the update"] < 1e-5
    assert d["log alpha after the update"] < 1e-7
    # SAC's halved critic loss only meets Adam's eps: a few 1e-5 at most.
    assert d["critic weights after the update"] < (1e-5 if algo == "tqc" else 2e-4)
    order = result["order"]
    assert [e for e in order["ours"] if e.endswith("step")] == [
        "critic step", "actor step", "temperature step"
    ]  # fmt: skip
    assert order["sb3"] == ["temperature step", "critic step", "actor step"]
    # Our alpha reads for the target and the actor loss both come before the temperature step.
    assert order["ours"].index("temperature step") > 2


def test_sac_critic_weights_match_once_sb3s_loss_is_doubled(data):
    d = update_diffs("sac", data, sb3_loss_scale=2.0)["diffs"]
    assert d["critic weights after the update"] < 1e-5


def test_as_is_only_log_pi_differs_and_ours_is_the_exact_density(data):
    d = update_diffs("tqc", data, extra=None)["diffs"]
    assert d["a ~ pi(s)"] < ACTION_ULPS and d["critics' atoms at (s, a)"] < 1e-5
    assert d["log pi(a'|s')"] > 1e-4  # SB3's + 1e-6 inside the log
    for row in check.log_prob_table():
        assert abs(row["ours"]) < 1e-3, row
    errors = {row["u"]: row["sb3"] for row in check.log_prob_table()}
    assert abs(errors[2.0]) < 1e-4 and errors[7.0] < -0.2 and errors[10.0] < -4.0


@pytest.mark.parametrize("algo", ["tqc", "sac"])
def test_acting_optimizers_and_initialisation_match(algo):
    torch.set_num_threads(1)
    acts = check.acting(algo)
    assert acts["evaluation action (deterministic)"] < 1e-6
    assert acts["exploration action (same noise)"] < 1e-6
    assert acts["log sigma beyond the bounds (clamped)"] == 0
    assert acts["log sigma range (ours)"] == (-20.0, 2.0)
    for name, sides in check.optimizer_settings(algo).items():
        ours, theirs = sides["ours"], sides["sb3"]
        for key in ("lr", "betas", "eps", "weight_decay", "amsgrad"):
            assert ours[key] == theirs[key], (name, key)
    init = check.initialisation(algo)
    # U(-b, b), b = 1/sqrt(fan_in), has std b/sqrt(3): std sqrt(3 fan_in) is 1 up to sampling.
    # The sample std of n such draws is off by sqrt((kurtosis - 1) / 4n) = sqrt(0.2 / n)
    # relative (kurtosis 9/5); we allow 4 of those. Every tensor is within the bound of its
    # smallest one, an actor output bias (act_dim entries: SB3's mean and log std heads), and
    # the largest, a hidden h x h weight, alone keeps the maximum near 1 (a shrunk init fails).
    _, cfg = check.our_config(algo)
    act_dim = check.make_env(check.ENV).action_space.shape[0]
    widest = max(a * b for a, b in zip(cfg.actor_hidden, cfg.actor_hidden[1:]))
    loose, tight = 4 * math.sqrt(0.2 / act_dim), 4 * math.sqrt(0.2 / widest)
    for side in ("ours", "sb3"):
        assert init[side]["max |w| sqrt(fan_in)"] <= 1.0 + 1e-6
        low, high = init[side]["std sqrt(3 fan_in)"]
        assert 1 - loose <= low and 1 - tight <= high <= 1 + loose, (side, low, high)


def test_warmup_random_actions_then_one_update_per_step():
    small = ["--set", "critic_hidden=[32,32]", "--set", "actor_hidden=[32,32]"]
    sched = check.warmup_schedule("tqc", 300, [*small, "--set", "random_steps=256"])
    ours, theirs = sched["ours"], sched["sb3"]
    assert ours["random-action steps"] == theirs["random-action steps"] == 256
    assert ours["first policy action at step"] == theirs["first policy action at step"] == 256
    # Ours updates once 256 transitions are stored, SB3 once more than learning_starts are.
    assert (ours["first update after transitions"], theirs["first update after transitions"]) == (
        256, 257
    )  # fmt: skip
    assert ours["updates"] == theirs["updates"] + 1 == 300 - 256 + 1


def test_time_limit_truncation_bootstraps_on_both_sides():
    t = check.time_limits()
    assert t["observations"] == t["next observations (incl. the final one)"] == 0
    assert t["rewards"] == 0
    assert t["ours: last step truncated / terminated"] == (1.0, 0.0)
    assert t["SB3: last step done / timeout / bootstrap mask done"] == (1.0, 1.0, 0.0)
