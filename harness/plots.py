"""Compare runs: bias, return, and train vs held-out levels against env steps, one line per
configuration.

    python -m harness.plots runs/td3-s0 runs/td3-s1 runs/td3-single-s0 runs/td3-single-s1 \\
        --out docs/bias-hopper.png --table docs/bias-hopper.md
    python -m harness.plots runs/ppo-l10-s* runs/ppo-l200-s* --out docs/procgen-curves.png

Runs that differ only in their seed form one configuration: its line is the mean over seeds
and the shaded band spans the seeds' minimum to maximum. A configuration is labelled by its
agent and by the settings that differ between its configurations (e.g. `td3 n_critics=1`).
Each run folder needs the `summary.json` and `config.yaml` train.py writes; bias points come
from `--bias-every` (the bias panels are drawn when a run has them). Runs with levels (Procgen,
MuJoCo levels) add two panels from their generalization reports (`--gen-every`; summary.json's
`generalization`, or a run folder's evaluations with a gap where it predates that list): the
training-level score (solid) against the held-out one (dashed), normalized where every report
has a normalized score (Procgen) and returns otherwise, and the gap; the table then gets a
second part, the last common report. The figure is also logged to TensorBoard (`--tb-dir`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from core import config as cfglib
from core.errors import UserError
from core.runs import check_output

# Settings that do not make a different configuration: the seed and the loop's bookkeeping.
NOT_CONFIG = {
    "seed", "total_steps", "device", "threads", "eval_every", "log_every", "checkpoint_every",
    "bias_every", "bias_states", "eval_episodes", "gen_every", "env_threads",
}  # fmt: skip
# What a curve shows: (summary list, value key, axis label).
PANELS = [
    ("bias", "bias_normalized_mean", "normalized bias (Q - G) / |G|"),
    ("bias", "bias_mean", "bias Q - G"),
    ("evals", "return_mean", "eval return"),
]


def load_run(run: Path) -> dict:
    try:
        summary = json.loads((run / "summary.json").read_text())
        config = yaml.safe_load((run / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise UserError(f"{run}: not a readable run folder ({exc.__class__.__name__})") from None
    summary.setdefault("generalization", reports_in_evals(summary))
    return {"path": run, "summary": summary, "config": config}


def reports_in_evals(summary: dict) -> list[dict]:
    """The generalization reports of a summary.json written before it listed them apart: its
    evaluations with a gap, the training side's return named as the report names it."""
    return [{**e, "train_return_mean": e["return_mean"]}
            for e in summary.get("evals", []) if "gap" in e]  # fmt: skip


def gen_score(runs: list[dict]) -> tuple[str, str]:
    """(key suffix, label) of the generalization panels: the normalized score where every
    report of every run has one, else the return."""
    reports = [g for r in runs for g in r["summary"]["generalization"]]
    if reports and all("train_normalized" in g and "test_normalized" in g for g in reports):
        return "normalized", "normalized score"
    return "return_mean", "return"


def _flat_config(config: dict) -> dict:
    """Run and agent settings in one mapping; run settings a run folder predates (written by
    an older ogzoo) take their defaults, so old and new runs of one configuration group."""
    flat = {**cfglib.to_dict(cfglib.RunConfig())}
    flat.update({k: v for k, v in config.items() if k != "agent_config"})
    flat.update(config.get("agent_config", {}))
    return flat


def group_runs(runs: list[dict]) -> dict[str, list[dict]]:
    """label -> runs that share every setting except the seed (and loop-only settings)."""
    keys = [
        json.dumps(
            {k: v for k, v in _flat_config(r["config"]).items() if k not in NOT_CONFIG},
            sort_keys=True,
        )  # fmt: skip
        for r in runs
    ]
    configs = {key: json.loads(key) for key in keys}

    def varies(key: str, agent: str) -> bool:  # among the configurations of one agent
        values = {json.dumps(c.get(key)) for c in configs.values() if c["agent"] == agent}
        return len(values) > 1

    groups: dict[str, list[dict]] = defaultdict(list)
    for key, run in zip(keys, runs):
        cfg = configs[key]
        shown = [k for k in sorted(cfg) if k != "agent" and varies(k, cfg["agent"])]
        groups[" ".join([cfg["agent"], *(f"{k}={cfg[k]}" for k in shown)])].append(run)
    return dict(groups)


