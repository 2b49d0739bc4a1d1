"""Train any agent of the zoo: one loop, online (environment) or offline (dataset) data.

    python train.py --agent td3 --env Pendulum-v1 --seed 0 --total-steps 20000 \
        --set learning_starts=1000                   # TD3's paper warm-up is 25k steps
    python train.py --agent td3_bc --dataset hopper-medium-v5 --total-steps 300000
    python train.py --config configs/td3/hopper.yaml --run-dir runs/hopper-s0
    python train.py --config configs/td3/hopper.yaml --set actor_lr=1e-4 --set policy_delay=3
    python train.py --resume runs/hopper-s0            # continue a killed or interrupted run
    python train.py --agent td3 --show-config          # every hyperparameter, default and meaning

Precedence: dataclass defaults < --config preset < command-line flags and --set overrides.
Data flows one way: envs -> buffer -> agent.update -> metrics -> this file's logger.
Offline (--dataset), the dataset fills the buffer, the loop's clock is the gradient update,
and the env is used only to evaluate.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import get_agent_module
from agents.buffer import ReplayBuffer
from agents.nets import resolve_device, seed_everything
from core import config as cfglib
from core import stop
from core.domains import check_domains, first_nonfinite
from core.errors import UserError
from core.runs import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    check_spaces,
    load_checkpoint,
    space_signature,
    write_json,
    write_yaml,
)
from datagen import load_dataset  # reads a dataset, making a missing ogzoo one on first use
from envs import VecEnv, can_terminate, check_env_id, make_env, random_actions, sim_state_dim
from envs.datasets.dataset import check_against_env
from envs.datasets.loading import dataset_env_id
from envs.datasets.scores import d4rl_normalized_score, normalized_score
from envs.datasets.weighting import SAMPLERS, sampling_stats, transition_probabilities
from harness.bias import BiasMeter, start_states, states_from_buffer
from harness.evaluation import evaluate_policy

EVAL_SEED_OFFSET = 100_000
RUN_FLAGS = [f.name for f in dataclasses.fields(cfglib.RunConfig)]
DIVERGED_EXIT = 3  # exit code of a run stopped because its losses or weights became non-finite


class Diverged(UserError):
    """Losses or weights became NaN or infinite; no checkpoint is written from that state."""


class Finished(Exception):
    """--resume of a run that already finished, with no larger budget: nothing to do."""


# ---- command line -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    defaults = cfglib.RunConfig()
    docs = cfglib.field_docs(cfglib.RunConfig)
    parser = argparse.ArgumentParser(
        description="Train an ogzoo agent. Flags override the --config preset, which "
        "overrides the dataclass defaults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Agent hyperparameters: --set KEY=VALUE (repeatable, YAML values, e.g. "
        "--set critic_hidden=[400,300]); list them with --show-config.",
    )
    for name in RUN_FLAGS:
        default = getattr(defaults, name)
        flag, help_text = "--" + name.replace("_", "-"), f"{docs[name]} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_const", const=True, help=help_text)
            continue
        kind = {int: int, float: float, str: str}[type(default)]
        parser.add_argument(flag, type=kind, default=None, help=help_text)
    parser.add_argument("--config", default=None, help="YAML preset (default: none)")
    parser.add_argument(
        "--arch",
        default=None,
        help="network architecture, mlp or simba; the agent's defaults for that architecture "
        "apply (same as --set arch=NAME; default: the agent's own)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an agent hyperparameter (repeatable; default: none)",
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        help="run folder to create (default: runs/<agent>-<env>-s<seed>-<time>); "
        "must not already hold a run",
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint; only --total-steps, "
        "--device and --threads may be given with it (default: none)",
    )
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print the agent's hyperparameters with defaults and exit (default: off)",
    )
    parser.add_argument(
        "--progress",
        choices=["auto", "on", "off"],
        default="auto",
        help="progress bar: auto shows it on a terminal (default: auto)",
    )
    return parser


def resolve_config(args: argparse.Namespace) -> tuple[cfglib.RunConfig, Any]:
    """(RunConfig, agent Config) from defaults < architecture defaults < preset < flags.

    Touches no files but the preset."""
    preset = cfglib.load_yaml(args.config) if args.config else {}
    agent_overrides = preset.pop("agent_config", None) or {}
    if not isinstance(agent_overrides, dict):
        raise UserError(f"{args.config}: 'agent_config' must be a mapping")
    agent_overrides = {**agent_overrides, **cfglib.parse_set(args.set)}
    if args.arch is not None:
        agent_overrides["arch"] = args.arch
    flags = {k: getattr(args, k) for k in RUN_FLAGS if getattr(args, k) is not None}

    def run_config(base: dict) -> cfglib.RunConfig:  # base < preset < flags, each checked
        run_cfg = cfglib.apply_overrides(cfglib.RunConfig(), base, "run config")
        run_cfg = cfglib.apply_overrides(run_cfg, preset, "run config")
        return cfglib.apply_overrides(run_cfg, flags, "run config")

    plain = run_config({})
    module = agent_module(plain.agent)
    arch_run, arch_agent = arch_defaults(module, agent_overrides, plain.env)
    run_cfg = run_config(arch_run)
    if run_cfg.dataset and "env" not in flags and "env" not in preset:
        run_cfg.env = ""  # the dataset's own env, filled in when the dataset is read
    what = f"{run_cfg.agent} config"
    agent_cfg = cfglib.apply_overrides(module.Config(), arch_agent, what)
    agent_cfg = cfglib.apply_overrides(agent_cfg, agent_overrides, what)
    validate(run_cfg)
    check_domains(agent_cfg, what)
    if getattr(module, "OFFLINE", False) and not run_cfg.dataset:
        raise UserError(f"{run_cfg.agent} learns from a dataset: give --dataset NAME_OR_PATH")
    return run_cfg, agent_cfg


def arch_defaults(module, agent_overrides: dict, env_id: str) -> tuple[dict, dict]:
    """(run, agent) defaults the agent pairs with the chosen architecture (its ARCH_DEFAULTS;
    e.g. SAC: SimBa's UTD 2, or classic SAC's sizes and learning rates for mlp), with the
    entry's `non_episodic` agent settings on a task that cannot terminate (SimBa: one critic)."""
    table = getattr(module, "ARCH_DEFAULTS", {})
    arch = agent_overrides.get("arch", getattr(module.Config(), "arch", None))
    entry = table.get(arch, {}) if isinstance(arch, str) else {}
    agent = dict(entry.get("agent", {}))
    if env_id and not can_terminate(env_id):
        agent.update(entry.get("non_episodic", {}))
    return entry.get("run", {}), agent


