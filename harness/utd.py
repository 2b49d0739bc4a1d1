"""UTD scaling: the data an agent needs to reach a return J, as a law of its update-to-data
ratio sigma (Rybkin et al. 2025, "Value-Based Deep RL Scales Predictably").

    python -m harness.utd runs/sweep-utd --threshold 3000 --window 3 --reps 1000 \\
        --out docs/utd-hopper

Reads a sweep folder (results.csv, evals.csv, optional bias.csv; see `load_sweep`) and, per
agent and env: the env steps each seed needed to reach J, the fit of
D_J(sigma) = D_min + (beta / sigma)^alpha with bootstrap intervals over seeds, a check that
the fit on small sigmas predicts the largest, the data-compute Pareto points, the best batch
size / learning rate per sigma with their power laws, and the critic's bias per sigma. It
prints a markdown table and writes PREFIX.json and PREFIX-*.png (harness/utd_plots.py).

Taken as fact (read for facts only, nothing copied):
- The law, sigma = gradient updates per env step, and that the best batch size and learning
  rate fall as powers of sigma: the paper (its abstract and the summary in REFERENCES.md);
  the form `c + (x / b) ** -a` (D_min = c, beta = b, alpha = a) in qscaled
  `qscaled/utils/power_law.py`.
- qscaled fits that law by mean squared error in linear space (`power_law.py`: a coarse grid
  of starts, each refined by L-BFGS-B, no bounds), on times divided by their median
  (`qscaled/core/fitted/data_efficiency.py`, `compute_normalized_times`, the paper's App. D).
- qscaled smooths a return curve by isotonic (non-decreasing) regression and takes the first
  step where the smoothed curve is >= J; J never reached is NaN; its bootstrap draws seeds
  with replacement (100 times) and finds the crossing of each draw's mean curve
  (`qscaled/core/preprocessing.py`, `bootstrap_crossings`).
- The best hyperparameter per sigma is the one with the least time to J, NaN counted as
  infinite, ties to the first (smallest) value (pandas idxmin in
  `qscaled/core/grid_search/bootstrapping.py`); its power law is a straight line in log-log
  space (`qscaled/core/grid_search/linear_fit.py`).
- Compute to J ~ 10 * sigma * D_J * batch size * parameters, i.e. gradient updates times a
  cost per update (`data_efficiency.py`, `_plot_compute_vs_data`; REFERENCES.md).

Where this module differs, and why:
- Smoothing is a trailing mean over the last `window` evaluations, not isotonic regression.
  Isotonic regression uses later evaluations: a run that reaches J and then collapses has its
  peak pooled with the collapse and may never cross. A trailing mean is causal (the crossing
  is a step the run could have been stopped at, knowing only its past) and its one knob is
  easy to reason about.
- The crossing is found per seed and D_J at a sigma is the mean of the seeds' crossings
  (qscaled: the crossing of the seeds' mean curve). Per-seed crossings give the seed spread
  and the stratified bootstrap below.
- The fit keeps qscaled's loss (mean squared error of D / median(D), linear space) but adds
  the bounds D_min >= 0, beta >= 0, alpha in [0.05, 20], and solves it without random starts:
  at a fixed alpha the model is linear in (D_min, beta^alpha), solved exactly under the
  bounds; a grid plus a bounded 1-D search finds alpha. Exact on noise-free data.
- The bootstrap refits the law on every resample and is seeded
  (`numpy.random.default_rng(seed)`, seeds drawn with replacement within each sigma); qscaled
  fits once and uses its (unseeded) bootstrap for the crossings' spread and the best
  hyperparameters. beta's interval is wide: beta = (beta^alpha)^(1/alpha) with beta^alpha in
  env steps, so alpha's error is multiplied by log(beta^alpha); the D_J band is the one to read.
- A sigma where any seed never reached J is left out of the fit and reported. The mean of a
  sample with a censored value is unknown; putting the run's budget in its place would bias
  D_J low by an amount set by our budget rather than by the agent, and most so at the small
  sigmas that shape the fit. (qscaled leaves such crossings NaN and asks for a lower J.)
- sigma is the configured `utd`, not gradient_updates / env_steps, which the warm-up lowers.
- When the sweep varies other keys (batch size, learning rate), D_J at a sigma is its best
  configuration's (as the paper fits D_J with the best hyperparameters); ties are reported.
  Runs whose results.csv `status` is not "finished" are left out and listed.
- Compute to J pro-rates a run's total (gradient updates x FLOPs per update when known, else
  wall time, which also counts evaluation) by D_J / env_steps.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from core.errors import UserError, quote
from core.runs import check_output

ALPHA_BOUNDS = (0.05, 20.0)  # the exponent's search range
ALPHA_GRID = np.geomspace(*ALPHA_BOUNDS, 241)
PARAMS = ("d_min", "beta", "alpha")

# results.csv columns that are not grid keys (nor are measurements with these suffixes).
RUN_COLUMNS = {
    "agent", "env", "seed", "utd", "run_dir", "final_eval_return_mean", "best_eval_return_mean",
    "env_steps", "gradient_updates", "wall_time_s", "flops_per_update", "status", "error",
    "bias_normalized_last", "bias_normalized_mean",
}  # fmt: skip
MEASUREMENT_SUFFIXES = ("_mean", "_std", "_last", "_s", "_return")
REQUIRED = {
    "results.csv": ("agent", "env", "seed", "utd", "run_dir", "env_steps", "gradient_updates",
                    "wall_time_s"),
    "evals.csv": ("run_dir", "env_steps", "return_mean"),
    "bias.csv": ("run_dir", "env_steps", "bias_normalized_mean"),
}  # fmt: skip


# 1. Steps to threshold ---------------------------------------------------------------------


def smooth(returns: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean of the last `window` evaluations; the first window - 1 points average the
    evaluations so far, so a run can cross at its first evaluation. window 1: no smoothing."""
    if window < 1:
        raise UserError(f"window must be >= 1, got {window}")
    r = np.asarray(returns, dtype=float)
    return np.array([r[max(0, i + 1 - window) : i + 1].mean() for i in range(len(r))])


