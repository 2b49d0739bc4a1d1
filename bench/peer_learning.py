"""Issue 18, item 6: our SAC and TQC against Stable-Baselines3's, learning side by side.

    python bench/peer_learning.py --algos tqc sac --seeds 0 1 2 3 4 --jobs 2
    python bench/peer_learning.py --table-only
    python bench/peer_learning.py --algos tqc --seeds 0 1 --sides ours --side-name ours-eps \\
        --ours-args "--set log_prob_epsilon=1e-6"          # an ablation as a third side
    python bench/peer_learning.py --algos tqc --seeds 2 3 4 --sides hybrid  # our update, SB3 loop
    python bench/peer_learning.py --algos tqc --seeds 2 3 4 --sides reverse  # SB3 update, our loop

For every (side, algo, seed), on HalfCheetah-v5:
- ours: train.py (bench/jobs.py: a finished run is skipped, an interrupted one resumed). TQC:
  configs/tqc/halfcheetah-cpu.yaml; SAC: --agent sac --arch mlp (classic SAC) with SB3's clamp
  of log sigma to [-20, 2] (peer_update_check.SB3_LOG_STD), so the settings are identical;
  TQC with --set random_steps=learning_starts, so the warm-up is SB3's: uniform-random actions
  until learning_starts. log pi stays our exact form (SB3 approximates it; --ours-args
  "--set log_prob_epsilon=1e-6" is the ablation).
- sb3: SB3's SAC / sb3-contrib's TQC with the same hyperparameters
  (bench/peer_update_check.py sb3_kwargs), in its own process (this script, --sb3-run). It
  saves the model, replay buffer and RNG states at every evaluation and resumes from the last
  one when restarted (not bit-identical to an uninterrupted run: the episode restarts); a
  finished run (summary.json with "finished") is skipped. Its replay buffer holds --steps
  transitions (ours 1M): the same while neither fills.
- hybrid (not run by default): SB3's loop (warm-up, acting, replay buffer, sampling,
  evaluation) with our agent's update in place of SB3's gradient step, our weights copied
  into SB3's networks after every update. It splits a gap between the two sides: where the
  hybrid learns like sb3, the difference is in our loop; like ours, in our update.
- reverse (not run by default): the mirror, our loop (train.py) around SB3's gradient step
  (reverse_class), SB3's weights copied into our agent after every update. With the hybrid
  it makes the 2 x 2 of loop and update.
Both evaluate every --eval-every env steps with --eval-episodes deterministic episodes from the
same starts (harness.evaluation.evaluate_policy, episode k from reset(seed + 100000 + k), as
train.py does). Every finished run becomes a row of the CSV (key: side, algo, seed; one column
per evaluation step); the markdown table gives per side and algo the final return (mean +- std
over seeds) and every seed's curve, each of our sides against SB3's (difference of the means
with a bootstrap interval and an exact permutation p, final return and the mean of the last
3 evaluations, and the runs stuck low), then the aggregates (bench/jobs.py Aggregates) of the
final return as a D4RL-normalized score over the seeds (one task), with stratified-bootstrap
intervals; their performance profiles go to docs/peer-learning-profiles.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import (  # noqa: E402
    D4RL_NORMALIZATION,
    REPO,
    Aggregates,
    RunRecord,
    d4rl_fraction,
    finished_summary,
    mean_std,
    publish,
    say_ended,
    scalars,
    seeds_of,
    start_study,
    train_or_resume,
)

ALGOS = ("tqc", "sac")
SIDES = ("ours", "sb3", "hybrid", "reverse")
BASE_FIELDS = ["side", "algo", "seed", "env_steps", "final_return", "best_return", "wall_time_s"]
ENV = "HalfCheetah-v5"  # peer_update_check.ENV (not imported here: it loads torch and train.py)
AGGREGATES = Aggregates(
    configuration=lambda r: f"{r['algo']} {r['side']}",
    task=lambda r: ENV,
    measures={"final eval return": lambda r: d4rl_fraction(r["final_return"], ENV)},
    normalization=D4RL_NORMALIZATION,
)


def return_field(step: int) -> str:
    return f"return_at_{step}"


def alpha_field(step: int) -> str:
    return f"alpha_at_{step}"


def record(steps: list[int]) -> RunRecord:
    """The CSV's record for these evaluation steps (a return and a temperature column per
    step; rows from before the temperature was recorded leave its columns empty)."""
    steps = sorted(set(steps))
    fields = BASE_FIELDS + [return_field(s) for s in steps] + [alpha_field(s) for s in steps]
    return RunRecord(fields, ("side", "algo", "seed"), ints=("seed", "env_steps"),
                     what="a peer-learning")  # fmt: skip


def csv_steps(path: Path) -> list[int]:
    """Evaluation steps that have a column in the CSV at `path` (none if it does not exist)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    prefix = return_field(0)[:-1]
    return [int(h[len(prefix) :]) for h in header if h.startswith(prefix)]


