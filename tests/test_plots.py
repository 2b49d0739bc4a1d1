"""harness/plots.py: grouping by configuration, seed statistics, files written."""

from __future__ import annotations

import json

import yaml

from harness import plots


def fake_run(root, name, seed, n_critics, biases, returns, agent="td3", **agent_config):
    run = root / name
    run.mkdir()
    config = {"agent": agent, "env": "Hopper-v5", "seed": seed, "total_steps": 20000,
              "agent_config": {"n_critics": n_critics, "gamma": 0.99, **agent_config}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    steps = [10000, 20000]
    summary = {
        "bias": [
            {
                "env_steps": s,
                "bias_normalized_mean": b,
                "bias_mean": 10 * b,
                "q_mean": 100 + 10 * b,
                "mc_return_mean": 100.0,
            }  # fmt: skip
            for s, b in zip(steps, biases)
        ],
        "evals": [{"env_steps": s, "return_mean": r} for s, r in zip(steps, returns)],
    }
    (run / "summary.json").write_text(json.dumps(summary))
    return str(run)


def test_groups_seeds_labels_by_differing_setting_and_writes_files(tmp_path):
    runs = [
        fake_run(tmp_path, "twin0", 0, 2, [0.1, 0.05], [500, 900]),
        fake_run(tmp_path, "twin1", 1, 2, [0.2, 0.15], [400, 1100]),
        fake_run(tmp_path, "single0", 0, 1, [0.3, 0.4], [300, 700]),
    ]
    groups = plots.group_runs([plots.load_run(tmp_path / n) for n in ("twin0", "twin1", "single0")])
    assert {k: len(v) for k, v in groups.items()} == {"td3 n_critics=2": 2, "td3 n_critics=1": 1}
    out, table = tmp_path / "fig" / "bias.png", tmp_path / "bias.md"
    argv = [*runs, "--out", str(out), "--table", str(table), "--tb-dir", str(tmp_path / "tb")]
    assert plots.main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((tmp_path / "tb").iterdir())
    rows = {line.split(" | ")[0].strip("| "): line for line in table.read_text().splitlines()[2:]}
    # twin, last point: normalized 0.05 and 0.15 -> mean 0.100, std 0.050; returns 900, 1100.
    assert (
        "+0.100 +- 0.050" in rows["td3 n_critics=2"]
        and "1000.0 +- 100.0" in rows["td3 n_critics=2"]
    )
    assert "+0.400 +- 0.000" in rows["td3 n_critics=1"]


def test_unreadable_run_is_a_one_line_error(tmp_path, capsys):
    assert plots.main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_labels_name_only_what_varies_within_each_agent(tmp_path):
    names = ["td3a", "td3b", "tqc0", "tqc5"]
    fake_run(tmp_path, "td3a", 0, 2, [0.1, 0.1], [1, 1], policy_noise=0.2)
    fake_run(tmp_path, "td3b", 0, 1, [0.1, 0.1], [1, 1], policy_noise=0.2)
    fake_run(tmp_path, "tqc0", 0, 2, [0.1, 0.1], [1, 1], agent="tqc", drop_per_net=0)
    fake_run(tmp_path, "tqc5", 0, 2, [0.1, 0.1], [1, 1], agent="tqc", drop_per_net=5)
    groups = plots.group_runs([plots.load_run(tmp_path / n) for n in names])
    assert set(groups) == {
        "td3 n_critics=2", "td3 n_critics=1", "tqc drop_per_net=0", "tqc drop_per_net=5"
    }  # fmt: skip


def test_a_run_written_before_new_settings_existed_groups_with_a_new_one(tmp_path):
    old = fake_run(tmp_path, "old", 0, 2, [0.1, 0.2], [1.0, 2.0])
    new = fake_run(tmp_path, "new", 1, 2, [0.3, 0.4], [3.0, 4.0])
    config = yaml.safe_load((tmp_path / "new" / "config.yaml").read_text())
    config.update(sampler="uniform", bins=0, dataset="")  # defaults of later run settings
    (tmp_path / "new" / "config.yaml").write_text(yaml.safe_dump(config))
    groups = plots.group_runs([plots.load_run(plots.Path(p)) for p in (old, new)])
    assert list(groups) == ["td3"] and len(groups["td3"]) == 2


def level_run(root, name, seed, train_levels, points, listed=True):
    """A Procgen-like run: evaluations at 100 and 200 env steps, the one at 200 (and only it)
    with a generalization report, (train, held-out) returns on coinrun's [5, 10]; `listed`:
    summary.json lists the reports apart, else only its evaluations carry them (older runs)."""
    run = root / name
    run.mkdir()
    config = {"agent": "ppo", "env": "procgen:coinrun", "seed": seed, "total_steps": 200,
              "train_levels": train_levels, "agent_config": {"gamma": 0.999}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (first, _), (train, test) = points
    evals = [{"env_steps": 100, "return_mean": first, "train_normalized": (first - 5) / 5},
             {"env_steps": 200, "return_mean": train, "train_normalized": (train - 5) / 5,
              "test_return_mean": test, "test_normalized": (test - 5) / 5,
              "gap": (train - test) / 5}]  # fmt: skip
    summary = {"evals": evals, "bias": []}
    if listed:
        summary["generalization"] = [{"env_steps": 200, "train_return_mean": train,
                                      "train_normalized": (train - 5) / 5,
                                      "test_return_mean": test, "test_normalized": (test - 5) / 5,
                                      "gap": (train - test) / 5}]  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    return str(run)


def test_runs_with_levels_add_train_vs_held_out_curves_and_their_table(tmp_path):
    runs = [
        level_run(tmp_path, "l10s0", 0, 10, [(6.0, 0), (9.0, 6.0)]),
        level_run(tmp_path, "l10s1", 1, 10, [(6.0, 0), (8.0, 6.0)], listed=False),
        level_run(tmp_path, "l200s0", 0, 200, [(6.0, 0), (7.5, 7.0)]),
    ]
    loaded = [plots.load_run(plots.Path(r)) for r in runs]
    # an older summary.json: its evaluation with a gap is its report
    assert loaded[1]["summary"]["generalization"] == [
        {**loaded[1]["summary"]["evals"][1], "train_return_mean": 8.0}]  # fmt: skip
    groups = plots.group_runs(loaded)
    assert {k: len(v) for k, v in groups.items()} == {"ppo train_levels=10": 2,
                                                      "ppo train_levels=200": 1}  # fmt: skip
    fig = plots.plot(groups, tmp_path / "gen.png")
    # no bias measured: the return, then train vs held-out and the gap
    assert [ax.get_title() for ax in fig.axes] == [
        "eval return", "training levels (solid) vs held-out (dashed): normalized score",
        "gap (train - held-out)"]  # fmt: skip
    sides = fig.axes[1]
    solid = [ln for ln in sides.lines if ln.get_linestyle() == "-"]
    dashed = [ln for ln in sides.lines if ln.get_linestyle() == "--"]
    assert len(solid) == len(dashed) == 2
    # 10 levels: train (9 - 5) / 5 = 0.8 and (8 - 5) / 5 = 0.6 -> 0.7; held-out 0.2 in both
    assert solid[0].get_ydata().tolist() == [0.7] and dashed[0].get_ydata().tolist() == [0.2]
    table = plots.final_table(groups).split("\n\n")[1].splitlines()
    assert table[2] == ("| ppo train_levels=10 | 0,1 | 200 | 0.700 +- 0.100 | 0.200 +- 0.000 | "
                        "+0.500 +- 0.100 (normalized score) |")  # fmt: skip
    assert table[3].startswith("| ppo train_levels=200 | 0 | 200 | 0.500 +- 0.000 | 0.400 +- 0.000")


def test_runs_without_levels_have_no_generalization_panels_or_table(tmp_path):
    run = fake_run(tmp_path, "twin0", 0, 2, [0.1, 0.05], [500, 900])
    groups = plots.group_runs([plots.load_run(plots.Path(run))])
    fig = plots.plot(groups, tmp_path / "b.png")
    assert len(fig.axes) == 3 and "\n\n" not in plots.final_table(groups)
