"""bench/peer_learning.py's record and table from hand-made runs, and our side's arguments."""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("peer_learning", REPO / "bench" / "peer_learning.py")
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench
spec.loader.exec_module(bench)


def summary(returns, every=10_000, wall=60.0):
    evals = [{"env_steps": every * (i + 1), "return_mean": r} for i, r in enumerate(returns)]
    return {"env_steps": evals[-1]["env_steps"], "evals": evals, "wall_time_s": wall}


def test_row_holds_final_best_and_the_curve():
    r = bench.row(summary([100.0, 900.0, 500.0]), "sb3", "tqc", 3)
    assert (r["side"], r["algo"], r["seed"], r["env_steps"]) == ("sb3", "tqc", 3, 30_000)
    assert (r["final_return"], r["best_return"], r["wall_time_s"]) == (500.0, 900.0, 60.0)
    assert [r[f"return_at_{s}"] for s in (10_000, 20_000, 30_000)] == [100.0, 900.0, 500.0]


def test_row_keeps_the_temperature_at_each_evaluation(tmp_path):
    # train.py's logged alpha: each evaluation takes the last value logged at or before it.
    logged = [(5_000, 0.9), (10_000, 0.5), (15_000, 0.3), (25_000, 0.2)]
    r = bench.row(summary([1.0, 2.0, 3.0]), "ours", "tqc", 0, logged)
    assert [r[f"alpha_at_{s}"] for s in (10_000, 20_000, 30_000)] == [0.5, 0.3, 0.2]
    # --sb3-run's evaluations carry their own; a run without either leaves the columns empty.
    theirs = summary([1.0, 2.0])
    for e, alpha in zip(theirs["evals"], (0.7, 0.06), strict=True):
        e["alpha"] = alpha
    mine = bench.row(theirs, "sb3", "tqc", 0)
    old = bench.row(summary([4.0, 5.0]), "ours", "tqc", 1)
    assert (mine["alpha_at_10000"], mine["alpha_at_20000"]) == (0.7, 0.06)
    assert old["alpha_at_20000"] is None
    rec = bench.record(bench.eval_steps([mine, old]))
    rec.write(tmp_path / "p.csv", [mine, old])
    assert rec.read(tmp_path / "p.csv") == [mine, old]
    text = bench.table([mine, old], "cmd")
    alphas = text.split("temperature alpha")[1].split("## Against SB3")[0]
    assert "| tqc | sb3 | 0 | 0.7000 | 0.0600 |" in alphas
    assert "| tqc | ours | 1 |" not in alphas  # runs without a temperature are left out


def test_csv_round_trip_merge_and_new_columns(tmp_path):
    path = tmp_path / "peer.csv"
    old = [bench.row(summary([1.0, 2.0]), "ours", "tqc", 0),
           bench.row(summary([3.0, 4.0]), "sb3", "tqc", 0)]  # fmt: skip
    rec = bench.record(bench.eval_steps(old))
    rec.write(path, old)
    assert bench.csv_steps(path) == [10_000, 20_000]
    assert rec.read(path) == old
    # A longer rerun of one run replaces its row and adds a column; the other row keeps its own.
    new = [bench.row(summary([5.0, 6.0, 7.0]), "ours", "tqc", 0)]
    rec = bench.record(bench.csv_steps(path) + bench.eval_steps(new))
    rows = rec.merge(rec.read(path), new)
    rec.write(path, rows)
    back = rec.read(path)
    assert [(r["side"], r["final_return"]) for r in back] == [("ours", 7.0), ("sb3", 4.0)]
    assert back[1]["return_at_30000"] is None and back[0]["return_at_30000"] == 7.0