def curve(runs: list[dict], series: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps present in every run, values: seeds x steps). A step is the run's clock: env
    steps online, gradient updates offline (train.py --dataset)."""
    per_run = [{e.get("env_steps", e.get("gradient_updates")): e[key]
                for e in r["summary"].get(series, [])} for r in runs]  # fmt: skip
    steps = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    return np.array(steps), np.array([[p[s] for s in steps] for p in per_run], dtype=float)


def last(runs: list[dict], series: str, key: str, fmt: str) -> tuple[int | None, str]:
    """(env steps, 'mean +- std' over seeds) of the last common point, or (None, 'n/a')."""
    steps, values = curve(runs, series, key)
    if len(steps) == 0:
        return None, "n/a"
    v = values[:, -1]
    return int(steps[-1]), f"{v.mean():{fmt}} +- {v.std():{fmt.lstrip('+')}}"


def final_table(groups: dict[str, list[dict]]) -> str:
    """Markdown: per configuration, the last common measurement (mean +- std over seeds);
    where runs have generalization reports, a second table of the last common report."""
    lines = [
        "| configuration | seeds | env steps | normalized bias | bias | mean Q | MC return "
        "| eval return |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for label, runs in groups.items():
        step, norm = last(runs, "bias", "bias_normalized_mean", "+.3f")
        keys = ("bias_mean", "q_mean", "mc_return_mean")
        cells = [norm, *(last(runs, "bias", k, ".1f")[1] for k in keys)]
        cells.append(last(runs, "evals", "return_mean", ".1f")[1])
        lines.append(
            f"| {label} | {seeds_of(runs)} | {step or 'n/a'} | " + " | ".join(cells) + " |"
        )
    reported = {label: runs for label, runs in groups.items()
                if all(r["summary"]["generalization"] for r in runs)}  # fmt: skip
    if reported:
        lines += ["", "| configuration | seeds | env steps | train | held-out | gap |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
    for label, runs in reported.items():
        suffix, name = gen_score(runs)
        fmt = ".3f" if suffix == "normalized" else ".1f"
        step, train = last(runs, "generalization", f"train_{suffix}", fmt)
        test = last(runs, "generalization", f"test_{suffix}", fmt)[1]
        gap = last(runs, "generalization", "gap", "+" + fmt)[1]
        lines.append(f"| {label} | {seeds_of(runs)} | {step or 'n/a'} | {train} | {test} | "
                     f"{gap} ({name}) |")  # fmt: skip
    return "\n".join(lines)


def seeds_of(runs: list[dict]) -> str:
    return ",".join(str(r["config"]["seed"]) for r in runs)


def plot(groups: dict[str, list[dict]], out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for group in groups.values() for r in group]
    # the panels with something to draw (runs without bias, a record without evaluations),
    # and at least the return
    panels = [p for p in PANELS if any(r["summary"].get(p[0]) for r in runs)]
    with_gen = any(r["summary"]["generalization"] for r in runs)
    if not panels and not with_gen:
        panels = [p for p in PANELS if p[0] == "evals"]
    n = len(panels) + 2 * with_gen
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), constrained_layout=True, squeeze=False)
    axes = list(axes[0])
    for ax, (series, key, title) in zip(axes, panels):
        for label, group in groups.items():
            draw(ax, group, series, key, label)
        ax.set_title(title)
    if panels and panels[0][0] == "bias":
        axes[0].axhline(0.0, color="black", linewidth=0.8)
    if with_gen:
        sides, gap = axes[len(panels) :]
        names = set()
        for label, group in groups.items():
            if not any(r["summary"]["generalization"] for r in group):
                continue
            suffix, name = gen_score(group)
            names.add(name)
            line = draw(sides, group, "generalization", f"train_{suffix}", f"{label} train")
            color = None if line is None else line.get_color()
            draw(sides, group, "generalization", f"test_{suffix}", f"{label} held-out", "--", color)
            draw(gap, group, "generalization", "gap", label, color=color)
        sides.set_title(
            f"training levels (solid) vs held-out (dashed): {' / '.join(sorted(names))}"
        )
        gap.set_title("gap (train - held-out)")
        gap.axhline(0.0, color="black", linewidth=0.8)
        sides.legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return fig


def draw(ax, runs: list[dict], series: str, key: str, label: str, style: str = "-",
         color=None):  # fmt: skip
    """One configuration's curve: the mean over its seeds, shaded from their min to max (where
    it has more than one); None where its runs share no point."""
    steps, values = curve(runs, series, key)
    if len(steps) == 0:
        return None
    line = ax.plot(steps, values.mean(0), style, color=color,
                   label=f"{label} ({len(runs)} seeds)")[0]  # fmt: skip
    if len(runs) > 1:
        ax.fill_between(steps, values.min(0), values.max(0), alpha=0.2, color=line.get_color())
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--table", default=None, help="also write the markdown table here")
    parser.add_argument(
        "--tb-dir",
        default=None,
        help="TensorBoard folder for the figure (default: runs/plots/<out name>)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    tb_dir = Path(args.tb_dir) if args.tb_dir else Path("runs") / "plots" / out.stem
    try:
        runs = [load_run(Path(r)) for r in args.runs]
        check_output(out, "--out", parents=True)  # plot() makes its folder
        if args.table:
            check_output(args.table, "--table")
        check_output(tb_dir, "--tb-dir", folder=True)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    groups = group_runs(runs)
    fig = plot(groups, out)
    table = final_table(groups)
    print(table)
    if args.table:
        Path(args.table).write_text(table + "\n")
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tb_dir)) as writer:
        writer.add_figure("comparison/" + out.stem, fig)
    print(f"wrote {out}; figure logged to TensorBoard in {tb_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