def agent_module(name: str):
    try:
        return get_agent_module(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def write_run_config(run_dir: Path, run_cfg: cfglib.RunConfig, agent_cfg: Any) -> None:
    config = {**cfglib.to_dict(run_cfg), "agent_config": cfglib.to_dict(agent_cfg)}
    write_yaml(run_dir / "config.yaml", config)


def validate(run_cfg: cfglib.RunConfig) -> None:
    check_domains(run_cfg, "run config")
    try:
        if run_cfg.env or not run_cfg.dataset:  # offline, "" = the dataset's env
            check_env_id(run_cfg.env)
        resolve_device(run_cfg.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if run_cfg.precision not in ("fp32", "bf16"):
        raise UserError(f"precision must be fp32 or bf16, got '{run_cfg.precision}'")
    if run_cfg.bins < 0 or run_cfg.bins == 1:
        raise UserError(f"bins must be 0 (continuous) or >= 2, got {run_cfg.bins}")
    if run_cfg.sampler not in SAMPLERS:
        raise UserError(f"unknown sampler '{run_cfg.sampler}' (known: {', '.join(SAMPLERS)})")
    if run_cfg.sampler != "uniform" and not run_cfg.dataset:
        raise UserError(f"--sampler {run_cfg.sampler} weights a dataset's trajectories: "
                        "it needs --dataset")  # fmt: skip


def scalar_tags(prefix: str, result: dict) -> list[tuple[str, float]]:
    """(tag, number) for every number in a nested result: {"a": 1, "b": {"c": 2}} under
    "bias" gives bias/a and bias/b/c (flags and text are not scalars). The `estimates` level
    is left out of tags: bias/min/bias_mean, bias/deterministic/min/bias_mean."""
    tags = []
    for key, value in result.items():
        if isinstance(value, dict):
            tags += scalar_tags(prefix if key == "estimates" else f"{prefix}/{key}", value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            tags.append((f"{prefix}/{key}", value))
    return tags


# ---- the run ------------------------------------------------------------------------------
class Trainer:
    """Owns the envs, buffer, agent, counters and logging of one run folder (online)."""

    clock = "env_steps"  # what total_steps and the *_every intervals count

    def __init__(self, run_cfg: cfglib.RunConfig, agent_cfg: Any, run_dir: Path, progress: str):
        self.run_cfg, self.agent_cfg, self.run_dir = run_cfg, agent_cfg, run_dir
        self.progress_mode = progress
        torch.set_num_threads(run_cfg.threads)
        seed_everything(run_cfg.seed)
        self.device = resolve_device(run_cfg.device)
        self.module = get_agent_module(run_cfg.agent)

        obs_space, act_space = self.open_data()
        self.eval_env = make_env(run_cfg.env, bins=run_cfg.bins)
        self.spaces = space_signature(obs_space, act_space)
        try:
            self.agent = self.module.Agent(agent_cfg, obs_space, act_space, self.device)
        except ValueError as exc:
            raise UserError(f"{run_cfg.agent} on {run_cfg.env}: {exc}") from None
        self.build_buffer(obs_space, act_space)
        self.autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=run_cfg.precision == "bf16"
        )
        self.rng = np.random.default_rng(run_cfg.seed)  # warm-up random actions
        self.counters = {
            "env_steps": 0,
            "gradient_updates": 0,
            "episodes": 0,
            "update_credit": 0.0,
            "wall_time_s": 0.0,
            "bias_time_s": 0.0,
            "resumes": 0,
        }
        self.evals: list[dict] = []
        self.biases: list[dict] = []
        self.bias_meter = BiasMeter(
            lambda limit: make_env(run_cfg.env, max_episode_steps=limit, bins=run_cfg.bins),
            agent_cfg.gamma,
            rollouts=run_cfg.bias_rollouts,
        )
        self.last_metrics: dict[str, torch.Tensor] = {}
        self.saved_at: int | None = None  # the clock at the last checkpoint written

    def open_data(self):
        """The training envs; returns (observation space, action space)."""
        run_cfg = self.run_cfg
        try:
            self.envs = VecEnv(run_cfg.env, run_cfg.num_envs, run_cfg.seed, run_cfg.bins)
        except ValueError as exc:  # e.g. --bins on an env without a Box action space
            raise UserError(f"{run_cfg.env}: {exc}") from None
        return self.envs.observation_space, self.envs.action_space

    def fit(self) -> None:
        """Models of the data fitted before training (offline agents; nothing online)."""

    def build_buffer(self, obs_space, act_space) -> None:
        run_cfg, agent_cfg = self.run_cfg, self.agent_cfg
        state_dim = sim_state_dim(self.envs.envs[0])
        # MuJoCo states ride along with each transition so the harness can restore them.
        self.store_sim_state = state_dim > 0
        extras = {"sim_state": ((state_dim,), torch.float64)} if state_dim else None
        discrete = not np.issubdtype(act_space.dtype, np.floating)
        self.buffer = ReplayBuffer(
            agent_cfg.buffer_size,
            obs_space.shape,
            act_space.shape,
            num_envs=run_cfg.num_envs,
            obs_dtype=torch.uint8 if obs_space.dtype == np.uint8 else torch.float32,
            action_dtype=torch.int64 if discrete else torch.float32,
            extras=extras,
            seed=run_cfg.seed,
        )
        self.n_step = getattr(agent_cfg, "n_step", 1)

    # ---- checkpoints ----------------------------------------------------------------------
    def checkpoint(self, replay_file: str | None) -> dict:
        """Everything needed to resume (with the replay file) or to act (without)."""
        np_state = np.random.get_state()
        rng = {
            "python": random.getstate(),
            # Plain lists, so the checkpoint loads with torch.load(weights_only=True).
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "torch": torch.get_rng_state(),
            "loop": self.rng.bit_generator.state,
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "agent": self.run_cfg.agent,
            "env": self.run_cfg.env,
            "run_config": cfglib.to_dict(self.run_cfg),
            "agent_config": cfglib.to_dict(self.agent_cfg),
            "spaces": self.spaces,
            "agent_state": self.agent.state_dict(),
            "counters": dict(self.counters),
            "evals": list(self.evals),
            "biases": list(self.biases),
            "rng": rng,
        }
        if replay_file is not None:
            ckpt["replay_file"] = replay_file
        return ckpt

    def save(self, name: str = "latest.pt") -> None:
        """latest.pt (and `name`) with the replay buffer; never from a non-finite state, and a
        write that fails (a full disk, a folder made read-only) leaves the previous checkpoint
        in place and says which file could not be written."""
        self.check_finite()
        ckpt_dir = self.run_dir / "checkpoints"
        target = ckpt_dir  # what is being written, for the message if it fails
        try:
            ckpt_dir.mkdir(exist_ok=True)
            target = ckpt_dir / f"replay-{self.counters['env_steps']}.pt"
            replay_file = self.save_replay(ckpt_dir)
            ckpt = self.checkpoint(replay_file)
            for target in dict.fromkeys([ckpt_dir / "latest.pt", ckpt_dir / name]):
                atomic_torch_save(ckpt, target)
            for old in ckpt_dir.glob("replay-*.pt"):  # once the checkpoint no longer needs them
                if old.name != replay_file:
                    target = old
                    old.unlink()
        except OSError as exc:
            kept = (f"the last checkpoint (step {self.saved_at:,}) is kept" if self.saved_at
                    is not None else "no checkpoint was written before")  # fmt: skip
            raise UserError(f"cannot write {target}: {exc.strerror or exc}; {kept}") from None
        self.saved_at = self.counters[self.clock]

    def check_finite(self) -> None:
        """Diverged naming the first non-finite tensor of the agent's state (weights,
        optimizer moments, normalizer statistics), if any."""
        bad = first_nonfinite(self.agent.state_dict())
        if bad is not None:
            raise Diverged(f"training diverged by step {self.counters[self.clock]:,}: {bad} is "
                           f"not finite; {self.kept()}")  # fmt: skip

    def kept(self) -> str:
        """What a failed run leaves to resume from."""
        if self.saved_at is None:
            return "no checkpoint was written"
        return f"checkpoints/latest.pt keeps the last finite state (step {self.saved_at:,})"

    def save_replay(self, ckpt_dir: Path) -> str | None:
        """Write the replay buffer beside the checkpoints; returns its file name."""
        replay_file = f"replay-{self.counters['env_steps']}.pt"
        self.buffer.save(ckpt_dir / replay_file)
        return replay_file

    def restore(self, ckpt: dict) -> None:
        """Load a checkpoint validated by the caller; envs restart with fresh episodes."""
        check_spaces(ckpt, self.spaces, self.run_cfg.env, self.run_dir)
        self.restore_data(ckpt)
        self.agent.load_state_dict(ckpt["agent_state"])
        self.counters = dict(ckpt["counters"])
        self.saved_at = self.counters[self.clock]
        self.counters["resumes"] += 1
        self.evals = list(ckpt["evals"])
        self.biases = list(ckpt.get("biases", []))
        self.counters.setdefault("bias_time_s", 0.0)
        rng = ckpt["rng"]
        random.setstate(rng["python"])
        kind, keys, *rest = rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        torch.set_rng_state(rng["torch"])
        self.rng.bit_generator.state = rng["loop"]
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def restore_data(self, ckpt: dict) -> None:
        replay_path = self.run_dir / "checkpoints" / ckpt["replay_file"]
        try:
            self.buffer = ReplayBuffer.load(replay_path)
        except (ValueError, FileNotFoundError) as exc:
            raise UserError(str(exc)) from None
        # The interrupted episodes end at the last stored transition: a time-limit-like cut
        # that still bootstraps, and n-step walks never cross into the restarted episodes.
        self.buffer.mark_episode_ends()

    # ---- summary and logging --------------------------------------------------------------
    def summary(self) -> dict:
        last = self.evals[-1] if self.evals else None
        best = max(self.evals, key=lambda e: e["return_mean"]) if self.evals else None
        return {
            "agent": self.run_cfg.agent,
            "env": self.run_cfg.env,
            "seed": self.run_cfg.seed,
            "eval_return_mean": last["return_mean"] if last else None,
            "eval_return_std": last["return_std"] if last else None,
            "best_eval_return_mean": best["return_mean"] if best else None,
            f"best_eval_{self.clock}": best[self.clock] if best else None,
            "env_steps": self.counters["env_steps"],
            "gradient_updates": self.counters["gradient_updates"],
            "episodes": self.counters["episodes"],
            "wall_time_s": round(self.counters["wall_time_s"], 2),
            "resumes": self.counters["resumes"],
            "bias_time_s": round(self.counters.get("bias_time_s", 0.0), 2),
            # The latest value of each update metric (losses, mean Q, REValueD's target std).
            "last_update_metrics": {k: float(v) for k, v in self.last_metrics.items()},
            "evals": self.evals,
            "bias": self.biases,
        }

    def evaluate(self, writer) -> dict:
        result = evaluate_policy(
            self.agent,
            self.eval_env,
            self.run_cfg.eval_episodes,
            self.run_cfg.seed + EVAL_SEED_OFFSET,
        )
        step = self.counters[self.clock]
        entry = {
            self.clock: step,
            "return_mean": result["return_mean"],
            "return_std": result["return_std"],
            **self.scores(result["return_mean"]),
        }
        if not np.isfinite(entry["return_mean"]):
            raise Diverged(f"training diverged by step {step:,}: the evaluation return is "
                           f"{entry['return_mean']}; {self.kept()}")  # fmt: skip
        self.evals.append(entry)
        if entry["return_mean"] >= max(e["return_mean"] for e in self.evals):
            # The best policy so far, to act with (evaluate.py RUN/checkpoints/best.pt); no
            # replay buffer, so it cannot be resumed from.
            self.check_finite()
            best = self.run_dir / "checkpoints" / "best.pt"
            try:
                best.parent.mkdir(exist_ok=True)
                atomic_torch_save(self.checkpoint(None), best)
            except OSError as exc:
                raise UserError(f"cannot write {best}: {exc.strerror or exc}; "
                                f"{self.kept()}") from None  # fmt: skip
        for key, value in entry.items():
            if key != self.clock:
                writer.add_scalar(f"eval/{key}", value, step)
        writer.add_scalar("eval/length_mean", float(np.mean(result["lengths"])), step)
        write_json(self.run_dir / "summary.json", self.summary())
        return entry

    def measure_bias(self, writer) -> dict:
        """Critic estimate vs Monte-Carlo truth on replay states (harness/bias.py)."""
        start = time.perf_counter()
        step, k = self.counters[self.clock], self.run_cfg.bias_states
        seed = self.run_cfg.seed + EVAL_SEED_OFFSET + step
        if self.store_sim_state:
            states = states_from_buffer(self.buffer, k, seed)
        else:  # e.g. Pendulum: no restorable state, so fresh episode starts
            states = start_states(self.eval_env, k, seed)
        result = self.bias_meter.measure(self.agent, states)
        elapsed = time.perf_counter() - start
        self.counters["bias_time_s"] += elapsed
        entry = {self.clock: step, "seconds": round(elapsed, 3), **result}
        self.biases.append(entry)
        for tag, number in scalar_tags("bias", result):
            writer.add_scalar(tag, number, step)
        writer.add_scalar("bias/seconds", elapsed, step)
        return entry

    # ---- one iteration's pieces -----------------------------------------------------------
    def collect(self, obs: np.ndarray, writer) -> np.ndarray:
        """Act (uniformly at random during warm-up), step every env, store the transitions."""
        c, n = self.counters, self.run_cfg.num_envs
        if hasattr(self.agent, "observe"):  # e.g. SimBa's running observation statistics
            self.agent.observe(obs)
        # Random-action warm-up: `random_steps` where an agent separates it from the start of
        # updates (TQC acts with its untrained policy), else the whole `learning_starts`.
        random_steps = getattr(self.agent_cfg, "random_steps", self.agent_cfg.learning_starts)
        if c["env_steps"] < random_steps:
            actions = random_actions(self.envs.action_space, self.rng, n)
        else:
            actions = self.agent.act(obs, deterministic=False)
        states = self.buffer_extras()
        step = self.envs.step(actions)
        self.buffer.add(
            obs, actions, step.rewards, step.next_obs, step.terminated, step.truncated,
            extras=states,
        )  # fmt: skip
        c["env_steps"] += n
        for episode_return, length in step.finished:
            c["episodes"] += 1
            writer.add_scalar("train/episode_return", episode_return, c["env_steps"])
            writer.add_scalar("train/episode_length", length, c["env_steps"])
        return step.obs

    def learn(self) -> None:
        """Spend the update credit: utd gradient updates per env step, fractions carried over."""
        c, cfg = self.counters, self.agent_cfg
        if c["env_steps"] < cfg.learning_starts or len(self.buffer) < cfg.batch_size:
            return
        c["update_credit"] += self.run_cfg.utd * self.run_cfg.num_envs
        while c["update_credit"] >= 1.0:
            stop.check()  # a large utd makes this loop long; stopping between updates is safe
            self.update_once()
            c["update_credit"] -= 1.0

    def update_once(self) -> None:
        cfg = self.agent_cfg
        batch = self.buffer.sample(
            cfg.batch_size, n_step=self.n_step, gamma=cfg.gamma, device=self.device
        )
        # Merge: an update may report only some metrics (TD3's actor loss comes every
        # policy_delay updates); keep the latest of each.
        with self.autocast:
            self.last_metrics.update(self.agent.update(batch))
        self.counters["gradient_updates"] += 1

    def scores(self, return_mean: float) -> dict[str, float]:
        """Normalized scores of an evaluation (offline runs; none online)."""
        return {}

    # ---- the loop's hooks (online here; OfflineTrainer overrides them) --------------------
    def begin(self, writer) -> None:
        self.obs = self.envs.reset(self.run_cfg.seed + self.counters["resumes"] * 7919)

    def advance(self, writer) -> int:
        """One iteration; returns how far the clock moved."""
        self.obs = self.collect(self.obs, writer)
        self.learn()
        return self.run_cfg.num_envs

    def close(self) -> None:
        self.envs.close()

    def log_training(self, writer, since: tuple[float, int, int]) -> tuple[float, int, int]:
        """Losses and speeds; `since` = (time, env steps, updates) at the previous log."""
        c = self.counters
        now, step = time.perf_counter(), c[self.clock]
        dt = max(now - since[0], 1e-9)
        for key, value in self.last_metrics.items():
            value = float(value)
            if not np.isfinite(value):
                raise Diverged(f"training diverged by step {step:,}: {key} is {value}; "
                               f"{self.kept()}")  # fmt: skip
            writer.add_scalar(key, value, step)
        if self.clock == "env_steps":
            writer.add_scalar("speed/env_steps_per_s", (c["env_steps"] - since[1]) / dt, step)
        writer.add_scalar("speed/updates_per_s", (c["gradient_updates"] - since[2]) / dt, step)
        if self.clock == "env_steps":
            writer.add_scalar("speed/utd", c["gradient_updates"] / max(step, 1), step)
        return now, c["env_steps"], c["gradient_updates"]

    # ---- the loop -------------------------------------------------------------------------
    def train(self) -> None:
        """Run to total_steps, checkpointing every checkpoint_every steps or checkpoint_seconds
        of wall time. Ctrl-C or SIGTERM stops at the next safe point and saves (a second one
        while saving is ignored); exits 130 then. A diverged run raises Diverged unsaved."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        run_cfg, c = self.run_cfg, self.counters
        writer = SummaryWriter(str(self.run_dir))
        hide = {"auto": None, "on": False, "off": True}[self.progress_mode]
        bar = tqdm(
            total=run_cfg.total_steps, initial=c[self.clock], dynamic_ncols=True, disable=hide,
            unit="step" if self.clock == "env_steps" else "update",
        )  # fmt: skip
        self.started, self.wall_before = time.perf_counter(), c["wall_time_s"]
        self.begin(writer)
        if c[self.clock] < run_cfg.total_steps:
            # A finished run resumed to a larger budget is unfinished again until it ends: its
            # old final.pt would tell benches (bench/jobs.py) that it finished.
            (self.run_dir / "checkpoints" / "final.pt").unlink(missing_ok=True)
        finished = False
        try:
            # Signals only set a flag inside: the loop stops between steps, so a checkpoint
            # never holds an agent that took an update its counters did not record.
            with stop.handling():
                try:
                    self.loop(writer, bar)
                    finished = True
                except KeyboardInterrupt:
                    pass
                bar.close()
                c["wall_time_s"] = self.wall_time()
                self.save("final.pt" if finished else "latest.pt")
                write_json(self.run_dir / "summary.json", self.summary())
        finally:
            bar.close()
            writer.close()
            self.close()
        if not finished:
            print(
                f"interrupted at step {c[self.clock]}; checkpoint saved "
                f"({self.run_dir / 'checkpoints' / 'latest.pt'}). "
                f"Continue with: python train.py --resume {self.run_dir}",
                file=sys.stderr,
            )
            raise SystemExit(130)

    def wall_time(self) -> float:
        """Seconds this run has trained, over every session of it."""
        return self.wall_before + time.perf_counter() - self.started

    def loop(self, writer, bar) -> None:
        """Steps until the budget or stop_at_return; KeyboardInterrupt on a stop request."""
        run_cfg, c, clock = self.run_cfg, self.counters, self.clock

        def after(every: int) -> int:  # the next multiple of `every` past the current step
            return (c[clock] // every + 1) * every

        next_eval, next_ckpt = after(run_cfg.eval_every), after(run_cfg.checkpoint_every)
        next_log = after(run_cfg.log_every)
        next_bias = after(run_cfg.bias_every) if run_cfg.bias_every else None
        last_log = (time.perf_counter(), c["env_steps"], c["gradient_updates"])
        last_ckpt = time.perf_counter()
        while c[clock] < run_cfg.total_steps:
            stop.check()
            bar.update(self.advance(writer))
            if c[clock] >= next_log:
                next_log += run_cfg.log_every
                last_log = self.log_training(writer, last_log)
            reached = False
            if c[clock] >= next_eval or c[clock] >= run_cfg.total_steps:
                next_eval += run_cfg.eval_every
                c["wall_time_s"] = self.wall_time()
                entry = self.evaluate(writer)
                bar.set_postfix(eval=f"{entry['return_mean']:.1f}", refresh=False)
                reached = entry["return_mean"] >= run_cfg.stop_at_return
                if bar.disable:  # no bar: one line per evaluation instead
                    score = f", score {entry['score']:.1f}" if "score" in entry else ""
                    print(
                        f"step {c[clock]}: eval return {entry['return_mean']:.1f} "
                        f"+- {entry['return_std']:.1f}{score}, updates "
                        f"{c['gradient_updates']}, {c['wall_time_s']:.0f}s",
                        flush=True,
                    )
            if next_bias is not None and c[clock] >= next_bias:
                next_bias += run_cfg.bias_every
                entry = self.measure_bias(writer)
                if bar.disable:
                    print(
                        f"step {c[clock]}: bias {entry['bias_mean']:+.2f} "
                        f"(normalized {entry['bias_normalized_mean']:+.3f}), "
                        f"Q {entry['q_mean']:.2f} vs {entry['bias_target']} MC return "
                        f"{entry['mc_return_mean']:.2f}, {entry['seconds']:.1f}s",
                        flush=True,
                    )
            seconds = run_cfg.checkpoint_seconds
            due = c[clock] >= next_ckpt or (seconds and time.perf_counter() - last_ckpt >= seconds)
            if due and c[clock] < run_cfg.total_steps:  # the last step's save is the final one
                next_ckpt = after(run_cfg.checkpoint_every)
                c["wall_time_s"] = self.wall_time()
                self.save()
                last_ckpt = time.perf_counter()
            if reached:
                print(f"step {c[clock]}: eval return reached stop_at_return "
                      f"{run_cfg.stop_at_return}; stopping", flush=True)  # fmt: skip
                return

    def buffer_extras(self) -> dict[str, np.ndarray] | None:
        if not self.store_sim_state:
            return None
        return {"sim_state": self.envs.sim_states()}


class OfflineTrainer(Trainer):
    """The same loop on a fixed dataset: no env steps; the clock is the gradient update.

    The dataset is the replay buffer (sampled uniformly or by trajectory weights); checkpoints
    hold no copy of it, only the sampler's RNG state and a fingerprint of the dataset, which a
    resume checks. Evaluations add normalized scores (the dataset's own references, and D4RL's
    constants where the task has them, labelled d4rl_score)."""

    clock = "gradient_updates"

    def open_data(self):
        run_cfg = self.run_cfg
        self.data, self.source = load_dataset(run_cfg.dataset, compat=run_cfg.d4rl_compat)
        if not run_cfg.env:
            run_cfg.env = dataset_env_id(self.data, run_cfg.dataset)
            try:
                check_env_id(run_cfg.env)
            except ValueError as exc:
                raise UserError(f"dataset {run_cfg.dataset}: {exc}") from None
        env = make_env(run_cfg.env, bins=run_cfg.bins)
        check_against_env(self.data, env.observation_space, env.action_space, self.source)
        return env.observation_space, env.action_space

    def build_buffer(self, obs_space, act_space) -> None:
        run_cfg = self.run_cfg
        self.buffer = self.data.to_buffer(seed=run_cfg.seed)
        self.store_sim_state = self.data.qpos is not None
        self.n_step = getattr(self.agent_cfg, "n_step", 1)
        probabilities = transition_probabilities(
            self.data, run_cfg.sampler, run_cfg.sampler_temperature
        )
        if probabilities is not None:
            self.buffer.set_weights(probabilities)
        self.sampling = {"sampler": run_cfg.sampler, **sampling_stats(self.data, probabilities)}
        meta = self.data.metadata
        self.references = (meta.get("ref_min_score"), meta.get("ref_max_score"))
        # What a resume checks the dataset against; computed once (the data never changes).
        d = self.data
        self.fingerprint = {
            "transitions": len(d),
            "episodes": int(len(d.episode_bounds())),
            "rewards_sum": float(d.rewards.astype(np.float64).sum()),
            "observations_sum": float(d.observations.astype(np.float64).sum()),
        }

    def fit(self) -> None:
        """The agent's models of the whole dataset (TD3+BC's state normalization, PRDC's k-d
        tree, SPOT's VAE: minutes of pretraining), fitted once the run folder exists."""
        if hasattr(self.agent, "fit_dataset"):
            self.agent.fit_dataset(self.data.observations, self.data.actions, self.cache_dir())

    def cache_dir(self) -> Path:
        """Where models fitted to this dataset are kept: beside the dataset file."""
        source = Path(self.source)
        if source.is_dir():  # a Minari data folder
            return source / "ogzoo-cache"
        return source.parent / f"{source.stem}.ogzoo-cache"

    def checkpoint(self, replay_file: str | None) -> dict:
        ckpt = super().checkpoint(None)
        ckpt["dataset"] = {"source": str(self.source), **self.fingerprint}
        ckpt["sampler_rng"] = self.buffer.sampler_state()
        return ckpt

    def save_replay(self, ckpt_dir: Path) -> None:
        """Nothing: the dataset is the replay buffer, and a resume reads it again."""

    def restore_data(self, ckpt: dict) -> None:
        saved = {k: v for k, v in ckpt.get("dataset", {}).items() if k != "source"}
        if saved != self.fingerprint:
            raise UserError(
                f"dataset {self.run_cfg.dataset} ({self.source}) is not the one this run "
                f"trained on (saved {saved}, now {self.fingerprint})"
            )
        self.buffer.set_sampler_state(ckpt["sampler_rng"])

    def scores(self, return_mean: float) -> dict[str, float]:
        out = {}
        if None not in self.references:
            out["score"] = float(normalized_score(return_mean, *self.references))
        try:
            out["d4rl_score"] = float(d4rl_normalized_score(return_mean, self.run_cfg.env))
        except UserError:
            pass  # no D4RL constants for this task
        return out

    def summary(self) -> dict:
        out = super().summary()
        last = self.evals[-1] if self.evals else {}
        best = max(self.evals, key=lambda e: e["return_mean"]) if self.evals else {}
        out.update(
            dataset=self.run_cfg.dataset,
            dataset_file=str(self.source),
            sampling=self.sampling,
            last_score=last.get("score"),
            best_score=best.get("score"),
            last_d4rl_score=last.get("d4rl_score"),
            best_d4rl_score=best.get("d4rl_score"),
        )
        return out

    def begin(self, writer) -> None:
        for key, value in self.sampling.items():
            if key != "sampler":
                writer.add_scalar(f"sampler/{key}", value, self.counters[self.clock])

    def advance(self, writer) -> int:
        self.update_once()
        return 1

    def close(self) -> None:
        pass


def trainer_class(run_cfg: cfglib.RunConfig) -> type[Trainer]:
    return OfflineTrainer if run_cfg.dataset else Trainer


# ---- entry points -------------------------------------------------------------------------
def prepare_new_run(args: argparse.Namespace) -> Trainer:
    run_cfg, agent_cfg = resolve_config(args)
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{run_cfg.agent}-{run_cfg.env}-s{run_cfg.seed}-{stamp}"
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(
            f"run folder {run_dir} already exists; continue it with --resume {run_dir} "
            "or choose another --run-dir"
        )
    trainer = trainer_class(run_cfg)(run_cfg, agent_cfg, run_dir, args.progress)  # may raise
    make_run_dir(run_dir)  # the first write
    write_run_config(run_dir, run_cfg, agent_cfg)
    print(f"run folder: {run_dir}", flush=True)
    warn_if_nothing_learns(run_cfg, agent_cfg)
    trainer.fit()  # SPOT's VAE pretraining can take a while: the folder is announced first
    return trainer


def make_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from None


def warn_if_nothing_learns(run_cfg: cfglib.RunConfig, agent_cfg: Any) -> None:
    """Online, a warm-up that covers the whole budget means no gradient update at all."""
    warm_up = getattr(agent_cfg, "learning_starts", 0)
    if not run_cfg.dataset and warm_up >= run_cfg.total_steps:
        print(
            f"WARNING: the warm-up (learning_starts = {warm_up:,} env steps) covers the whole "
            f"run (total_steps = {run_cfg.total_steps:,}): no gradient update will run. Lower "
            f"it (--set learning_starts=N) or raise --total-steps.",
            file=sys.stderr, flush=True,
        )  # fmt: skip


def prepare_resume(args: argparse.Namespace) -> Trainer:
    run_dir = Path(args.resume)
    allowed = {"total_steps", "device", "threads"}
    extra = [k for k in RUN_FLAGS if getattr(args, k) is not None and k not in allowed]
    if extra or args.config or args.set or args.run_dir:
        given = extra + [k for k in ("config", "set", "run_dir") if getattr(args, k)]
        raise UserError(
            f"--resume takes its config from {run_dir}/config.yaml; cannot also change "
            f"{', '.join(given)}"
        )
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"not a run folder (no config.yaml): {run_dir}")
    latest = run_dir / "checkpoints" / "latest.pt"
    if not latest.is_file():  # killed before its first checkpoint: start it again
        return restart(run_dir, args)
    ckpt = load_checkpoint(latest, resume=True)
    changes = {k: getattr(args, k) for k in allowed if getattr(args, k) is not None}
    run_cfg, agent_cfg = configs_of(ckpt["run_config"], ckpt["agent_config"], changes)
    clock = trainer_class(run_cfg).clock
    done = ckpt["counters"][clock]
    if (run_dir / "checkpoints" / "final.pt").is_file() and run_cfg.total_steps <= done:
        raise Finished(f"run {run_dir} finished at {done:,} {clock.replace('_', ' ')}; nothing "
                       f"to do (give --total-steps N > {done:,} to train it further)")  # fmt: skip
    remove_temporaries(run_dir)
    print(f"run folder: {run_dir}", flush=True)
    trainer = trainer_class(run_cfg)(run_cfg, agent_cfg, run_dir, args.progress)
    trainer.fit()
    trainer.restore(ckpt)
    if changes:
        write_run_config(run_dir, run_cfg, agent_cfg)
    return trainer


def configs_of(run: dict, agent: dict, changes: dict) -> tuple[cfglib.RunConfig, Any]:
    """A run folder's configs (from its checkpoint or config.yaml), with --resume's changes,
    checked like a new run's."""
    run_cfg = cfglib.apply_overrides(cfglib.RunConfig(), run, "run config")
    run_cfg = cfglib.apply_overrides(run_cfg, changes, "run config")
    validate(run_cfg)
    what = f"{run_cfg.agent} config"
    agent_cfg = cfglib.apply_overrides(agent_module(run_cfg.agent).Config(), agent, what)
    check_domains(agent_cfg, what)
    return run_cfg, agent_cfg


def restart(run_dir: Path, args: argparse.Namespace) -> Trainer:
    """A run folder with a config but no checkpoint (killed within its first checkpoint
    interval): nothing to resume, so train it again from step 0 with its config.yaml, after
    removing what the first attempt left (TensorBoard events, summary, best.pt)."""
    config = cfglib.load_yaml(run_dir / "config.yaml")
    agent = config.pop("agent_config", None) or {}
    changes = {k: getattr(args, k) for k in ("total_steps", "device", "threads")
               if getattr(args, k) is not None}  # fmt: skip
    run_cfg, agent_cfg = configs_of(config, agent, changes)
    trainer = trainer_class(run_cfg)(run_cfg, agent_cfg, run_dir, args.progress)
    stale = [*run_dir.glob("events.out.tfevents.*"), run_dir / "summary.json",
             *(run_dir / "checkpoints").glob("*")]  # fmt: skip
    for path in stale:
        if path.is_file():
            path.unlink()
    print(f"{run_dir} has no checkpoint yet (stopped before its first one): training it again "
          "from step 0 with its config.yaml", flush=True)  # fmt: skip
    write_run_config(run_dir, run_cfg, agent_cfg)
    print(f"run folder: {run_dir}", flush=True)
    trainer.fit()
    return trainer


def remove_temporaries(run_dir: Path) -> None:
    """Half-written files (*.tmp) that a kill during a save left behind; every real file was
    moved into place whole, so these are never needed."""
    for path in [*run_dir.glob("*.tmp"), *(run_dir / "checkpoints").glob("*.tmp")]:
        path.unlink()
        print(f"removed a half-written file left by an interrupted save: {path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (e.g. a job scheduler) is handled like Ctrl-C: save, then exit.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.show_config:
            run_cfg, agent_cfg = resolve_config(args)
            print(f"{run_cfg.agent} hyperparameters (override with --set KEY=VALUE):")
            print(cfglib.describe(agent_cfg))
            return 0
        trainer = prepare_resume(args) if args.resume else prepare_new_run(args)
        trainer.train()
    except Finished as exc:
        print(exc)
        return 0
    except Diverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return DIVERGED_EXIT
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before training started; no checkpoint was written",
              file=sys.stderr)  # fmt: skip
        return 130
    summary = trainer.summary()
    print(
        f"done: {summary['env_steps']} env steps, {summary['gradient_updates']} updates, "
        f"last eval {summary['eval_return_mean']:.1f}, best {summary['best_eval_return_mean']:.1f}"
        f", {summary['wall_time_s']:.0f}s"
    )
    print(f"run folder: {trainer.run_dir}")
    print(f"watch it:   tensorboard --logdir {trainer.run_dir.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
