"""Sweeps: a grid of ordinary train.py runs, on a local process pool or on Ray, resumable.

    python -m harness.sweep configs/sweeps/utd-pendulum-sac-cpu.yaml --out runs/utd --jobs 2
    python -m harness.sweep SPEC.yaml --out runs/utd --backend ray            # embedded Ray
    python -m harness.sweep SPEC.yaml --out runs/utd --backend ray --ray-address HOST:6379

SPEC (YAML):

    agent: sac                    # or a list: agent: [sac, td3]
    env: Pendulum-v1              # or a list
    seeds: [0, 1, 2]
    total_steps: 20000
    grid:                         # config key -> values; run-config keys (utd, num_envs, ...)
      utd: [0.5, 1, 2, 4, 8]      # become flags, agent keys --set KEY=VALUE
    set: {critic_hidden: [64, 64]}       # optional: fixed agent settings
    run: {eval_every: 1000}              # optional: fixed run settings (train.py flags)
    config: configs/sac/pendulum.yaml    # optional: a preset under all of the above
    co_scale:                            # optional: Rybkin et al.'s co-scaling with the UTD
      batch_size: {base: 256, exponent: -0.2, reference_utd: 1}
    seeds_in_one_process: true           # optional: a point's seeds train in one process

A point is (agent, env, seed, one value per grid key); its run folder is
DIR/runs/<agent>-<env>-<key><value>...-s<seed>, an ordinary run that evaluate.py, the plots and
the UTD analysis read. With `seeds_in_one_process`, the seeds of a grid point are one job,
`train.py --seeds ...` (training/seeds.py: the seeds in lockstep, their updates batched), and
the run of seed S is DIR/runs/<agent>-<env>-<key><value>.../s<S>. `co_scale` sets
key = base * (utd / reference_utd)^exponent at each point (rounded for integer keys), the
paper's batch size and learning rate falling as power laws of the UTD; a co-scaled key cannot
also be a grid key.

Resume: the same command again skips finished runs (checkpoints/final.pt), resumes
interrupted ones (train.py --resume, from their last checkpoint, or from step 0 when none was
written) and retries failed ones. Each point's train.py arguments are kept beside its folder
(`<folder>.argv.json`); a point whose arguments changed since (the SPEC was edited) is an
error rather than a silent mix of two settings in one folder.

Checks: before anything is written, each grid point's config is resolved as its run will
resolve it (train.py --show-config, `check_points`; skipped with --ray-address, whose nodes
are other machines), so an unknown env, a value out of range or a broken preset is one line
naming the point, not a folder of failed runs.

Results: DIR/results.csv, one row per point (agent, env, seed, utd, every grid key, run_dir
relative to DIR, status, final and best evaluation return, env steps, gradient updates, wall
time, the last and mean normalized bias), DIR/evals.csv (every evaluation of every run) and
DIR/bias.csv (every bias measurement). Training is deterministic per seed on CPU, so the two
backends write the same rows except `wall_time_s`.

Backends: `local` runs `--jobs` train.py processes at a time (threads waiting on
subprocesses). `ray` submits one task per point with `--cpus-per-run` CPUs and
`--gpus-per-run` GPUs (a fraction is allowed) as its resource request; without
`--ray-address`, `ray.init()` starts an embedded local instance with `--jobs` CPUs. A task
runs train.py from this checkout's path, so on a cluster every node needs the checkout (and
its .venv) at the same path.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import get_agent_module
from core import config as cfglib
from core.domains import SEED_LIMIT
from core.errors import UserError, quote
from core.runs import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
SPEC_KEYS = {"agent", "env", "seeds", "total_steps", "grid", "set", "run", "config", "co_scale",
             "seeds_in_one_process"}  # fmt: skip
RUN_KEYS = {f.name for f in dataclasses.fields(cfglib.RunConfig)}
# Keys a point fixes itself: not to be set through `run`, `grid` or `co_scale`.
OWN_KEYS = {"agent", "env", "seed", "total_steps"}
RESULT_FIELDS = ["agent", "env", "seed", "utd"]
NUMBERS = ["status", "final_eval_return_mean", "best_eval_return_mean", "env_steps",
           "gradient_updates", "wall_time_s", "bias_normalized_last",
           "bias_normalized_mean"]  # fmt: skip
EVAL_FIELDS = ["run_dir", "env_steps", "return_mean", "return_std"]
BIAS_FIELDS = ["run_dir", "env_steps", "bias_normalized_mean", "bias_mean", "q_mean",
               "mc_return_mean", "bias_target"]  # fmt: skip


@dataclass(frozen=True)
class Point:
    agent: str
    env: str
    seed: int
    values: tuple[tuple[str, Any], ...]  # (key, value) of every grid and co-scaled key

    @property
    def base(self) -> str:
        """The grid point's name, the same for all its seeds."""
        parts = [self.agent, self.env, *(f"{k}{_text(v)}" for k, v in self.values)]
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts))

    @property
    def name(self) -> str:
        return f"{self.base}-s{self.seed}"


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class Spec:
    agents: list[str]
    envs: list[str]
    seeds: list[int]
    total_steps: int
    grid: dict[str, list]
    set: dict[str, Any]
    run: dict[str, Any]
    config: str | None
    co_scale: dict[str, dict[str, float]]
    seeds_in_one_process: bool = False

    def points(self) -> list[Point]:
        keys = list(self.grid)
        out = []
        for agent, env, combo, seed in itertools.product(
            self.agents, self.envs, itertools.product(*self.grid.values()), self.seeds
        ):
            values = dict(zip(keys, combo))
            utd = float(values.get("utd", self.run.get("utd", 1.0)))
            for key, law in self.co_scale.items():
                scaled = law["base"] * (utd / law.get("reference_utd", 1.0)) ** law["exponent"]
                values[key] = round(scaled) if _is_int_key(agent, key) else scaled
            out.append(Point(agent, env, int(seed), tuple(values.items())))
        return out

    def folder(self, out: Path, point: Point) -> Path:
        """The run folder of `point` under the sweep's DIR."""
        if self.seeds_in_one_process:
            return out / "runs" / point.base / f"s{point.seed}"
        return out / "runs" / point.name

    def jobs(self, out: Path) -> list[tuple[Path, list[str]]]:
        """(folder, train.py arguments without --run-dir) of every job: one per point, or
        one per grid point with all its seeds (seeds_in_one_process)."""
        if not self.seeds_in_one_process:
            return [(self.folder(out, p), self.argv(p)) for p in self.points()]
        groups: dict[str, list[Point]] = {}
        for point in self.points():
            groups.setdefault(point.base, []).append(point)
        return [(out / "runs" / base, self.argv(points[0], [p.seed for p in points]))
                for base, points in groups.items()]  # fmt: skip

    def argv(self, point: Point, seeds: list[int] | None = None) -> list[str]:
        """train.py's arguments for `point`, or for its grid point with `seeds` in one process
        (without --run-dir)."""
        argv = ["--config", self.config] if self.config else []
        which = ["--seeds", *map(str, seeds)] if seeds else ["--seed", str(point.seed)]
        argv += ["--agent", point.agent, "--env", point.env, *which,
                 "--total-steps", str(self.total_steps)]  # fmt: skip
        values = {**self.run, **self.set, **dict(point.values)}
        for key, value in values.items():
            if key in RUN_KEYS and isinstance(value, bool):  # train.py's switches take no value
                argv += [f"--{key.replace('_', '-')}"] if value else []
            elif key in RUN_KEYS:
                argv += [f"--{key.replace('_', '-')}", str(value)]
            else:
                argv += ["--set", f"{key}={json.dumps(value)}"]
        return argv