def test_table_gives_mean_std_over_seeds_and_each_curve():
    rows = [bench.row(summary([10.0, 30.0]), "ours", "tqc", 0),
            bench.row(summary([20.0, 10.0]), "ours", "tqc", 1),
            bench.row(summary([40.0, 50.0]), "sb3", "tqc", 0),
            bench.row(summary([5.0]), "sb3", "sac", 0)]  # fmt: skip
    text = bench.table(rows, "python bench/peer_learning.py --seeds 0 1")
    lines = text.splitlines()
    assert "    python bench/peer_learning.py --seeds 0 1" in lines
    # final 30 and 10 -> 20 +- 10; best 30 and 20 -> 25 +- 5
    assert "| tqc | ours | 0, 1 | 20,000 | 20.0 +- 10.0 | 25.0 +- 5.0 |" in lines
    assert "| tqc | sb3 | 0 | 20,000 | 50.0 +- 0.0 | 50.0 +- 0.0 |" in lines
    assert "| sac | sb3 | 0 | 10,000 | 5.0 +- 0.0 | 5.0 +- 0.0 |" in lines
    assert "| algo | side | seed | 10,000 | 20,000 |" in lines
    assert "| tqc | ours | 1 | 20.0 | 10.0 |" in lines
    assert "| tqc | ours | mean | 15.0 | 20.0 |" in lines  # (10 + 20) / 2, (30 + 10) / 2
    assert not any(x.startswith("| tqc | sb3 | mean |") for x in lines)  # one seed: no mean row
    assert "| sac | sb3 | 0 | 5.0 |  |" in lines  # a shorter run leaves its later cells empty
    # TQC's rows come before SAC's
    assert lines.index("| tqc | sb3 | 0 | 40.0 | 50.0 |") < lines.index(
        "| sac | sb3 | 0 | 5.0 |  |"
    )
    # the aggregates: finals 30 and 10 as D4RL HalfCheetah scores (x + 280.18) / 12415.18
    assert any(x.startswith("| tqc ours | 2 x 1 | 0.024 [") for x in lines)
    assert any(x.startswith("| sac sb3 | 1 x 1 | 0.023 [") for x in lines)


def test_difference_of_means_and_its_bootstrap_interval():
    # ours 1, 3 (mean 2), theirs 4, 6 (mean 5): -3; every draw lies in [1 - 6, 3 - 4]
    diff, low, high = bench.difference([1.0, 3.0], [4.0, 6.0], reps=2000)
    assert diff == -3.0 and -5.0 <= low < -3.0 < high <= -1.0
    assert bench.difference([2.0, 2.0], [2.0], reps=100) == (0.0, 0.0, 0.0)  # no spread