def steps_to_threshold(
    steps: Sequence[int], returns: Sequence[float], threshold: float, window: int = 1
) -> int | None:
    """First env step at which the smoothed evaluation return is >= threshold; None if never.
    A curve that crosses and then drops keeps its first crossing."""
    order = np.argsort(np.asarray(steps), kind="stable")
    above = np.flatnonzero(smooth(np.asarray(returns, dtype=float)[order], window) >= threshold)
    return int(np.asarray(steps)[order][above[0]]) if len(above) else None


# 2. The law D_J(sigma) = D_min + (beta / sigma)^alpha ---------------------------------------


@dataclass(frozen=True)
class Fit:
    d_min: float  # env steps no UTD gets below
    beta: float  # (beta / sigma)^alpha is the env steps above D_min
    alpha: float  # how fast extra updates stop paying
    loss: float  # mean squared error of D / median(D)
    sigmas: tuple[float, ...]  # the distinct sigmas fitted


def predict(fit: Fit, sigma: float | np.ndarray) -> float | np.ndarray:
    """D_J(sigma) = D_min + (beta / sigma)^alpha."""
    return fit.d_min + (fit.beta / np.asarray(sigma, dtype=float)) ** fit.alpha


def _profile(alphas: np.ndarray, sigmas: np.ndarray, y: np.ndarray):
    """For each alpha, the least-squares (d >= 0, k >= 0) of y ~ d + k * sigma^-alpha, and its
    mean squared error. The optimum is the unconstrained one when feasible, else on a face of
    the orthant (d = 0 or k = 0): all three are computed and the best feasible kept."""
    x = sigmas[None, :] ** -alphas[:, None]  # alphas x points
    xm, ym = x.mean(1), y.mean()
    k_free = ((x - xm[:, None]) * (y - ym)).sum(1) / ((x - xm[:, None]) ** 2).sum(1)
    zeros = np.zeros_like(xm)
    # candidates x alphas: unconstrained; on the face d = 0; on the face k = 0
    d = np.stack([ym - k_free * xm, zeros, zeros + ym])
    k = np.stack([k_free, (x * y).sum(1) / (x * x).sum(1), zeros])
    loss = ((y - d[..., None] - k[..., None] * x) ** 2).mean(-1)
    loss[(d < 0) | (k < 0)] = np.inf
    pick, cols = loss.argmin(0), np.arange(len(alphas))
    return d[pick, cols], k[pick, cols], loss[pick, cols]


