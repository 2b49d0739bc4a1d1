"""Figures of the UTD-scaling analysis (harness/utd.py): D_J against sigma with its fit and
bootstrap band, the data-compute Pareto frontier, and the critic's bias against sigma.

Each function returns a matplotlib Figure (Agg, no window) and saves a PNG when given `out`;
`log_figures` writes figures to TensorBoard. `python -m harness.utd` calls `report_figures`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from harness.utd import Bootstrap, PerSigma, pareto_frontier, predict  # noqa: E402


def _utd_axis(ax, sigmas) -> None:
    """Log-x with a plain label at each utd of the sweep."""
    ticks = sorted(set(sigmas))
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{s:g}" for s in ticks])
    ax.minorticks_off()
    ax.set_xlabel("utd (gradient updates per env step)")


def _finish(fig: matplotlib.figure.Figure, out: str | Path | None) -> matplotlib.figure.Figure:
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    return fig


def plot_data_efficiency(
    per_sigma: PerSigma, boot: Bootstrap | None = None, title: str = "", out=None
) -> matplotlib.figure.Figure:
    """Each seed's steps to J (hollow grey where its sigma is left out of the fit), each fitted
    sigma's mean, the fit D_J(sigma) with its bootstrap band and D_min; log-x. The y-axis
    shows the data and the fit over the measured sigmas (up to 1.5x their largest value): a
    band that widens beyond them, as it does with few seeds, is cut at the top."""
    fig = matplotlib.figure.Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    fitted = set(boot.fit.sigmas) if boot else set()
    for sigma, steps in sorted(per_sigma.items()):
        reached = [s for s in steps if s is not None]
        style = {"color": "C0"} if sigma in fitted else {"facecolors": "none", "color": "grey"}
        ax.scatter([sigma] * len(reached), reached, s=18, alpha=0.7, **style)
        if sigma in fitted:
            ax.scatter([sigma], [np.mean(reached)], marker="s", s=50, color="black", zorder=3)
    if boot is not None:
        sigmas = np.array(sorted(per_sigma))
        grid = np.geomspace(sigmas.min() / 1.5, sigmas.max() * 1.5, 200)
        lo, hi = boot.predict_interval(grid)
        f = boot.fit
        ax.fill_between(grid, lo, hi, color="C1", alpha=0.25,
                        label=f"{100 * boot.ci:g}% bootstrap band")  # fmt: skip
        ax.plot(
            grid,
            predict(f, grid),
            color="C1",
            label=f"fit: D_min {f.d_min:.3g}, beta {f.beta:.3g}, alpha {f.alpha:.3g}",
        )
        ax.axhline(f.d_min, color="C1", linestyle="--", linewidth=0.8, label="D_min")
        ax.legend(fontsize=8)
    shown = [s for steps in per_sigma.values() for s in steps if s is not None]
    if boot is not None:
        shown += list(predict(boot.fit, np.array(sorted(per_sigma), dtype=float)))
    if shown:
        ax.set_ylim(0, 1.5 * max(shown))
    _utd_axis(ax, list(per_sigma))
    ax.set_ylabel("env steps to reach J")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _finish(fig, out)


def plot_pareto(
    points: list[tuple[float, float, float]], compute_unit: str = "", title: str = "", out=None
) -> matplotlib.figure.Figure:
    """(sigma, data, compute) points labelled by sigma, and the non-dominated ones joined."""
    fig = matplotlib.figure.Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    for sigma, data, compute in points:
        ax.scatter(compute, data, color="C0")
        ax.annotate(f"utd {sigma:g}", (compute, data), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    front = pareto_frontier((d, c) for _, d, c in points)
    if front:
        ax.plot([c for _, c in front], [d for d, _ in front], color="C1", label="Pareto frontier")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"compute to reach J ({compute_unit})" if compute_unit else "compute to J")
    ax.set_ylabel("env steps to reach J")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return _finish(fig, out)


def plot_bias(rows: list[dict], title: str = "", out=None) -> matplotlib.figure.Figure:
    """Normalized bias against utd: mean over seeds +- std (error bars) of each run's mean over
    its measurements and of its last measurement; one line per configuration."""
    fig = matplotlib.figure.Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.subplots()
    configs: dict[str, list[dict]] = {}
    for row in rows:
        label = ", ".join(f"{k}={v}" for k, v in row["config"].items())
        configs.setdefault(label, []).append(row)
    for n, (label, group) in enumerate(configs.items()):
        group = sorted(group, key=lambda r: r["utd"])
        x = np.array([r["utd"] for r in group])
        for key, shift, style in (("", 1.0, "o-"), ("last_", 1.04, "s--")):
            y = [r[f"{key}mean"] for r in group]
            err = [r[f"{key}std"] for r in group]
            name = "mean over measurements" if not key else "last measurement"
            ax.errorbar(x * shift, y, yerr=err, fmt=style, capsize=3, color=f"C{n}",
                        alpha=1.0 if not key else 0.6,
                        label=f"{label + ': ' if label else ''}{name}")  # fmt: skip
    ax.axhline(0.0, color="black", linewidth=0.8)
    _utd_axis(ax, [r["utd"] for r in rows])
    ax.set_ylabel("normalized bias (Q - G) / |G|")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8)
    return _finish(fig, out)


def report_figures(report: dict) -> dict[str, matplotlib.figure.Figure]:
    """The figures of one (agent, env) report of harness.utd.analyse_group: 'dj' always,
    'pareto' and 'bias' when there is something to draw."""
    title = f"{report['agent']} on {report['env']}, J = {report['threshold']:g}"
    per_sigma = {row["sigma"]: [r["steps_to_threshold"] for r in row["runs"]]
                 for row in report["sigmas"]}  # fmt: skip
    figures = {"dj": plot_data_efficiency(per_sigma, report.get("_bootstrap"), title)}
    points = [(row["sigma"], row["mean_steps"], row["mean_compute"])
              for row in report["sigmas"] if row["mean_steps"] is not None]  # fmt: skip
    if points:
        figures["pareto"] = plot_pareto(points, report["compute_unit"], title)
    if report["bias"]:
        figures["bias"] = plot_bias(report["bias"], title)
    return figures


def log_figures(figures: dict[str, matplotlib.figure.Figure], tb_dir: str | Path) -> None:
    """Each figure as a TensorBoard image under the tag utd/<name>."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tb_dir)) as writer:
        for name, fig in figures.items():
            writer.add_figure(f"utd/{name}", fig, close=False)