def test_exact_permutation_p_by_hand():
    # 1, 2, 3 vs 4, 5, 6: of the 20 splits only this one and its mirror are 3 apart
    assert bench.permutation_p([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == 2 / 20
    # 1, 4 vs 2, 3: difference 0, every split is at least as far
    assert bench.permutation_p([1.0, 4.0], [2.0, 3.0]) == 1.0
    # 0, 10 vs 1: the 3 splits give |5 - 1| = 4, |5.5 - 0| = 5.5, |0.5 - 10| = 9.5 -> 3 of 3
    assert bench.permutation_p([0.0, 10.0], [1.0]) == 1.0
    # 0, 1 vs 10: 9.5 observed; the others 4 and 5.5 -> 1 of 3
    assert bench.permutation_p([0.0, 1.0], [10.0]) == 1 / 3


def test_comparison_gives_both_measures_and_the_stuck_runs():
    rows = [bench.row(summary([1.0, 10.0, 20.0, 30.0]), "ours", "tqc", 0),
            bench.row(summary([1.0, 2.0, 2.0, 2.0]), "ours", "tqc", 1),
            bench.row(summary([1.0, 30.0, 40.0, 50.0]), "sb3", "tqc", 0),
            bench.row(summary([1.0, 40.0, 50.0, 60.0]), "ours-eps", "tqc", 0),
            bench.row(summary([5.0]), "sb3", "sac", 0)]  # fmt: skip
    lines = bench.comparison(rows, bench.eval_steps(rows))
    # finals: ours 30, 2 (mean 16), sb3 50; median of all three 30 -> stuck below 15: ours seed 1
    final = next(x for x in lines if x.startswith("| tqc | ours | final eval return |"))
    assert final.startswith("| tqc | ours | final eval return | 16.0 (2) | 50.0 (1) | -34.0 [")
    assert final.endswith("| 1 of 2, 0 of 1 |")
    # the last 3 evaluations: ours 20 and 2 (mean 11), sb3 40
    last = "| tqc | ours | mean of the last 3 evaluations | 11.0 (2) | 40.0 (1) | -29.0 ["
    assert any(x.startswith(last) for x in lines)
    # every evaluation (the area under the curve): ours 15.25 and 1.75 (mean 8.5), sb3 30.25
    every = "| tqc | ours | mean of every evaluation | 8.5 (2) | 30.2 (1) | -21.8 ["
    assert any(x.startswith(every) for x in lines)
    # an ablation side gets its own rows: 60 against 50; median of 60, 50 is 55, none below 27.5
    ablation = "| tqc | ours-eps | final eval return | 60.0 (1) | 50.0 (1) | +10.0 [+10.0, +10.0] |"
    assert ablation + " 1 | 0 of 1, 0 of 1 |" in lines  # 1 vs 1: both splits as far, p = 1
    assert not any(x.startswith("| sac |") for x in lines)  # only SB3 ran SAC: nothing to compare
    assert bench.comparison(rows[:2], bench.eval_steps(rows)) == []


def test_the_aggregates_env_is_the_one_both_sides_run():
    import peer_update_check as check

    assert bench.ENV == check.ENV


def test_our_side_takes_sb3s_warmup_and_the_bench_schedule():
    tqc = bench.our_args("tqc", 2, 2000, 1000, 10, ["--set", "x=1"])
    assert tqc[:2] == ["--config", "configs/tqc/halfcheetah-cpu.yaml"]
    assert "random_steps=256" in tqc and tqc[-2:] == ["--set", "x=1"]
    for flag, value in (("--seed", "2"), ("--total-steps", "2000"), ("--eval-every", "1000"),
                        ("--eval-episodes", "10")):  # fmt: skip
        assert tqc[tqc.index(flag) + 1] == value
    sac = bench.our_args("sac", 0, 2000, 1000, 10, [])
    assert sac[:6] == ["--agent", "sac", "--arch", "mlp", "--env", "HalfCheetah-v5"]
    assert not any(a.startswith("random_steps") for a in sac)  # SAC's warm-up is random already


def test_the_hybrid_trains_with_our_update_and_acts_with_our_weights():
    """SB3's loop around our TQC update: every gradient step is one of our agent's updates,
    and SB3's networks hold our weights after each (so SB3 acts with them)."""

    pytest.importorskip("sb3_contrib")
    pytest.importorskip("mujoco")
    import peer_update_check as check
    import torch
    from stable_baselines3.common.logger import Logger

    from agents import get_agent_module
    from envs import make_env

    torch.manual_seed(0)
    _, cfg = check.our_config("tqc")
    env = make_env(check.ENV)
    agent = get_agent_module("tqc").Agent(cfg, env.observation_space, env.action_space, "cpu")
    kwargs = {**check.sb3_kwargs("tqc", cfg, 6, 0), "buffer_size": 500, "learning_starts": 100}
    model = bench.hybrid_class("tqc", agent)("MlpPolicy", env, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))
    check.copy_weights(agent, model)
    before = [p.clone() for p in model.critic.parameters()]
    sb3_steps = model.critic.optimizer.state_dict()["state"]
    model.learn(130)
    # SB3 trains once per step after learning_starts: steps 101..130 -> 30 of our updates
    assert agent.updates == 30 and model._n_updates == 30
    assert model.critic.optimizer.state_dict()["state"] == sb3_steps  # SB3's Adam never stepped
    diffs = check.parameter_diffs(agent, model)
    assert max(diffs.values()) == 0.0  # SB3's networks hold our weights, target and alpha
    assert any((p != q).any() for p, q in zip(before, model.critic.parameters(), strict=True))


def test_the_reverse_takes_sb3s_update_and_keeps_our_agent_in_step(tmp_path):
    """Our loop around SB3's TQC update: one update of the reverse agent is exactly a plain
    sb3-contrib update from the same weights, batch and RNG state; our Adam never steps; a
    checkpoint round trip carries SB3's optimizer state, so the next update agrees too."""

    pytest.importorskip("sb3_contrib")
    pytest.importorskip("mujoco")
    import peer_update_check as check
    import torch
    from stable_baselines3.common.logger import Logger

    from envs import make_env

    _, cfg = check.our_config("tqc")
    env = make_env(check.ENV)
    torch.manual_seed(0)
    agent = bench.reverse_class("tqc")(cfg, env.observation_space, env.action_space, "cpu")
    plain = check.sb3_class("tqc")("MlpPolicy", env, **check.sb3_kwargs("tqc", cfg, 6, 1))
    plain.set_logger(Logger(folder=None, output_formats=[]))
    check.copy_weights(agent, plain)
    data = check.transitions(300)

    def both_update(reverse, k):
        batch = check.make_batch(data, cfg.batch_size, cfg.gamma, seed=k)
        plain.replay_buffer.sample = lambda *args, **kwargs: check.sb3_samples(batch)
        torch.manual_seed(100 + k)
        metrics = reverse.update(batch)
        torch.manual_seed(100 + k)
        plain.train(gradient_steps=1, batch_size=cfg.batch_size)
        return metrics

    before = agent.critic.layers[0].weight.clone()
    metrics = both_update(agent, 0)
    assert agent.updates == 1 and float(metrics["policy/alpha"]) < 1.0  # alpha stepped
    assert not agent.critic.layers[0].weight.equal(before)  # SB3's step came back into ours
    assert max(check.parameter_diffs(agent, plain).values()) == 0.0
    assert agent.critic_opt.state_dict()["state"] == {}  # our optimizers never stepped
    torch.save(agent.state_dict(), tmp_path / "agent.pt")
    torch.manual_seed(5)  # a fresh agent with other weights, then the checkpoint
    again = bench.reverse_class("tqc")(cfg, env.observation_space, env.action_space, "cpu")
    again.load_state_dict(torch.load(tmp_path / "agent.pt", weights_only=True))
    both_update(again, 1)
    assert max(check.parameter_diffs(again, plain).values()) == 0.0


@pytest.mark.parametrize("algo", ["tqc", "sac"])
def test_our_loop_and_sb3s_loop_store_and_learn_the_same_with_shared_draws(algo):
    """bench/peer_loop_check.py: with the warm-up actions, the acting noise and the replay
    draws shared, train.py's loop and SB3's loop around our update store the same transitions
    (both cast to float32, as each buffer stores them) and end with the same weights after 44
    updates. SAC (warm-up shortened to TQC's 256 steps to keep the test short) acts at random
    for exactly its learning_starts steps on both sides, though the check starts our updates
    one transition later, as SB3's."""
    pytest.importorskip("sb3_contrib")
    pytest.importorskip("mujoco")
    import copy

    import numpy as np
    import peer_loop_check as loop
    import peer_update_check as check

    overrides = ["--set", "learning_starts=256"] if algo == "sac" else None
    _, cfg = check.our_config(algo, extra=overrides)
    assert cfg.learning_starts == 256
    init = copy.deepcopy(loop.initial_agent(algo, cfg, 0).state_dict())
    warmup = np.random.default_rng(0).uniform(-1, 1, (257, 6)).astype(np.float32)
    ours = loop.run_ours(algo, 0, 300, warmup, init, overrides=overrides)
    theirs = loop.run_sb3_loop(algo, 0, 300, warmup, init, overrides=overrides)
    assert ours["agent"].updates == theirs["agent"].updates == 300 - 256
    diffs = loop.transition_diffs(ours, theirs, 300)
    assert max(diffs) == 0.0
    assert loop.weight_diff(ours["agent"], theirs["agent"]) == 0.0
    assert loop.weight_diff(ours["agent"], loop.initial_agent(algo, cfg, 0)) > 0  # it learned