def _is_int_key(agent: str, key: str) -> bool:
    if key in RUN_KEYS:
        return cfglib.type_hints(cfglib.RunConfig)[key] is int
    return cfglib.type_hints(get_agent_module(agent).Config).get(key) is int


def _as_list(value: Any, key: str) -> list:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise UserError(f"spec key '{key}' is an empty list")
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise UserError(f"spec key '{key}' repeats a value: duplicate points ({quote(values)})")
    return values


def load_spec(path: str | Path) -> Spec:
    """The SPEC file, checked: every key known, every grid key a run or agent setting, no
    empty or repeated list, no key set twice. UserError (one line) otherwise."""
    data = cfglib.load_yaml(path)
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown spec key {quote(unknown[0])} (known: "
                        f"{', '.join(sorted(SPEC_KEYS))})")  # fmt: skip
    for key in ("agent", "env", "seeds", "total_steps", "grid"):
        if key not in data:
            raise UserError(f"{path}: the spec needs '{key}'")
    grid, fixed_set, run = data["grid"], data.get("set") or {}, data.get("run") or {}
    co_scale = data.get("co_scale") or {}
    for key, value in (("grid", grid), ("set", fixed_set), ("run", run), ("co_scale", co_scale)):
        if not isinstance(value, dict):
            raise UserError(f"{path}: '{key}' must be a mapping of config keys")
    if not grid:
        raise UserError(f"{path}: the grid is empty: give at least one key with its values")
    spec = Spec(
        agents=[str(a) for a in _as_list(data["agent"], "agent")],
        envs=[str(e) for e in _as_list(data["env"], "env")],
        seeds=_as_list(data["seeds"], "seeds"),
        total_steps=data["total_steps"],
        grid={key: _as_list(values, f"grid.{key}") for key, values in grid.items()},
        set=fixed_set, run=run, config=data.get("config"), co_scale=co_scale,
        seeds_in_one_process=data.get("seeds_in_one_process", False),
    )  # fmt: skip
    check_spec(spec, path)
    return spec