def fit_data_efficiency(sigmas: Sequence[float], data: Sequence[float]) -> Fit:
    """Least squares of D / median(D) in linear space (qscaled's loss), D_min >= 0, beta >= 0,
    alpha in ALPHA_BOUNDS. beta is 0 only for data that do not fall with sigma (flat fit).
    `sigmas` may repeat (per-seed points); needs >= 3 distinct sigmas and positive data."""
    s, d = np.asarray(sigmas, dtype=float), np.asarray(data, dtype=float)
    if len(s) != len(d) or len(np.unique(s)) < 3:
        raise UserError(f"a fit needs >= 3 distinct sigmas, got {sorted(set(s.tolist()))}")
    if not (np.all(s > 0) and np.all(np.isfinite(d)) and np.all(d > 0)):
        raise UserError("a fit needs positive sigmas and positive, finite data")
    scale = float(np.median(d))
    y = d / scale
    _, _, losses = _profile(ALPHA_GRID, s, y)
    i = int(np.argmin(losses))
    lo, hi = ALPHA_GRID[max(i - 1, 0)], ALPHA_GRID[min(i + 1, len(ALPHA_GRID) - 1)]
    found = minimize_scalar(
        lambda a: _profile(np.array([a]), s, y)[2][0],
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-14},
    )
    alpha = float(found.x) if found.fun <= losses[i] else float(ALPHA_GRID[i])
    dn, kn, loss = (float(v[0]) for v in _profile(np.array([alpha]), s, y))
    beta = math.exp(math.log(kn * scale) / alpha) if kn > 0 else 0.0  # k = beta^alpha
    return Fit(dn * scale, beta, alpha, loss, tuple(np.unique(s).tolist()))


# 3. Bootstrap over seeds ---------------------------------------------------------------------

PerSigma = dict[float, list[int | None]]  # sigma -> each seed's steps to J (None: never)


def split_crossed(per_sigma: PerSigma) -> tuple[dict[float, np.ndarray], dict[float, str]]:
    """(sigma -> steps of its seeds, for sigmas where every seed reached J;
    sigma -> why it is left out, for the others)."""
    kept, excluded = {}, {}
    for sigma, steps in sorted(per_sigma.items()):
        missing = sum(s is None for s in steps)
        if not steps:
            excluded[sigma] = "no runs"
        elif missing:
            excluded[sigma] = f"{missing} of {len(steps)} seeds never reached J"
        else:
            kept[sigma] = np.asarray(steps, dtype=float)
    return kept, excluded


@dataclass
class Bootstrap:
    fit: Fit  # the point estimate, on every seed's mean
    samples: np.ndarray  # reps x 3: (d_min, beta, alpha) of each resample's refit
    ci: float  # e.g. 0.95
    excluded: dict[float, str] = field(default_factory=dict)  # sigma -> reason

    def _percentiles(self, values: np.ndarray) -> np.ndarray:
        tail = 50 * (1 - self.ci)
        return np.percentile(values, [tail, 100 - tail], axis=0)

    def intervals(self) -> dict[str, tuple[float, float]]:
        """Percentile interval of each parameter over the resamples."""
        lo, hi = self._percentiles(self.samples)
        return {name: (float(lo[j]), float(hi[j])) for j, name in enumerate(PARAMS)}

    def predict_interval(self, sigma: float | np.ndarray) -> tuple:
        """Percentile interval of D_J(sigma) over the resamples (arrays for array sigma)."""
        d, b, a = (self.samples[:, j : j + 1] for j in range(3))  # reps x 1
        sig = np.atleast_1d(np.asarray(sigma, dtype=float))[None, :]
        lo, hi = self._percentiles(d + (b / sig) ** a)  # reps x sigmas -> 2 x sigmas
        return (float(lo[0]), float(hi[0])) if np.ndim(sigma) == 0 else (lo, hi)


def bootstrap_fit(per_sigma: PerSigma, reps: int = 1000, seed: int = 0, ci: float = 0.95):
    """Fit D_J on each sigma's mean steps, then `reps` times: per sigma, draw its seeds with
    replacement (stratified: each sigma keeps its seed count), take the mean, refit.
    Sigmas where a seed never reached J are excluded (see the module docstring)."""
    if reps < 1 or not 0 < ci < 1:
        raise UserError(f"reps must be >= 1 and 0 < ci < 1, got {reps} and {ci}")
    kept, excluded = split_crossed(per_sigma)
    sigmas = np.array(list(kept))
    if len(sigmas) < 3:
        why = "; ".join(f"utd {s:g}: {r}" for s, r in excluded.items())
        raise UserError(f"a fit needs >= 3 sigmas where every seed reached J, got "
                        f"{len(sigmas)}" + (f" ({why})" if why else ""))  # fmt: skip
    fit = fit_data_efficiency(sigmas, [kept[s].mean() for s in sigmas])
    rng = np.random.default_rng(seed)
    samples = np.empty((reps, 3))
    for r in range(reps):
        means = [kept[s][rng.integers(0, len(kept[s]), len(kept[s]))].mean() for s in sigmas]
        f = fit_data_efficiency(sigmas, means)
        samples[r] = f.d_min, f.beta, f.alpha
    return Bootstrap(fit, samples, ci, excluded)


# 4. Compute and the data-compute Pareto frontier ---------------------------------------------


