"""Compare runs: bias and return against env steps, one line per configuration.

    python -m harness.plots runs/td3-s0 runs/td3-s1 runs/td3-single-s0 runs/td3-single-s1 \\
        --out docs/bias-hopper.png --table docs/bias-hopper.md

Runs that differ only in their seed form one configuration: its line is the mean over seeds
and the shaded band spans the seeds' minimum to maximum. A configuration is labelled by its
agent and by the settings that differ between its configurations (e.g. `td3 n_critics=1`).
Each run folder needs the `summary.json` and `config.yaml` train.py writes; bias points come
from `--bias-every`. The figure is also logged to TensorBoard (`--tb-dir`).
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

# Settings that do not make a different configuration: the seed and the loop's bookkeeping.
NOT_CONFIG = {
    "seed", "total_steps", "device", "threads", "eval_every", "log_every", "checkpoint_every",
    "bias_every", "bias_states", "eval_episodes",
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
    return {"path": run, "summary": summary, "config": config}


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


def final_table(groups: dict[str, list[dict]]) -> str:
    """Markdown: per configuration, the last common measurement (mean +- std over seeds)."""
    lines = [
        "| configuration | seeds | env steps | normalized bias | bias | mean Q | MC return "
        "| eval return |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip

    def last(runs, series, key, fmt):
        """(env steps, 'mean +- std' over seeds) of the last common point, or (None, 'n/a')."""
        steps, values = curve(runs, series, key)
        if len(steps) == 0:
            return None, "n/a"
        v = values[:, -1]
        return int(steps[-1]), f"{v.mean():{fmt}} +- {v.std():{fmt.lstrip('+')}}"

    for label, runs in groups.items():
        step, norm = last(runs, "bias", "bias_normalized_mean", "+.3f")
        keys = ("bias_mean", "q_mean", "mc_return_mean")
        cells = [norm, *(last(runs, "bias", k, ".1f")[1] for k in keys)]
        cells.append(last(runs, "evals", "return_mean", ".1f")[1])
        seeds = ",".join(str(r["config"]["seed"]) for r in runs)
        lines.append(f"| {label} | {seeds} | {step or 'n/a'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(groups: dict[str, list[dict]], out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4), constrained_layout=True)
    for ax, (series, key, title) in zip(axes, PANELS):
        for label, runs in groups.items():
            steps, values = curve(runs, series, key)
            if len(steps) == 0:
                continue
            line = ax.plot(steps, values.mean(0), label=f"{label} ({len(runs)} seeds)")[0]
            if len(runs) > 1:
                ax.fill_between(
                    steps, values.min(0), values.max(0), alpha=0.2, color=line.get_color()
                )
        ax.set_xlabel("env steps")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].axhline(0.0, color="black", linewidth=0.8)
    axes[0].legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return fig


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
    try:
        runs = [load_run(Path(r)) for r in args.runs]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    groups = group_runs(runs)
    out = Path(args.out)
    fig = plot(groups, out)
    table = final_table(groups)
    print(table)
    if args.table:
        Path(args.table).write_text(table + "\n")
    from torch.utils.tensorboard import SummaryWriter

    tb_dir = Path(args.tb_dir) if args.tb_dir else Path("runs") / "plots" / out.stem
    with SummaryWriter(str(tb_dir)) as writer:
        writer.add_figure("comparison/" + out.stem, fig)
    print(f"wrote {out}; figure logged to TensorBoard in {tb_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