def check_spec(spec: Spec, path: str | Path) -> None:
    if not isinstance(spec.seeds_in_one_process, bool):
        raise UserError(f"{path}: seeds_in_one_process must be true or false")
    if any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < SEED_LIMIT
           for s in spec.seeds):  # fmt: skip
        raise UserError(f"{path}: seeds must be integers in [0, 2^31 = {SEED_LIMIT}), got "
                        f"{quote(spec.seeds)}")  # fmt: skip
    steps = spec.total_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"{path}: total_steps must be an integer >= 1, got {quote(steps)}")
    if spec.config and not (REPO / spec.config).is_file() and not Path(spec.config).is_file():
        raise UserError(f"{path}: config preset {spec.config} not found")
    sources = {"grid": spec.grid, "set": spec.set, "run": spec.run, "co_scale": spec.co_scale}
    seen: dict[str, str] = {}
    for where, keys in sources.items():
        for key in keys:
            if key in OWN_KEYS:
                raise UserError(f"{path}: '{key}' is the spec's own key, not a {where} key")
            if key in seen:
                raise UserError(f"{path}: '{key}' is set in both {seen[key]} and {where}")
            seen[key] = where
    if spec.run.keys() - RUN_KEYS:
        bad = sorted(spec.run.keys() - RUN_KEYS)[0]
        raise UserError(f"{path}: run key {quote(bad)} is not a run setting; agent settings "
                        "go under 'set'")  # fmt: skip
    for agent in spec.agents:
        try:
            module = get_agent_module(agent)
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None
        agent_keys = {f.name for f in dataclasses.fields(module.Config)}
        for key in seen:
            if key not in RUN_KEYS and key not in agent_keys:
                raise UserError(f"{path}: {quote(key)} is neither a run setting nor a {agent} "
                                "setting (train.py --help, --show-config)")  # fmt: skip
    for key, law in spec.co_scale.items():
        if not isinstance(law, dict) or {"base", "exponent"} - set(law) or set(law) - {
            "base", "exponent", "reference_utd"}:  # fmt: skip
            raise UserError(f"{path}: co_scale.{key} needs base and exponent (and optionally "
                            "reference_utd)")  # fmt: skip
        numbers = [law["base"], law["exponent"], law.get("reference_utd", 1.0)]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers) or (
            law["base"] <= 0 or law.get("reference_utd", 1.0) <= 0):  # fmt: skip
            raise UserError(f"{path}: co_scale.{key} needs a finite base > 0, exponent and "
                            "reference_utd > 0")  # fmt: skip
    names = [p.name for p in spec.points()]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: two grid points share a run folder name; make the values "
                        "distinct")  # fmt: skip