def run_compute(run: dict, flops_per_update: float | None = None) -> float:
    """A run's total compute: gradient updates x FLOPs per update when given, else its wall
    time in seconds."""
    if flops_per_update:
        return float(run["gradient_updates"]) * float(flops_per_update)
    return float(run["wall_time_s"])


def compute_to_threshold(run: dict, steps: int, flops_per_update: float | None = None) -> float:
    """The compute the run had spent when it reached J: its total pro-rated by steps/env_steps."""
    return run_compute(run, flops_per_update) * steps / float(run["env_steps"])


def pareto_frontier(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (data, compute) points no other point beats on both (<= on both, < on one), sorted
    by data (so compute falls); repeated points appear once."""
    frontier: list[tuple[float, float]] = []
    for data, compute in sorted(set(points)):
        if not frontier or compute < frontier[-1][1]:
            frontier.append((data, compute))
    return frontier


# 5. Best hyperparameters per sigma ----------------------------------------------------------


def _order(value):
    """Sort key: numbers in numeric order, then text; elementwise for tuples."""
    if isinstance(value, tuple):
        return tuple(_order(v) for v in value)
    return (0, float(value)) if isinstance(value, (int, float)) else (1, str(value))


@dataclass(frozen=True)
class Best:
    value: object  # the winning value (a tuple of grid values when several keys vary)
    mean_steps: float  # its seeds' mean steps to J
    tied: tuple  # every value with that same mean (more than one: a tie, broken to the least)


def best_per_sigma(sigmas: Sequence[float], values: Sequence, steps: Sequence[int | None]):
    """sigma -> Best: per (sigma, value) the mean steps to J over its runs, a value with any
    run that never reached J counting as infinite (as qscaled); the least mean wins, ties go
    to the smallest value (qscaled's idxmin on sorted values). Sigmas where no value has
    every run reaching J are absent."""
    groups = defaultdict(list)
    for sigma, value, s in zip(sigmas, values, steps):
        groups[(float(sigma), value)].append(math.inf if s is None else s)
    best = {}
    for sigma in sorted({k[0] for k in groups}):
        means = {v: float(np.mean(s)) for (g, v), s in groups.items() if g == sigma}
        low = min(means.values())
        if math.isfinite(low):
            tied = tuple(sorted((v for v, m in means.items() if m == low), key=_order))
            best[sigma] = Best(tied[0], low, tied)
    return best


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """(coef, exponent) of y = coef * x^exponent: least squares of log y on log x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(np.unique(x)) < 2 or np.any(x <= 0) or np.any(y <= 0):
        raise UserError("a power law needs >= 2 distinct x and positive x, y")
    exponent, log_coef = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(log_coef)), float(exponent)


# 6. Extrapolation ---------------------------------------------------------------------------


def extrapolation_check(
    per_sigma: PerSigma,
    fit_sigmas: Iterable[float] | None = None,
    reps: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict:
    """Fit on `fit_sigmas` (default: every sigma below the largest), predict the largest
    sigma's D_J with the bootstrap interval, and say whether its observed mean lies inside.
    The interval is the fit's uncertainty over seeds; the observed mean's own is reported
    apart (`observed_interval`, the same percentile bootstrap of its seeds)."""
    target = max(per_sigma)
    chosen = [s for s in per_sigma if s < target] if fit_sigmas is None else list(fit_sigmas)
    if target in chosen:
        raise UserError(f"the extrapolation target utd {target:g} is among the fitted sigmas")
    observed = per_sigma[target]
    if not observed or any(s is None for s in observed):
        raise UserError(f"utd {target:g}: not every seed reached J, nothing to compare")
    boot = bootstrap_fit({s: per_sigma[s] for s in chosen if s in per_sigma}, reps, seed, ci)
    lo, hi = boot.predict_interval(target)
    obs = np.asarray(observed, dtype=float)
    draws = obs[np.random.default_rng(seed).integers(0, len(obs), (reps, len(obs)))].mean(1)
    tail = 50 * (1 - ci)
    return {
        "target_sigma": float(target),
        "fit_sigmas": list(boot.fit.sigmas),
        "predicted": float(predict(boot.fit, target)),
        "interval": (lo, hi),
        "observed_mean": float(obs.mean()),
        "observed_interval": tuple(float(v) for v in np.percentile(draws, [tail, 100 - tail])),
        "inside": bool(lo <= obs.mean() <= hi),
    }


# 7. Overestimation against sigma ------------------------------------------------------------


def bias_by_sigma(bias_rows: Iterable[dict], runs: Iterable[dict], keys: Sequence[str] = ()):
    """Per (agent, env, utd, values of `keys`): mean and std over seeds (ddof 0, as
    harness/plots.py) of each run's mean normalized bias over its measurements, and of its
    last measurement. Runs without a measurement are left out."""
    per_run = defaultdict(list)
    for row in bias_rows:
        if row.get("bias_normalized_mean") is not None:
            per_run[row["run_dir"]].append((row["env_steps"], row["bias_normalized_mean"]))
    groups = defaultdict(list)
    for run in runs:
        points = sorted(per_run.get(run["run_dir"], []))
        if points:
            group = (run["agent"], run["env"], float(run["utd"]), *(run.get(k) for k in keys))
            groups[group].append((np.mean([b for _, b in points]), points[-1][1]))
    out = []
    for (agent, env, utd, *values), stats in groups.items():
        means, lasts = np.array(stats).T
        out.append({
            "agent": agent, "env": env, "utd": utd, "config": dict(zip(keys, values)),
            "runs": len(stats), "mean": float(means.mean()), "std": float(means.std()),
            "last_mean": float(lasts.mean()), "last_std": float(lasts.std()),
        })  # fmt: skip
    return sorted(
        out, key=lambda r: (r["agent"], r["env"], r["utd"], _order(tuple(r["config"].values())))
    )


# 8. Loading a sweep, the report, the CLI ----------------------------------------------------


@dataclass
class Sweep:
    runs: list[dict]  # results.csv rows
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # run_dir -> (env steps, return means)
    bias: list[dict]  # bias.csv rows (empty without the file)


def _number(text: str):
    """A CSV cell: int, float, None for an empty cell, or the text itself."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_csv(path: Path, numeric: Sequence[str]) -> list[dict]:
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = [{k: _number(v or "") for k, v in row.items() if k} for row in reader]
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    missing = [c for c in REQUIRED[path.name] if c not in header]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    for line, row in enumerate(rows, start=2):
        bad = [c for c in numeric if not isinstance(row[c], (int, float, type(None)))]
        if bad:
            raise UserError(f"{path}:{line}: {bad[0]} is not a number: {quote(row[bad[0]])}")
    return rows


def load_sweep(folder: str | Path) -> Sweep:
    """results.csv (one row per run), evals.csv (run_dir, env_steps, return_mean, ...) and, if
    present, bias.csv (run_dir, env_steps, bias_normalized_mean, ...), numbers parsed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such sweep folder")
    for name in ("results.csv", "evals.csv"):
        if not (folder / name).is_file():
            raise UserError(f"{folder}: no {name} (is this a sweep folder?)")
    runs = _read_csv(folder / "results.csv", ("utd", "env_steps", "gradient_updates"))
    if not runs:
        raise UserError(f"{folder / 'results.csv'}: no runs")
    if any(r["utd"] is None or r["utd"] <= 0 for r in runs):
        raise UserError(f"{folder / 'results.csv'}: every run needs a utd > 0")
    points = defaultdict(list)
    for row in _read_csv(folder / "evals.csv", ("env_steps", "return_mean")):
        if row["env_steps"] is not None and row["return_mean"] is not None:
            points[row["run_dir"]].append((row["env_steps"], row["return_mean"]))
    curves = {run: tuple(np.array(v, dtype=float) for v in zip(*sorted(p)))
              for run, p in points.items()}  # fmt: skip
    bias_path = folder / "bias.csv"
    bias = _read_csv(bias_path, ("env_steps",)) if bias_path.is_file() else []
    return Sweep(runs, curves, bias)


def grid_keys(runs: list[dict]) -> list[str]:
    """The results.csv columns a sweep varied (beyond agent, env, seed, utd) within `runs`."""
    columns = sorted({k for r in runs for k in r} - RUN_COLUMNS)
    columns = [c for c in columns if not c.endswith(MEASUREMENT_SUFFIXES)]
    return [c for c in columns if len({str(r.get(c)) for r in runs}) > 1]


def analyse_group(
    runs: list[dict],
    sweep: Sweep,
    threshold: float,
    window: int,
    reps: int,
    seed: int,
    fit_below: float | None = None,
    flops_per_update: float | None = None,
) -> dict:
    """Everything the report says about one (agent, env): a JSON-ready dict."""
    keys = grid_keys(runs)
    # FLOPs per update: the argument, else results.csv's column when every run has it.
    own_flops = all(r.get("flops_per_update") for r in runs) and not flops_per_update
    flops = {r["run_dir"]: r["flops_per_update"] if own_flops else flops_per_update for r in runs}
    config = {r["run_dir"]: tuple(r.get(k) for k in keys) for r in runs}
    crossing = {}
    for r in runs:
        steps, returns = sweep.curves.get(r["run_dir"], ((), ()))
        crossing[r["run_dir"]] = steps_to_threshold(steps, returns, threshold, window)
    sigma_of = {r["run_dir"]: float(r["utd"]) for r in runs}
    best = best_per_sigma(list(sigma_of.values()), list(config.values()), list(crossing.values()))
    # The seeds behind D_J at each sigma: its best configuration's (every run where none has
    # all its seeds reaching J, so the report says why the sigma is left out).
    chosen = defaultdict(list)
    for r in sorted(runs, key=lambda r: (r["seed"], r["run_dir"])):
        s = sigma_of[r["run_dir"]]
        if s not in best or config[r["run_dir"]] == best[s].value:
            chosen[s].append(r)
    per_sigma = {s: [crossing[r["run_dir"]] for r in chosen[s]] for s in sorted(chosen)}
    kept, excluded = split_crossed(per_sigma)
    means = {}  # sigma -> (mean D_J, mean compute to J)
    rows = []
    for s, rs in sorted(chosen.items()):
        computes = [compute_to_threshold(r, crossing[r["run_dir"]], flops[r["run_dir"]])
                    for r in rs if crossing[r["run_dir"]] is not None]  # fmt: skip
        if s in kept:
            means[s] = (float(kept[s].mean()), float(np.mean(computes)))
        rows.append({
            "sigma": s,
            "config": dict(zip(keys, best[s].value)) if s in best else None,
            "ties": [dict(zip(keys, v)) for v in best[s].tied] if s in best else [],
            "runs": [{"run_dir": r["run_dir"], "seed": r["seed"],
                      "steps_to_threshold": crossing[r["run_dir"]]} for r in rs],
            "mean_steps": means.get(s, (None, None))[0],
            "mean_compute": means.get(s, (None, None))[1],
            "excluded": excluded.get(s),
        })  # fmt: skip
    frontier = set(pareto_frontier(means.values()))
    for row in rows:
        row["on_frontier"] = row["sigma"] in means and means[row["sigma"]] in frontier
    report = {
        "agent": runs[0]["agent"], "env": runs[0]["env"], "threshold": threshold,
        "grid_keys": keys, "sigmas": rows,
        "reached": sum(c is not None for c in crossing.values()), "runs": len(runs),
        "compute_unit": "FLOPs" if flops_per_update or own_flops else "wall s",
        "pareto": [{"sigma": s, "data": d, "compute": c} for s, (d, c) in means.items()
                   if (d, c) in frontier],
    }  # fmt: skip
    try:
        boot = bootstrap_fit(per_sigma, reps, seed)
        report["fit"] = {
            "d_min": boot.fit.d_min, "beta": boot.fit.beta, "alpha": boot.fit.alpha,
            "loss": boot.fit.loss, "sigmas": list(boot.fit.sigmas), "ci": boot.ci,
            "intervals": boot.intervals(), "reps": reps, "seed": seed,
        }  # fmt: skip
        report["_bootstrap"] = boot  # for the plots; dropped from the JSON
    except UserError as exc:
        report["fit_error"] = str(exc)
    try:
        below = None if fit_below is None else [s for s in per_sigma if s < fit_below]
        report["extrapolation"] = extrapolation_check(per_sigma, below, reps, seed)
    except UserError as exc:
        report["extrapolation_error"] = str(exc)
    report["power_laws"] = {}
    for j, key in enumerate(keys):
        values_at = defaultdict(set)  # a key set together with utd (co-scaled) is not searched
        for r in runs:
            values_at[sigma_of[r["run_dir"]]].add(str(r.get(key)))
        if all(len(v) == 1 for v in values_at.values()):
            continue
        try:
            xs = list(best)
            coef, exponent = power_law_fit(xs, [float(best[s].value[j]) for s in xs])
            report["power_laws"][key] = {"coef": coef, "exponent": exponent}
        except (UserError, TypeError, ValueError):
            pass  # a non-numeric key, or fewer than two sigmas with a best value
    report["bias"] = bias_by_sigma(sweep.bias, runs, keys)
    report["first_evaluation"] = first_evaluation_check(runs, sweep, threshold)
    return report


def first_evaluation_check(runs: list[dict], sweep: Sweep, threshold: float) -> dict | None:
    """Each run's first evaluation (before any update when it comes before learning starts) and
    the runs already at or above J there: a J within reach of an untrained policy makes their
    steps to J measure nothing learned."""
    firsts = {}
    for r in runs:
        steps, returns = sweep.curves.get(r["run_dir"], ((), ()))
        if len(steps):
            firsts[r["run_dir"]] = float(np.asarray(returns)[np.argmin(steps)])
    if not firsts:
        return None
    best = max(firsts, key=firsts.get)
    above = sorted(k for k, v in firsts.items() if v >= threshold)
    return {"best_return": firsts[best], "best_run": best, "at_or_above_threshold": above}


def _fmt(value, spec: str = ".4g") -> str:
    return "n/a" if value is None else f"{value:{spec}}"


def _config(config: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) if config else "-"


def markdown(report: dict, window: int) -> str:
    """One agent/env's section of the printed report."""
    lines = [
        f"## {report['agent']} on {report['env']}: env steps to return {report['threshold']:g} "
        f"(trailing mean of {window} evaluations)", "",
        f"| utd | config | seeds | steps to J per seed | mean | compute to J "
        f"({report['compute_unit']}) | Pareto |", "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in report["sigmas"]:
        steps = ", ".join("never" if r["steps_to_threshold"] is None
                          else str(r["steps_to_threshold"]) for r in row["runs"])  # fmt: skip
        seeds = ",".join(str(r["seed"]) for r in row["runs"])
        mean = f"left out: {row['excluded']}" if row["excluded"] else _fmt(row["mean_steps"], ".0f")
        ties = f" (tied: {len(row['ties'])})" if len(row["ties"]) > 1 else ""
        lines.append(f"| {row['sigma']:g} | {_config(row['config'])}{ties} | {seeds} | {steps} "
                     f"| {mean} | {_fmt(row['mean_compute'], '.3g')} "
                     f"| {'yes' if row['on_frontier'] else ''} |")  # fmt: skip
    lines.append("")
    if "fit" in report:
        f, iv = report["fit"], report["fit"]["intervals"]
        cells = [f"{p} = {f[p]:.4g} [{iv[p][0]:.4g}, {iv[p][1]:.4g}]" for p in PARAMS]
        lines.append(f"D_J(utd) = D_min + (beta / utd)^alpha on utd "
                     f"{', '.join(f'{s:g}' for s in f['sigmas'])}: " + "; ".join(cells) +
                     f" ({100 * f['ci']:g}% bootstrap over seeds, {f['reps']} resamples, "
                     f"seed {f['seed']}).")  # fmt: skip
    else:
        lines.append(f"No fit: {report['fit_error']}.")
    if "extrapolation" in report:
        e = report["extrapolation"]
        lines.append(
            f"Extrapolation: fit on utd {', '.join(f'{s:g}' for s in e['fit_sigmas'])} predicts "
            f"D_J({e['target_sigma']:g}) = {e['predicted']:.4g} [{e['interval'][0]:.4g}, "
            f"{e['interval'][1]:.4g}]; observed {e['observed_mean']:.4g} "
            f"[{e['observed_interval'][0]:.4g}, {e['observed_interval'][1]:.4g}]: "
            f"{'inside' if e['inside'] else 'OUTSIDE'} the interval."
        )
    else:
        lines.append(f"Extrapolation: n/a ({report['extrapolation_error']}).")
    first = report.get("first_evaluation")
    if first:
        above = first["at_or_above_threshold"]
        lines.append(
            f"First evaluations: the best is {first['best_return']:.4g} ({first['best_run']}); "
            + (f"{len(above)} of {report['runs']} runs were at or above J there ("
               f"{', '.join(above)}): their steps to J measure nothing learned; a J above "
               f"{first['best_return']:.4g} would." if above else "every run started below J.")
        )  # fmt: skip
    for key, law in report["power_laws"].items():
        lines.append(f"Best {key} per utd ~ {law['coef']:.4g} * utd^{law['exponent']:+.3f}.")
    if report["bias"]:
        lines += ["", "| utd | config | runs | normalized bias, mean over measurements "
                  "| at the last measurement |", "|---|---|---|---|---|"]  # fmt: skip
        for b in report["bias"]:
            lines.append(f"| {b['utd']:g} | {_config(b['config'])} | {b['runs']} "
                         f"| {b['mean']:+.3f} +- {b['std']:.3f} "
                         f"| {b['last_mean']:+.3f} +- {b['last_std']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def _thresholds(values: list[str]) -> dict[str | None, float]:
    """--threshold J (every env) or ENV=J (one env), repeatable -> env (None: any) -> J."""
    out = {}
    for text in values:
        env, _, number = text.rpartition("=")
        try:
            out[env or None] = float(number)
        except ValueError:
            raise UserError(f"--threshold must be J or ENV=J, got {quote(text)}") from None
        if not math.isfinite(out[env or None]):
            raise UserError(f"--threshold J must be a finite number, got {quote(text)}")
    return out


def _jsonable(data):
    """Python numbers, lists and dicts only; non-finite floats as null (strict JSON)."""
    if isinstance(data, dict):
        return {str(k): _jsonable(v) for k, v in data.items() if not str(k).startswith("_")}
    if isinstance(data, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in data]
    if isinstance(data, (np.integer, np.floating)):
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text))


def analyse(sweep: Sweep, args) -> tuple[list[dict], list[str]]:
    """(one report per (agent, env) with a threshold, notes on what was left out); UserError
    when nothing can be said. Runs whose `status` says they did not finish are left out."""
    thresholds = _thresholds(args.threshold)
    unfinished = [r for r in sweep.runs if r.get("status") not in (None, "finished")]
    groups = defaultdict(list)
    for run in sweep.runs:
        if run not in unfinished:
            groups[(str(run["agent"]), str(run["env"]))].append(run)
    notes = [f"not finished, left out: {r['run_dir']} ({r['status']})" for r in unfinished]
    reports = []
    for (_, env), runs in sorted(groups.items()):
        threshold = thresholds.get(env, thresholds.get(None))
        if threshold is None:
            notes.append(f"no --threshold for {env}: not analysed")
            continue
        options = (args.window, args.reps, args.seed, args.fit_below, args.flops_per_update)
        reports.append(analyse_group(runs, sweep, threshold, *options))
    if not reports:
        raise UserError("nothing to analyse: " + ("; ".join(notes) or "no finished runs"))
    if not any(r["reached"] for r in reports):
        raise UserError(
            "no run reached its threshold: "
            + "; ".join(f"{r['agent']} on {r['env']}: J = {r['threshold']:g}" for r in reports)
        )
    if not any("fit" in r for r in reports):
        raise UserError(f"{reports[0]['agent']} on {reports[0]['env']}: {reports[0]['fit_error']}")
    return reports, notes


def write_outputs(reports: list[dict], notes: list[str], prefix: Path, args) -> list[Path]:
    """PREFIX.json and the figures; the paths written."""
    from harness import utd_plots

    prefix.parent.mkdir(parents=True, exist_ok=True)
    data = {"sweep": str(args.dir), "window": args.window, "reps": args.reps, "seed": args.seed,
            "fit_below": args.fit_below, "notes": notes, "groups": reports}  # fmt: skip
    json_path = prefix.with_name(prefix.name + ".json")
    json_path.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")
    written, figures = [json_path], {}
    for r in reports:
        name = f"{_slug(r['agent'])}-{_slug(r['env'])}"
        figures.update({f"{name}-{kind}": fig for kind, fig in utd_plots.report_figures(r).items()})
    for name, fig in figures.items():
        path = prefix.with_name(f"{prefix.name}-{name}.png")
        fig.savefig(path, dpi=120)
        written.append(path)
    if args.tb_dir:
        utd_plots.log_figures(figures, args.tb_dir)
    return written


def check_arguments(args) -> None:
    """UserError for a number no analysis can use; before anything is read or written."""
    if args.window < 1 or args.reps < 1:
        raise UserError(f"--window and --reps must be >= 1, got {args.window}, {args.reps}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    _thresholds(args.threshold)
    for flag, value in (("--fit-below", args.fit_below),
                        ("--flops-per-update", args.flops_per_update)):  # fmt: skip
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"{flag} must be a finite number > 0, got {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", help="sweep folder with results.csv, evals.csv (bias.csv)")
    parser.add_argument(
        "--threshold",
        action="append",
        required=True,
        help="return J to reach: J for every env, or ENV=J (repeatable)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=1,
        help="trailing mean over this many evaluations (default: 1, none)",
    )
    parser.add_argument("--reps", type=int, default=1000, help="bootstrap resamples (1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument(
        "--fit-below",
        type=float,
        default=None,
        help="extrapolation check: fit on utd below this (default: all but the "
        "largest), predict the largest",
    )
    parser.add_argument(
        "--flops-per-update",
        type=float,
        default=None,
        help="compute = updates x this (default: results.csv's flops_per_update"
        " column, else wall time)",
    )
    parser.add_argument("--out", default=None, help="output prefix (default: DIR/utd)")
    parser.add_argument("--tb-dir", default=None, help="also log the figures to TensorBoard")
    args = parser.parse_args(argv)
    prefix = Path(args.out) if args.out else Path(args.dir) / "utd"
    try:
        check_arguments(args)
        sweep = load_sweep(args.dir)
        check_output(prefix.with_name(prefix.name + ".json"), "--out", parents=True)
        if args.tb_dir:
            check_output(args.tb_dir, "--tb-dir", folder=True)
        reports, notes = analyse(sweep, args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n\n".join(markdown(r, args.window) for r in reports))
    if notes:
        print("\n" + "\n".join(f"Note: {note}" for note in notes))
    try:
        written = write_outputs(reports, notes, prefix, args)
    except OSError as exc:
        print(f"error: cannot write {prefix}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
