"""Aggregate scores over runs and tasks with stratified-bootstrap confidence intervals, and
performance profiles: a thin wrapper over rliable (Agarwal et al., 2021, "Deep Reinforcement
Learning at the Edge of the Statistical Precipice"), which computes every statistic here.

Input: per configuration a runs x tasks array of normalized scores (0 = the reference floor,
e.g. a random policy; 1 = the reference best, e.g. the expert). The aggregates:

- IQM: the mean of the middle 50% of all runs x tasks scores (rliable `aggregate_iqm`);
- mean: the mean over tasks of each task's mean over runs (`aggregate_mean`);
- optimality gap: how far the scores fall short of `gamma` on average, scores above `gamma`
  counting as `gamma` (`aggregate_optimality_gap`); gamma = 1.0 is the reference best.

Intervals are percentile intervals of rliable's stratified bootstrap: runs are resampled with
replacement within each task, `reps` times. With one run per task every resample is the data
itself, so the interval is the point (the table says so).

Missing scores (NaN, or None in the input) are left out a whole run at a time: rliable needs
the same runs on every task, so a run (row) missing any task's score is dropped, and the
dropped runs and the missing scores are counted in the result.

Reproducibility: rliable 1.2's StratifiedBootstrap draws its indices from NumPy's global
random state (np.random.choice), not from the `random_state` it hands on to arch, so each
estimate here seeds the global state with `seed` and restores the caller's state afterwards;
`random_state` is passed as well, for a later rliable that does use it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
from rliable import library as rly
from rliable import metrics

GAMMA = 1.0  # the optimality gap's threshold: the normalized score of the reference best
METRICS = ("iqm", "mean", "optimality_gap")
METRIC_NAMES = {"iqm": "IQM", "mean": "mean", "optimality_gap": "optimality gap"}


def complete_runs(scores: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(the runs with a score on every task, runs dropped, scores missing) of a runs x tasks
    array; None and NaN are missing."""
    values = np.asarray(scores, dtype=np.float64)  # None -> NaN
    if values.ndim != 2:
        raise ValueError(f"scores must be runs x tasks, got shape {values.shape}")
    missing = np.isnan(values)  # runs x tasks
    whole = ~missing.any(axis=1)  # runs
    return values[whole], int((~whole).sum()), int(missing.sum())


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[np.random.RandomState]:
    """NumPy's global random state seeded with `seed` inside, the caller's restored after
    (module doc: rliable 1.2 draws its bootstrap indices from it); yields a RandomState with
    the same seed for rliable's `random_state`, without arch's deprecation warning for it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(state)


def interval_estimates(
    scores: Mapping[str, np.ndarray],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    gamma: float = GAMMA,
) -> dict[str, dict]:
    """Per configuration: each of METRICS as (point, low, high), the stratified-bootstrap
    interval at `confidence` (None when no run is complete), and `runs`, `tasks` (the shape
    used), `dropped_runs`, `missing` (module doc). Every configuration's bootstrap starts
    from `seed`, so its interval does not depend on the other configurations."""

    def aggregates(x: np.ndarray) -> np.ndarray:  # runs x tasks -> (3,)
        return np.array(
            [
                metrics.aggregate_iqm(x),
                metrics.aggregate_mean(x),
                metrics.aggregate_optimality_gap(x, gamma),
            ]
        )

    results = {}
    for name, array in scores.items():
        runs, dropped, missing = complete_runs(array)
        result = {
            "runs": runs.shape[0],
            "tasks": runs.shape[1],
            "dropped_runs": dropped,
            "missing": missing,
        }
        if runs.shape[0] == 0:
            results[name] = {**result, **dict.fromkeys(METRICS)}
            continue
        with _seeded(seed) as random_state:
            points, intervals = rly.get_interval_estimates(
                {name: runs},
                aggregates,
                reps=reps,
                confidence_interval_size=confidence,
                random_state=random_state,
            )
        low, high = intervals[name]  # (2, 3): lower bounds, upper bounds
        for k, metric in enumerate(METRICS):
            result[metric] = (float(points[name][k]), float(low[k]), float(high[k]))
        results[name] = result
    return results


def performance_profile(
    scores: Mapping[str, np.ndarray],
    taus: np.ndarray,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict, dict]:
    """rliable's score distributions: per configuration the fraction of its runs x tasks
    scores above each tau (len(taus),) and its stratified-bootstrap band (2 x len(taus)).
    Only complete runs count; a configuration with none is left out."""
    profiles, bands = {}, {}
    for name, array in scores.items():
        runs, _, _ = complete_runs(array)
        if runs.shape[0] == 0:
            continue
        with _seeded(seed):  # create_performance_profile takes no random_state in rliable 1.2
            profile, band = rly.create_performance_profile(
                {name: runs}, np.asarray(taus), reps=reps, confidence_interval_size=confidence
            )
        profiles[name], bands[name] = profile[name], band[name]
    return profiles, bands


def plot_performance_profiles(
    path: Path, taus: np.ndarray, panels: Mapping[str, tuple[dict, dict]], title: str = ""
) -> None:
    """A PNG at `path`: one axis per panel (its title -> performance_profile's result), each
    configuration's profile with its bootstrap band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (panel, (profiles, bands)) in zip(axes[0], panels.items()):
        plot_utils.plot_performance_profiles(
            profiles,
            taus,
            performance_profile_cis=bands,
            ax=ax,
            xlabel=r"normalized score $\tau$",
            ylabel=r"fraction of runs x tasks $> \tau$",
            labelsize="medium",
            ticklabelsize="small",
        )
        ax.axvline(GAMMA, color="black", linewidth=0.6, linestyle=":")
        ax.set_title(panel, fontsize=10)
        ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(estimate: tuple[float, float, float] | None, fmt: str) -> str:
    if estimate is None:
        return "n/a"
    point, low, high = estimate
    return f"{point:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def _note(result: dict) -> str:
    parts = []
    if result["runs"] == 0:
        parts.append("no run has a score on every task")
    elif result["runs"] == 1:
        parts.append("one run: the interval is the point")
    if result["dropped_runs"]:
        runs, missing = result["dropped_runs"], result["missing"]
        parts.append(f"{runs} run{'s' * (runs > 1)} left out ({missing} missing "
                     f"score{'s' * (missing > 1)})")  # fmt: skip
    return "; ".join(parts)


def markdown_aggregates(
    scores: Mapping[str, np.ndarray],
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    gamma: float = GAMMA,
    normalization: str = "",
    fmt: str = ".3f",
) -> str:
    """A markdown table, one row per configuration: IQM, mean and optimality gap, each with its
    interval, the runs x tasks used and a note (one run, runs left out); below it the
    normalization, the bootstrap's reps, confidence level and seed."""
    results = interval_estimates(scores, reps, seed, confidence, gamma)
    ci = f"[{100 * confidence:g}% CI]"
    lines = [
        f"| configuration | runs x tasks | IQM {ci} | mean {ci} | optimality gap {ci} | note |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        cells = [_cell(result[m], fmt) for m in METRICS]
        lines.append(
            f"| {name} | {result['runs']} x {result['tasks']} | "
            + " | ".join(cells)
            + f" | {_note(result)} |"
        )
    lines += [
        "",
        (f"{normalization} " if normalization else "")
        + f"Optimality gap: mean shortfall below gamma = {gamma:g} (the reference best; higher "
        f"scores count as {gamma:g}). Intervals: {100 * confidence:g}% percentile intervals of "
        f"rliable's stratified bootstrap (runs resampled within each task), {reps} reps, "
        f"seed {seed}.",
    ]
    return "\n".join(lines) + "\n"