def check_points(spec: Spec, processes: int) -> None:
    """Resolve each grid point's config the way its run will (train.py --show-config: the
    resolver of training/launch.py, which the harness reaches across a process boundary, as it
    reaches train.py itself), `processes` at a time, before anything is written; UserError
    naming the first point refused and why (unknown env, a value out of range, a bad preset,
    and with seeds_in_one_process what a seed group refuses). The seeds of a point share its
    config; load_spec checked their range."""
    if spec.seeds_in_one_process:  # one job per grid point: its own --seeds command line
        points = {folder.name: argv for folder, argv in spec.jobs(Path("."))}
    else:
        points = {p.base: spec.argv(p) for p in spec.points()}

    def problem(argv: list[str]) -> str | None:
        done = subprocess.run([sys.executable, str(REPO / "train.py"), *argv, "--show-config"],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
        if done.returncode == 0:
            return None
        lines = done.stderr.strip().splitlines() or [f"train.py exited with {done.returncode}"]
        return re.sub(r"^(\S+: )?error: ", "", lines[-1])  # train.py's or argparse's line

    with ThreadPoolExecutor(processes) as pool:
        for base, message in zip(points, pool.map(problem, points.values())):
            if message is not None:
                raise UserError(f"grid point {base}: {message}")


# ---- running ------------------------------------------------------------------------------
def finished(folder: Path) -> bool:
    """train.py writes checkpoints/final.pt only when the run reached its budget; a group of
    seeds (seeds.json) finished when every seed's run did."""
    group = folder / "seeds.json"
    if group.is_file():
        seeds = json.loads(group.read_text())["seeds"]
        return all(finished(folder / f"s{seed}") for seed in seeds)
    return (folder / "checkpoints" / "final.pt").is_file()


def run_point(folder: str, argv: list[str]) -> int:
    """train.py for one point into `folder` (its log beside it as <folder>.log): nothing when
    finished, --resume when the folder holds a run, else a new run. Returns the exit code."""
    path = Path(folder)
    if finished(path):
        return 0
    if (path / "config.yaml").is_file() or (path / "seeds.json").is_file():
        argv = ["--resume", str(path)]
    else:
        argv = [*argv, "--run-dir", str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.log", "a") as log:
        return subprocess.call([sys.executable, str(REPO / "train.py"), *argv, "--progress",
                                "off"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip


def check_arguments(folder: Path, argv: list[str]) -> None:
    """Keep each point's arguments beside its folder; a point whose arguments changed since its
    run began is an error (the SPEC was edited under an existing DIR)."""
    record = Path(f"{folder}.argv.json")
    if record.is_file():
        before = json.loads(record.read_text())
        if before != argv:
            raise UserError(f"{folder} was started with other arguments ({' '.join(before)}); "
                            "the spec changed: use another --out")  # fmt: skip
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps(argv))


def run_local(jobs: list[tuple[Path, list[str]]], processes: int,
              report: Callable[[Path, int], None]) -> dict[Path, int]:  # fmt: skip
    """Every job on a pool of `processes` train.py processes at a time."""
    codes = {}
    with ThreadPoolExecutor(processes) as pool:
        futures = {pool.submit(run_point, str(folder), argv): folder for folder, argv in jobs}
        for future, folder in futures.items():
            codes[folder] = future.result()
            report(folder, codes[folder])
    return codes


def run_ray(
    jobs: list[tuple[Path, list[str]]], processes: int, address: str | None, cpus: float,
    gpus: float, report: Callable[[Path, int], None],
) -> dict[Path, int]:  # fmt: skip
    """One Ray task per job, each asking for `cpus` CPUs and `gpus` GPUs."""
    import ray

    started = not ray.is_initialized()
    if started:
        # Ray starts its workers at nice 15, and a run inherits it from its task: on a busy
        # machine train.py then waits behind every other process (26x slower measured here
        # beside two training runs). The embedded instance's workers run at normal priority;
        # a cluster joined with --ray-address keeps its own setting.
        os.environ.setdefault("RAY_worker_niceness", "0")
        options = {"address": address} if address else {"num_cpus": processes}
        ray.init(**options, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})  # fmt: skip
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus)(run_point)
        pending = {task.remote(str(folder), argv): folder for folder, argv in jobs}
        codes = {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            folder = pending.pop(done[0])
            codes[folder] = ray.get(done[0])
            report(folder, codes[folder])
        return codes
    finally:
        if started:
            ray.shutdown()


# ---- results ------------------------------------------------------------------------------
def collect(spec: Spec, out: Path, codes: dict[Path, int]) -> list[dict]:
    """results.csv, evals.csv and bias.csv under `out`, from every point's run folder; returns
    the result rows."""
    grid_keys = [k for k in [*spec.grid, *spec.co_scale] if k != "utd"]
    rows, evals, biases = [], [], []
    for point in spec.points():
        folder = spec.folder(out, point)
        job = folder.parent if spec.seeds_in_one_process else folder
        values = dict(point.values)
        utd = values.get("utd", spec.run.get("utd", 1.0))
        row = {"agent": point.agent, "env": point.env, "seed": point.seed, "utd": utd,
               **{k: json.dumps(values[k]) if isinstance(values[k], list) else values[k]
                  for k in grid_keys},
               "run_dir": folder.relative_to(out).as_posix()}  # fmt: skip
        summary_path = folder / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        code = codes.get(job, 0)  # the exit code of the process that trained it
        row["status"] = ("finished" if finished(folder) else
                         f"failed (exit {code})" if code else "unfinished")  # fmt: skip
        if summary is not None:
            bias = [b["bias_normalized_mean"] for b in summary.get("bias", [])]
            row.update(
                final_eval_return_mean=summary["eval_return_mean"],
                best_eval_return_mean=summary["best_eval_return_mean"],
                env_steps=summary["env_steps"], gradient_updates=summary["gradient_updates"],
                wall_time_s=summary["wall_time_s"],
                bias_normalized_last=bias[-1] if bias else None,
                bias_normalized_mean=sum(bias) / len(bias) if bias else None,
            )  # fmt: skip
            evals += [{"run_dir": row["run_dir"], **{k: e.get(k) for k in EVAL_FIELDS[1:]}}
                      for e in summary["evals"]]  # fmt: skip
            biases += [{"run_dir": row["run_dir"], **{k: b.get(k) for k in BIAS_FIELDS[1:]}}
                       for b in summary.get("bias", [])]  # fmt: skip
        rows.append(row)
    fields = [*RESULT_FIELDS, *grid_keys, "run_dir", *NUMBERS]
    write_csv(out / "results.csv", fields, rows)
    write_csv(out / "evals.csv", EVAL_FIELDS, evals)
    write_csv(out / "bias.csv", BIAS_FIELDS, biases)
    return rows


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def sweep(
    spec: Spec, out: Path, backend: str = "local", jobs: int = 1, address: str | None = None,
    cpus: float = 1.0, gpus: float = 0.0,
) -> list[dict]:  # fmt: skip
    """Run (or resume) every point, then write the results; returns the result rows."""
    if backend not in ("local", "ray"):
        raise UserError(f"unknown backend {quote(backend)} (local or ray)")
    if jobs < 1 or cpus <= 0 or gpus < 0:
        raise UserError("--jobs must be >= 1, --cpus-per-run > 0 and --gpus-per-run >= 0")
    above = next(p for p in (out, *out.parents) if p.exists())
    if not above.is_dir():
        where = "" if above == out else f": {above}"
        raise UserError(f"--out {out}{where} is a file, not a folder")
    if address is None:  # a cluster's nodes (their GPUs, their envs) are not this machine
        check_points(spec, jobs)
    todo = spec.jobs(out)
    for folder, argv in todo:
        check_arguments(folder, argv)
    runs = len(spec.points())
    print(f"sweep: {runs} runs in {len(todo)} processes under {out}, "
          f"{sum(finished(f) for f, _ in todo)} processes already finished, backend {backend}",
          flush=True)  # fmt: skip

    def report(folder: Path, code: int) -> None:
        print(f"{folder.name}: {'done' if code == 0 else f'exit {code} (see {folder}.log)'}",
              flush=True)  # fmt: skip

    if backend == "local":
        codes = run_local(todo, jobs, report)
    else:
        codes = run_ray(todo, jobs, address, cpus, gpus, report)
    return collect(spec, out, codes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.sweep", description=__doc__)
    parser.add_argument("spec", help="the sweep's YAML spec")
    parser.add_argument("--out", required=True, help="folder of the sweep (runs/ and the CSVs)")
    parser.add_argument("--backend", default="local", help="local or ray (default: local)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time (ray: CPUs of the embedded instance; default: 1)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster instead of starting one (default: none)",
    )
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray resource request")
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="Ray resource request, a fraction allowed (default: 0)",
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        rows = sweep(spec, Path(args.out), args.backend, args.jobs, args.ray_address,
                     args.cpus_per_run, args.gpus_per_run)  # fmt: skip
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the same command resumes the sweep", file=sys.stderr)
        return 130
    done = sum(r["status"] == "finished" for r in rows)
    print(f"{done} of {len(rows)} runs finished; results in {Path(args.out) / 'results.csv'}")
    return 0 if done == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