def row(summary: dict, side: str, algo: str, seed: int,
        alphas: list[tuple[int, float]] | None = None) -> dict:  # fmt: skip
    """A finished run's line of the record, from its summary (train.py's or --sb3-run's).
    The temperature at each evaluation: --sb3-run records it with the evaluation; for a run of
    train.py pass `alphas`, its logged (step, alpha), and each evaluation gets the last value
    logged at or before its step."""
    evals = summary["evals"]
    at = {e["env_steps"]: e.get("alpha") for e in evals}
    for step in at if alphas else ():
        logged = [a for s, a in alphas if s <= step]
        at[step] = logged[-1] if logged else None
    return {
        "side": side, "algo": algo, "seed": seed, "env_steps": summary["env_steps"],
        "final_return": evals[-1]["return_mean"],
        "best_return": max(e["return_mean"] for e in evals),
        "wall_time_s": summary.get("wall_time_s"),
        **{return_field(e["env_steps"]): e["return_mean"] for e in evals},
        **{alpha_field(step): alpha for step, alpha in at.items()},
    }  # fmt: skip


def eval_steps(rows: list[dict]) -> list[int]:
    prefix = return_field(0)[:-1]
    return sorted({int(k[len(prefix):]) for r in rows for k, v in r.items()
                   if k.startswith(prefix) and v is not None})  # fmt: skip


def table(rows: list[dict], command: str) -> str:
    steps = eval_steps(rows)
    groups = sorted({(r["algo"], r["side"]) for r in rows},
                    key=lambda g: (ALGOS.index(g[0]) if g[0] in ALGOS else 99, g[1]))  # fmt: skip
    lines = [
        "# Ours vs Stable-Baselines3 on HalfCheetah-v5 (issue 18, item 6)", "",
        "Produced by (bench/peer_learning.py; the update itself is compared tensor by tensor "
        "in docs/peer-parity.md):", "", f"    {command}", "",
        "Deterministic evaluations (train.py's --eval-episodes; 10 unless the command says "
        "otherwise) from the same start states on both sides; std over seeds is the population "
        "std.", "",
        "| algo | side | seeds | env steps | final eval return | best eval return |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for algo, side in groups:
        group = seeds_of(rows, algo=algo, side=side)
        env_steps = ", ".join(sorted({f"{r['env_steps']:,}" for r in group}))
        lines.append(
            f"| {algo} | {side} | {', '.join(str(r['seed']) for r in group)} | {env_steps} | "
            f"{mean_std([r['final_return'] for r in group])} | "
            f"{mean_std([r['best_return'] for r in group])} |"
        )
    lines += ["", "Each seed's curve (eval return at each env step), then the side's mean over "
              "the seeds that reached that step:", "",
              "| algo | side | seed | " + " | ".join(f"{s:,}" for s in steps) + " |",
              "|---|---|---|" + "---|" * len(steps)]  # fmt: skip
    for algo, side in groups:
        group = seeds_of(rows, algo=algo, side=side)
        columns = [[r.get(return_field(s)) for s in steps] for r in group]
        for r, cells in zip(group, columns):
            text = " | ".join("" if c is None else f"{c:.1f}" for c in cells)
            lines.append(f"| {algo} | {side} | {r['seed']} | {text} |")
        if len(group) > 1:
            means = [[c for c in col if c is not None] for col in zip(*columns)]
            text = " | ".join(f"{np.mean(m):.1f}" if m else "" for m in means)
            lines.append(f"| {algo} | {side} | mean | {text} |")
    return "\n".join(lines + alpha_table(rows, groups, steps) + comparison(rows, steps)) + (
        "\n" + AGGREGATES.markdown(rows)
    )


def alpha_table(rows: list[dict], groups: list[tuple[str, str]], steps: list[int]) -> list[str]:
    """The temperature at each evaluation, for the runs that recorded it."""
    kept = [r for g in groups for r in seeds_of(rows, algo=g[0], side=g[1])
            if any(r.get(alpha_field(s)) is not None for s in steps)]  # fmt: skip
    if not kept:
        return []
    lines = ["", "Each seed's temperature alpha at each evaluation (runs that recorded it):", "",
             "| algo | side | seed | " + " | ".join(f"{s:,}" for s in steps) + " |",
             "|---|---|---|" + "---|" * len(steps)]  # fmt: skip
    for r in kept:
        cells = [r.get(alpha_field(s)) for s in steps]
        text = " | ".join("" if c is None else f"{c:.4f}" for c in cells)
        lines.append(f"| {r['algo']} | {r['side']} | {r['seed']} | {text} |")
    return lines


def difference(ours: list[float], theirs: list[float], reps: int = 10_000,
               seed: int = 0) -> tuple[float, float, float]:  # fmt: skip
    """mean(ours) - mean(theirs), and the 95% percentile interval of that difference over
    `reps` bootstrap draws (each side's seeds resampled with replacement, within the side)."""
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.choice(a, (reps, a.size)).mean(1) - rng.choice(b, (reps, b.size)).mean(1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(a.mean() - b.mean()), float(low), float(high)


def permutation_p(ours: list[float], theirs: list[float]) -> float:
    """Exact two-sided permutation p-value of the difference of means: the fraction of all
    ways to split the pooled runs into groups of these sizes whose difference is at least as
    far from 0 as the observed one. With 3 seeds a side the bootstrap interval above can only
    resample 3 values and is too narrow; this test is exact at any size (3 vs 3: the smallest
    possible p is 2/20 = 0.1)."""
    import itertools

    pooled = np.asarray([*ours, *theirs], dtype=float)
    n, total = len(ours), pooled.sum()
    observed = abs(np.mean(ours) - np.mean(theirs))
    splits = list(itertools.combinations(range(len(pooled)), n))
    far = 0
    for idx in splits:
        a = pooled[list(idx)].sum()
        far += abs(a / n - (total - a) / len(theirs)) >= observed - 1e-9 * (1 + observed)
    return far / len(splits)


def evals_mean(r: dict, steps: list[int], k: int | None = 3) -> float | None:
    """The mean of a run's last k evaluations (less noisy than the final one alone); k None:
    of all of them, the area under the learning curve over its length, which needs the run to
    have every evaluation in `steps`."""
    cells = [r.get(return_field(s)) for s in steps]
    cells = [c for c in cells if c is not None]
    k = len(steps) if k is None else k
    return float(np.mean(cells[-k:])) if len(cells) >= k else None


def comparison(rows: list[dict], steps: list[int]) -> list[str]:
    """Per algorithm, each of our sides (ours, and ablations such as ours-eps) against SB3's:
    each side's mean, the difference with a bootstrap interval, and how many runs of each
    ended below half the median final return of all the algorithm's runs on the two sides (a
    run stuck in a poor gait, as the reviewer's seed 0 was)."""
    lines = ["", "## Against SB3", "",
             "Differences of the means over seeds, with 95% percentile intervals of a bootstrap "
             "that resamples each side's seeds (10,000 draws, seed 0). Stuck: final return below "
             "half the median final return of both sides' runs of that algorithm. p: exact "
             "two-sided permutation test of the difference of means (permutation_p; with few "
             "seeds the bootstrap interval is too narrow, the p-value is not).", "",
             "| algo | side | measure | side (runs) | sb3 (runs) | side - sb3 [95% CI] | p "
             "| stuck: side, sb3 |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    measures = [
        ("final eval return", lambda r: r["final_return"]),
        ("mean of the last 3 evaluations", lambda r: evals_mean(r, steps)),
        ("mean of every evaluation", lambda r: evals_mean(r, steps, None)),
    ]
    found = False
    for algo in ALGOS:
        theirs = seeds_of(rows, algo=algo, side="sb3")
        if not theirs:
            continue
        for side in sorted({r["side"] for r in rows if r["algo"] == algo} - {"sb3"}):
            ours = seeds_of(rows, algo=algo, side=side)
            half = 0.5 * float(np.median([r["final_return"] for r in ours + theirs]))
            stuck = [sum(r["final_return"] < half for r in runs) for runs in (ours, theirs)]
            for name, measure in measures:
                a = [v for v in map(measure, ours) if v is not None]
                b = [v for v in map(measure, theirs) if v is not None]
                if not a or not b:
                    continue
                found = True
                diff, low, high = difference(a, b)
                lines.append(
                    f"| {algo} | {side} | {name} | {np.mean(a):.1f} ({len(a)}) | "
                    f"{np.mean(b):.1f} ({len(b)}) | {diff:+.1f} [{low:+.1f}, {high:+.1f}] | "
                    f"{permutation_p(a, b):.3g} | "
                    f"{stuck[0]} of {len(ours)}, {stuck[1]} of {len(theirs)} |"
                )
    return lines if found else []


# ---- ours -----------------------------------------------------------------------------------
def our_args(algo: str, seed: int, steps: int, eval_every: int, episodes: int,
             extra: list[str]) -> list[str]:  # fmt: skip
    """train.py arguments: the algorithm's settings, SB3's warm-up, the bench's schedule."""
    import peer_update_check as check

    _, cfg = check.our_config(algo)
    # TQC's preset lets the untrained policy collect (random_steps 0); SAC acts at random for
    # all of learning_starts already.
    warmup = (
        ["--set", f"random_steps={cfg.learning_starts}"] if hasattr(cfg, "random_steps") else []
    )
    log_std = check.SB3_LOG_STD if algo == "sac" else []  # TQC's preset clamps as SB3 does
    return [*check.OUR_ARGS[algo], *log_std, "--seed", str(seed), "--total-steps", str(steps),
            "--eval-every", str(eval_every), "--eval-episodes", str(episodes),
            "--device", "cpu", "--threads", "1", *warmup, *extra]  # fmt: skip


# ---- SB3 ------------------------------------------------------------------------------------
def sb3_summary(folder: Path) -> dict | None:
    path = folder / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("finished") else None


def hybrid_class(algo: str, agent):
    """SB3's SAC / sb3-contrib's TQC whose gradient steps are our agent's updates: SB3's loop
    (warm-up, acting, replay buffer, sampling) around our update. After each train() call our
    weights go into SB3's networks (peer_update_check.copy_weights), so SB3 acts with them."""
    import peer_update_check as check
    import torch

    from agents.buffer import Batch

    class Hybrid(check.sb3_class(algo)):
        def train(self, gradient_steps: int, batch_size: int = 64) -> None:
            for _ in range(gradient_steps):
                data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
                rewards = data.rewards.reshape(-1).float()
                agent.update(Batch(  # SB3 stores float64 observations; its networks cast too
                    obs=data.observations.float(), actions=data.actions.float(),
                    rewards=rewards, next_obs=data.next_observations.float(),
                    # SB3's dones are already 0 for time-limit cuts (handle_timeout_termination)
                    terminated=data.dones.reshape(-1).float(), truncated=torch.zeros_like(rewards),
                    discounts=torch.full_like(rewards, self.gamma), extras={}, indices=None,
                ))  # fmt: skip
            self._n_updates += gradient_steps
            check.copy_weights(agent, self)

    return Hybrid


def reverse_class(algo: str):
    """Our agent whose gradient step is SB3's SAC / sb3-contrib's TQC train(): our loop
    (train.py's Trainer: warm-up, acting, replay buffer, sampling, evaluation, checkpoints)
    around SB3's update, the mirror of hybrid_class. Each batch our buffer draws goes to SB3's
    train() in place of its replay sample; SB3's weights come back into ours after every update,
    so our agent acts, evaluates and checkpoints with them. Our optimizers never step."""
    import peer_update_check as check
    import torch
    from stable_baselines3.common.logger import Logger

    from agents import get_agent_module
    from envs import make_env

    class Reverse(get_agent_module(algo).Agent):
        def __init__(self, cfg, observation_space, action_space, device):
            super().__init__(cfg, observation_space, action_space, device)
            kwargs = check.sb3_kwargs(algo, cfg, self.action_dim, seed=0)
            # No seed: SB3 would re-seed the global RNGs the Trainer seeded. SB3 never collects
            # here, so its own replay buffer stays a stub.
            kwargs.update(seed=None, buffer_size=1)
            self.sb3 = check.sb3_class(algo)("MlpPolicy", make_env(check.ENV), **kwargs)
            self.sb3.set_logger(Logger(folder=None, output_formats=[]))
            check.copy_weights(self, self.sb3)  # SB3 starts from our initial weights

        def update(self, batch):
            samples = check.sb3_samples(batch)
            self.sb3.replay_buffer.sample = lambda *args, **kwargs: samples
            self.sb3.train(gradient_steps=1, batch_size=self.cfg.batch_size)
            with torch.no_grad():
                for _, ours, theirs, layout in check.paired_parameters(self, self.sb3):
                    ours.copy_(layout(theirs))
            self.updates += 1
            logged = self.sb3.logger.name_to_value
            return {"loss/critic": torch.tensor(logged["train/critic_loss"]),
                    "loss/actor": torch.tensor(logged["train/actor_loss"]),
                    "policy/alpha": self.temperature.alpha()}  # fmt: skip

        def sb3_optimizers(self) -> dict:
            opts = {"actor": self.sb3.actor.optimizer, "critic": self.sb3.critic.optimizer}
            return opts | {"temperature": self.sb3.ent_coef_optimizer}

        def state_dict(self) -> dict:  # SB3's weights are ours; its Adam states are its own
            sb3 = {name: opt.state_dict() for name, opt in self.sb3_optimizers().items()}
            return {**super().state_dict(), "sb3_optimizers": sb3}

        def load_state_dict(self, state: dict) -> None:
            super().load_state_dict(state)
            with torch.no_grad():
                check.copy_weights(self, self.sb3)
            for name, opt in self.sb3_optimizers().items():
                opt.load_state_dict(state["sb3_optimizers"][name])

    return Reverse


def reverse_train(algo: str, argv: list[str]) -> int:
    """train.py `argv` with the Trainer's agent replaced by reverse_class(algo)."""
    from unittest import mock

    import train
    from agents import get_agent_module

    real = get_agent_module(algo)

    class Module:  # the agent module, but its Agent is the reverse class
        Agent = reverse_class(algo)

        def __getattr__(self, name):
            return getattr(real, name)

    with mock.patch("training.trainer.get_agent_module", lambda name: Module()):
        return train.main(argv)


def sb3_run(algo: str, seed: int, folder: Path, steps: int, eval_every: int, episodes: int,
            hybrid: bool = False) -> int:  # fmt: skip
    """One SB3 run, evaluated and checkpointed every `eval_every` steps; resumes from the last
    checkpoint in `folder`. `hybrid`: SB3's loop around our agent's update (hybrid_class),
    our agent initialised under torch seed `seed` and saved beside SB3's model."""
    import peer_update_check as check
    import torch

    import training
    from agents import get_agent_module
    from core.runs import atomic_write_text
    from envs import make_env
    from harness.evaluation import evaluate_policy

    if sb3_summary(folder) is not None:
        return 0
    torch.set_num_threads(1)
    folder.mkdir(parents=True, exist_ok=True)
    _, cfg = check.our_config(algo, sb3_log_std=False)
    env, eval_env = make_env(check.ENV), make_env(check.ENV)
    cls, agent = check.sb3_class(algo), None
    if hybrid:  # our agent exactly as the ours side configures it (SAC with SB3's clamp)
        _, ours_cfg = check.our_config(algo)
        torch.manual_seed(seed)
        agent = get_agent_module(algo).Agent(ours_cfg, env.observation_space,
                                             env.action_space, "cpu")  # fmt: skip
        cls = hybrid_class(algo, agent)
    files = ("model.zip", "replay.pkl", "rng.pt", "agent.pt")
    model_file, replay_file, rng_file, agent_file = (folder / n for n in files)
    progress_file = folder / "progress.json"
    if model_file.is_file() and progress_file.is_file():
        model = cls.load(model_file, env=env, device="cpu")
        model.load_replay_buffer(replay_file)
        if agent is not None:
            agent.load_state_dict(torch.load(agent_file, weights_only=False))
            check.copy_weights(agent, model)
        progress = json.loads(progress_file.read_text())
        rng = torch.load(rng_file, weights_only=False)
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        progress["resumes"] += 1
    else:
        kwargs = check.sb3_kwargs(algo, cfg, int(np.prod(env.action_space.shape)), seed)
        kwargs["buffer_size"] = min(kwargs["buffer_size"], steps)
        model = cls("MlpPolicy", env, **kwargs)
        if agent is not None:
            check.copy_weights(agent, model)  # SB3 acts with our initial weights
        progress = {"evals": [], "wall_time_s": 0.0, "resumes": 0}

    class Actor:  # harness.evaluation's view of the SB3 policy
        def act(self, obs, deterministic):
            return model.predict(obs, deterministic=deterministic)[0]

    while model.num_timesteps < steps:
        start = time.perf_counter()
        mark = min((model.num_timesteps // eval_every + 1) * eval_every, steps)
        model.learn(mark - model.num_timesteps, reset_num_timesteps=False)
        result = evaluate_policy(Actor(), eval_env, episodes, seed + training.EVAL_SEED_OFFSET)
        log_alpha = getattr(model, "log_ent_coef", None)  # the temperature, for diagnosis
        progress["evals"].append({"env_steps": model.num_timesteps,
                                  "return_mean": result["return_mean"],
                                  "return_std": result["return_std"],
                                  "alpha": None if log_alpha is None else
                                  float(log_alpha.detach().exp().item())})  # fmt: skip
        progress["wall_time_s"] += time.perf_counter() - start
        print(f"step {model.num_timesteps}: eval return {result['return_mean']:.1f}", flush=True)
        model.save(model_file)
        model.save_replay_buffer(replay_file)
        if agent is not None:
            torch.save(agent.state_dict(), agent_file)
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
               "python": random.getstate()}  # fmt: skip
        torch.save(rng, rng_file)
        atomic_write_text(progress_file, json.dumps(progress))
    summary = {"finished": True, "algo": algo, "seed": seed, "env_steps": model.num_timesteps,
               "eval_return_mean": progress["evals"][-1]["return_mean"], **progress}  # fmt: skip
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=1))
    replay_file.unlink(missing_ok=True)  # the run is finished: the buffer is not needed again
    return 0


def sb3_job(algo: str, seed: int, folder: Path, args, hybrid: bool = False) -> int:
    """This script's --sb3-run (--hybrid) in its own process, its log beside the folder."""
    if sb3_summary(folder) is not None:
        return 0
    folder.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(Path(__file__).resolve()), "--sb3-run", algo, str(seed),
            str(folder), "--steps", str(args.steps), "--eval-every", str(args.eval_every),
            "--eval-episodes", str(args.eval_episodes)]  # fmt: skip
    argv += ["--hybrid"] if hybrid else []
    with open(f"{folder}.log", "a") as log:
        return subprocess.call(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


# ---- the bench ------------------------------------------------------------------------------
def run_dir(out: Path, side: str, algo: str, seed: int) -> Path:
    return out / f"{side}-{algo}-s{seed}"


def main() -> int:
    if sys.argv[1:2] == ["--reverse-train"]:  # internal: train.py's arguments follow ALGO
        return reverse_train(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=["ours", "sb3"])
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per run")
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--out", default="bench/out/peer", help="folder of the run folders")
    parser.add_argument("--csv", default="docs/peer-learning.csv", help="per-run record")
    parser.add_argument("--table", default="docs/peer-learning.md")
    parser.add_argument("--profiles", default="docs/peer-learning-profiles.png")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--ours-args", default="", help="extra train.py arguments, one string")
    parser.add_argument("--side-name", default="ours", help="our side's name in the record")
    parser.add_argument("--sb3-run", nargs=3, metavar=("ALGO", "SEED", "FOLDER"),
                        help="internal: one SB3 run")  # fmt: skip
    parser.add_argument("--hybrid", action="store_true", help="internal: --sb3-run, our update")
    args = parser.parse_args()
    if args.sb3_run:
        algo, seed, folder = args.sb3_run
        return sb3_run(algo, int(seed), Path(folder), args.steps, args.eval_every,
                       args.eval_episodes, args.hybrid)  # fmt: skip
    out = REPO / args.out
    names = {"ours": args.side_name, "sb3": "sb3", "hybrid": "hybrid", "reverse": "reverse"}
    grid = [(side, algo, seed) for seed in args.seeds for algo in args.algos for side in args.sides]
    csv_path, table_path = REPO / args.csv, REPO / args.table
    outputs = [("--csv", csv_path), ("--table", table_path), ("--profiles", REPO / args.profiles)]
    # the record's columns are the CSV's evaluation steps: read with them, a damaged row stops it
    if start_study(out, args.table_only, outputs, record(csv_steps(csv_path)), csv_path):
        return 2  # before any run, and before anything is written

    def finished_row(side: str, algo: str, seed: int) -> dict | None:
        folder = run_dir(out, names[side], algo, seed)
        ours_loop = side in ("ours", "reverse")
        summary = finished_summary(folder) if ours_loop else sb3_summary(folder)
        if summary is None:
            return None
        alphas = scalars(folder, "policy/alpha") if ours_loop else None
        return row(summary, names[side], algo, seed, alphas)

    if not args.table_only:
        extra = shlex.split(args.ours_args)

        def job(side: str, algo: str, seed: int) -> int:
            folder = run_dir(out, names[side], algo, seed)
            if side in ("sb3", "hybrid"):
                return sb3_job(algo, seed, folder, args, hybrid=side == "hybrid")
            argv = our_args(algo, seed, args.steps, args.eval_every, args.eval_episodes, extra)
            if side == "ours":
                return train_or_resume(folder, argv)
            script = [str(Path(__file__).resolve()), "--reverse-train", algo]
            return train_or_resume(folder, argv, script)

        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(job, *g): g for g in grid}
            for future in as_completed(futures):  # each run's row into the record as it ends
                code, (side, algo, seed) = future.result(), futures[future]
                say_ended(run_dir(out, names[side], algo, seed), code)
                new = finished_row(side, algo, seed) if code == 0 else None
                if new is not None:
                    rec = record(csv_steps(csv_path) + eval_steps([new]))
                    rec.write(csv_path, rec.merge(rec.read(csv_path), [new]))
    finished = [r for r in (finished_row(*g) for g in grid) if r is not None]
    rec = record(csv_steps(csv_path) + eval_steps(finished))
    command = "python bench/peer_learning.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    code = publish(rec, csv_path, finished, lambda rows: table(rows, command), table_path)
    if code == 0:
        AGGREGATES.plot(rec.read(csv_path), REPO / args.profiles,
                        "HalfCheetah-v5 final eval return (bench/peer_learning.py)")  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
