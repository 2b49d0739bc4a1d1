"""The run life cycle every training loop shares (the base class of the loops in training/).

A loop owns one run folder: the agent, the counters, evaluations and bias measurements,
TensorBoard, checkpoints and the summary. Checkpoints are written every checkpoint_every steps
and every checkpoint_seconds of wall time, never from a non-finite state (Diverged instead),
and a failed write keeps the previous checkpoint. Ctrl-C and SIGTERM are heard between steps
(core/stop.py), so a checkpoint never holds an agent that took an update its counters missed.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents import get_agent_module
from agents.graphs import capture_update, is_captured, optimizers, set_capturable
from agents.nets import native_bf16, resolve_device, seed_everything, update_autocast
from core import config as cfglib
from core import stop
from core.domains import first_nonfinite
from core.errors import UserError
from core.runs import (
    CHECKPOINT_FORMAT,
    FIRST_SAVE_PENDING,
    atomic_torch_save,
    check_spaces,
    space_signature,
    write_json,
)
from envs import VecEnv, make_env
from envs.levels import LevelSpec, spec_of
from envs.procgen import is_procgen_id
from harness.bias import start_states, states_from_buffer
from harness.evaluation import EVAL_ENVS, evaluate_vector, evaluation_actor
from training.levels import LevelEvaluation, level_bias_meter
from training.procgen import ProcgenEvaluation, procgen_bias

EVAL_SEED_OFFSET = 100_000  # evaluation episodes start from reset(seed + this + k)
DIVERGED_EXIT = 3  # exit code of a run stopped because its losses or weights became non-finite
WARMUP_STREAM, REPLAY_STREAM = 1, 2  # the loop's numpy streams (stream_seed)


def stream_seed(seed: int, stream: int) -> int:
    """The seed of one of a run's numpy streams (warm-up actions, replay indices), apart from
    each other and from the env's: Gymnasium seeds an env's resets with SeedSequence(seed),
    the very stream np.random.default_rng(seed) gives, so seeding all three with `seed` tied
    the first dozen updates' replay indices to the warm-up actions (docs/peer-parity.md)."""
    state = np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1, np.uint64)
    return int(state[0])


class Diverged(UserError):
    """Losses or weights became NaN or infinite; no checkpoint is written from that state."""


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


# An evaluation entry's held-out numbers (the generalization report's, every gen_every steps):
# logged under gen/* with the training side's (generalization_entry), not under eval/*.
HELD_OUT_KEYS = ("test_return_mean", "test_return_std", "test_normalized", "gap",
                 "extrapolation_return_mean", "extrapolation_return_std",
                 "gap_extrapolation")  # fmt: skip


def generalization_entry(entry: dict, clock: str) -> dict | None:
    """The generalization report in an evaluation entry, under the report's names ({clock,
    train_return_mean, train_return_std, [train_normalized,] test_return_mean, ..., gap}),
    or None for an evaluation of the training side alone (no gap)."""
    if "gap" not in entry:
        return None
    train = {"train_return_mean": entry["return_mean"], "train_return_std": entry["return_std"]}
    if "train_normalized" in entry:
        train["train_normalized"] = entry["train_normalized"]
    return {clock: entry[clock], **train,
            **{key: entry[key] for key in HELD_OUT_KEYS if key in entry}}  # fmt: skip


def reaches_stop(returns: list[float], window: int, threshold: float) -> bool:
    """Whether the mean of the last `window` evaluation returns (oldest first) reached
    `threshold` (stop_at_return); never before there are that many."""
    if len(returns) < window:
        return False
    return float(np.mean(returns[-window:])) >= threshold


def report_entry(report: dict, keys: tuple[str, ...]) -> dict:
    """An evaluation entry from a generalization report: the training levels' return (what
    stop_at_return and best.pt go by) and the named held-out numbers."""
    return {"return_mean": report["train_return_mean"],
            "return_std": report["train_return_std"],
            "length_mean": report["train_length_mean"],
            **{key: float(report[key]) for key in keys}}  # fmt: skip


class Trainer:
    """One run folder's life cycle: the agent, counters, evaluations, bias measurements,
    checkpoints (resume, best policy, divergence guard), logging and the stop-aware loop.
    A subclass supplies the data: `open_data`, `build_buffer`, `begin`, `advance`, `close`
    and, where a resume needs more than the agent, `save_replay` / `restore_data`."""

    clock = "env_steps"  # what total_steps and the *_every intervals count
    # Keep the replaced checkpoint as previous.pt until drop_previous() (a group of seeds,
    # training/seeds.py, whose runs must be resumable from one common step).
    keep_previous = False
    kind = "off_policy"  # the loop, recorded in checkpoints (core.runs.LOOP_RESUME_KEYS)

    def __init__(self, run_cfg: cfglib.RunConfig, agent_cfg: Any, run_dir: Path, progress: str):
        self.run_cfg, self.agent_cfg, self.run_dir = run_cfg, agent_cfg, run_dir
        self.progress_mode = progress
        torch.set_num_threads(run_cfg.threads)
        seed_everything(run_cfg.seed)
        self.device = resolve_device(run_cfg.device)
        self.module = get_agent_module(run_cfg.agent)

        self.level_spec = self.levels_of(run_cfg)
        obs_space, act_space = self.open_data()
        self.eval_env = self.make_eval_env()
        self.spaces = space_signature(obs_space, act_space)
        self.observation_space, self.action_space = obs_space, act_space
        try:
            self.agent = self.module.Agent(agent_cfg, obs_space, act_space, self.device)
        except ValueError as exc:
            raise UserError(f"{run_cfg.agent} on {run_cfg.env}: {exc}") from None
        self.build_buffer(obs_space, act_space)
        if run_cfg.cuda_graph:
            try:
                print(capture_update(self.agent, self.device), flush=True)
            except ValueError as exc:
                raise UserError(f"--cuda-graph: {exc}") from None
        if run_cfg.precision == "bf16" and not native_bf16(self.device):
            lacks = "AVX-512 BF16 or AMX" if self.device.type == "cpu" else "bf16 support"
            print(f"warning: --precision bf16 on a {self.device.type.upper()} without {lacks}: "
                  "its bfloat16 kernels run several times slower than fp32 here",
                  flush=True)  # fmt: skip
        # Around every update (agents.nets.update_autocast: no weight cache, so each forward
        # sees the weights the previous optimizer step left; a captured update needs it too).
        self.autocast = update_autocast(self.device.type, run_cfg.precision == "bf16")
        self.rng = np.random.default_rng(stream_seed(run_cfg.seed, WARMUP_STREAM))  # warm-up
        self.counters = {
            "env_steps": 0,
            "gradient_updates": 0,
            "episodes": 0,
            "update_credit": 0.0,
            "wall_time_s": 0.0,
            "bias_time_s": 0.0,
            "gen_time_s": 0.0,
            "resumes": 0,
        }
        self.evals: list[dict] = []
        self.biases: list[dict] = []
        # A level run restores every state in its own level (envs/levels.py).
        self.bias_meter = level_bias_meter(run_cfg.env, run_cfg.bins, self.level_spec,
                                           agent_cfg.gamma, run_cfg.bias_rollouts)  # fmt: skip
        # Runs with levels (Procgen, MuJoCo levels): a training-side evaluation, and every
        # gen_every steps the generalization report (level_evaluation).
        self.level_eval: LevelEvaluation | ProcgenEvaluation | None = None
        self.eval_vec: VecEnv | None = None  # the plain evaluations' vector env
        if is_procgen_id(run_cfg.env):
            self.level_eval = ProcgenEvaluation(run_cfg, run_cfg.eval_episodes)
        elif self.level_spec is not None:
            self.level_eval = LevelEvaluation(
                run_cfg.env, run_cfg.bins, self.level_spec, run_cfg.eval_episodes,
                run_cfg.eval_epsilon,
            )  # fmt: skip
        self.last_metrics: dict[str, torch.Tensor] = {}
        self.saved_at: int | None = None  # the clock at the last checkpoint written
        self.label = ""  # what starts this run's printed lines ("s3 " for a seed of a group)
        self.replay_file: str | None = None  # the replay file of the last checkpoint

    # ---- the hooks each loop fills in -----------------------------------------------------
    def open_data(self) -> tuple[gym.Space, gym.Space]:
        """Open the data (envs or a dataset); returns (observation space, action space)."""
        raise NotImplementedError

    def build_buffer(self, obs_space: gym.Space, act_space: gym.Space) -> None:
        """Make self.buffer (what update_once samples), self.store_sim_state, self.n_step."""
        raise NotImplementedError

    def make_eval_env(self):
        """The env evaluations and bias start states use (one Gymnasium env); none for
        Procgen, whose evaluations build their envs (training/procgen.py)."""
        if is_procgen_id(self.run_cfg.env):
            return None
        return make_env(self.run_cfg.env, bins=self.run_cfg.bins, levels=self.level_spec)

    def levels_of(self, run_cfg: cfglib.RunConfig) -> LevelSpec | None:
        """The run's MuJoCo levels (--context), or None."""
        try:
            return spec_of(run_cfg)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def fit(self) -> None:
        """Models of the data fitted before training, once the run folder exists (offline
        agents; nothing online)."""

    def save_replay(self, ckpt_dir: Path) -> str | None:
        """Write what a resume needs besides the checkpoint; returns its file name, if any."""
        return None

    def restore_data(self, ckpt: dict) -> None:
        """Reload what save_replay wrote."""

    def begin(self, writer) -> None:
        """Start of a session of the loop (a new run, or a resume)."""

    def advance(self, writer) -> int:
        """One iteration; returns how far the clock moved."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what open_data opened."""

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
            "loop": self.kind,
            "agent": self.run_cfg.agent,
            "env": self.run_cfg.env,
            "run_config": cfglib.to_dict(self.run_cfg),
            "agent_config": cfglib.to_dict(self.agent_cfg),
            "spaces": self.spaces,
            "agent_state": self.agent_state(),
            "counters": dict(self.counters),
            "saved_at": self.saved_at,  # None: no checkpoint written yet (see launch.restart)
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
            latest = ckpt_dir / "latest.pt"
            if self.keep_previous and latest.is_file():
                # The checkpoint being replaced stays whole as previous.pt (a second name for
                # the same file), its replay file with it, until drop_previous().
                target = ckpt_dir / "previous.pt"
                target.unlink(missing_ok=True)
                os.link(latest, target)
            pending = ckpt_dir / FIRST_SAVE_PENDING  # a kill before latest.pt: see restart()
            if self.saved_at is None:
                target = pending
                pending.touch()
            target = ckpt_dir / f"replay-{self.counters['env_steps']}.pt"
            replay_file = self.save_replay(ckpt_dir)
            ckpt = self.checkpoint(replay_file)
            for target in dict.fromkeys([latest, ckpt_dir / name]):
                atomic_torch_save(ckpt, target)
            if not self.keep_previous:  # a seed group's first save is whole at drop_previous()
                pending.unlink(missing_ok=True)
            keep = {replay_file, self.replay_file if self.keep_previous else None}
            self.replay_file = replay_file
            self.remove_replays(keep)
        except OSError as exc:
            kept = (f"the last checkpoint (step {self.saved_at:,}) is kept" if self.saved_at
                    is not None else "no checkpoint was written before")  # fmt: skip
            raise UserError(f"cannot write {target}: {exc.strerror or exc}; {kept}") from None
        self.saved_at = self.counters[self.clock]

    def remove_replays(self, keep: set) -> None:
        """Delete the replay files no kept checkpoint needs."""
        for old in (self.run_dir / "checkpoints").glob("replay-*.pt"):
            if old.name not in keep:
                old.unlink()

    def drop_previous(self) -> None:
        """Forget previous.pt and its replay file (keep_previous: once every run it is kept
        for has saved too)."""
        (self.run_dir / "checkpoints" / "previous.pt").unlink(missing_ok=True)
        (self.run_dir / "checkpoints" / FIRST_SAVE_PENDING).unlink(missing_ok=True)
        self.remove_replays({self.replay_file})

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

    def restore(self, ckpt: dict) -> None:
        """Load a checkpoint validated by the caller; envs restart with fresh episodes."""
        check_spaces(ckpt, self.spaces, self.run_cfg.env, self.run_dir)
        self.restore_data(ckpt)
        self.replay_file = ckpt.get("replay_file")
        self.agent.load_state_dict(ckpt["agent_state"])
        set_capturable(optimizers(self.agent), is_captured(self.agent))
        self.counters = dict(ckpt["counters"])
        self.saved_at = self.counters[self.clock]
        self.counters["resumes"] += 1
        self.evals = list(ckpt["evals"])
        self.biases = list(ckpt.get("biases", []))
        self.counters.setdefault("bias_time_s", 0.0)
        self.counters.setdefault("gen_time_s", 0.0)
        rng = ckpt["rng"]
        random.setstate(rng["python"])
        kind, keys, *rest = rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        torch.set_rng_state(rng["torch"])
        self.rng.bit_generator.state = rng["loop"]
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

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
            "gen_time_s": round(self.counters.get("gen_time_s", 0.0), 2),
            # The latest value of each update metric (losses, mean Q, REValueD's target std).
            "last_update_metrics": {k: float(v) for k, v in self.last_metrics.items()},
            "evals": self.evals,
            # the evaluations that made the generalization report (gen_every), as gen/* logs them
            "generalization": [g for e in self.evals if (g := generalization_entry(e, self.clock))],
            "bias": self.biases,
        }

    def run_evaluation(self) -> dict:
        """{'return_mean', 'return_std', 'length_mean', ...} (numbers only): episodes of the
        deterministic policy (sampled or epsilon-greedy: evaluation_actor) played
        together (harness.evaluation.evaluate_vector), episode k from reset(seed +
        EVAL_SEED_OFFSET + k) for up to EVAL_ENVS episodes. A run with levels (Procgen,
        MuJoCo levels) plays eval_episodes on its training levels, and every gen_every steps
        as many held out (level_evaluation); return_mean is the training levels' (what
        stop_at_return and best.pt go by)."""
        cfg = self.run_cfg
        if self.level_eval is not None:
            return self.level_evaluation()
        if self.eval_vec is None:  # made once, kept for the run's evaluations
            n = min(cfg.eval_episodes, EVAL_ENVS)
            self.eval_vec = VecEnv(cfg.env, n, 0, cfg.bins)
        actor, deterministic = evaluation_actor(self.agent, cfg.eval_epsilon)
        result = evaluate_vector(actor, self.eval_vec, cfg.eval_episodes,
                                 cfg.seed + EVAL_SEED_OFFSET, deterministic)  # fmt: skip
        return {"return_mean": result["return_mean"], "return_std": result["return_std"],
                "length_mean": float(np.mean(result["lengths"]))}  # fmt: skip

    def level_evaluation(self) -> dict:
        """The evaluation of a run with levels (training/levels.py, training/procgen.py): the
        training levels' return, and with the first evaluation at or past each multiple of
        gen_every (and the last: at total_steps, or the one that reaches stop_at_return) the
        generalization report's held-out sides and gaps."""
        cfg, step = self.run_cfg, self.counters[self.clock]
        seed = cfg.seed + EVAL_SEED_OFFSET
        previous = self.evals[-1][self.clock] if self.evals else 0
        due = step // cfg.gen_every > previous // cfg.gen_every or step >= cfg.total_steps
        if not due:
            side = self.level_eval.train_side(self.agent, seed)
            returns = [*(e["return_mean"] for e in self.evals), side["return_mean"]]
            if not reaches_stop(returns, cfg.stop_window, cfg.stop_at_return):
                return side
            # this evaluation stops the run (stop_at_return): the last, so the report (whose
            # training side plays the same episodes again)
        report = self.level_eval.report(self.agent, seed)
        # what the held-out sides cost the run (issue 21's bar: at most 10% of its wall time)
        held_out_seconds = report["test_seconds"] + report.get("extrapolation_seconds", 0.0)
        self.counters["gen_time_s"] += held_out_seconds
        return report_entry(report, self.level_eval.entry_keys)

    def evaluate(self, writer) -> dict:
        result = self.run_evaluation()
        length = result.pop("length_mean")  # logged, not kept in the summary's evaluations
        step = self.counters[self.clock]
        entry = {self.clock: step, **result, **self.scores(result["return_mean"])}
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
        gen = generalization_entry(entry, self.clock)
        for key, value in entry.items():
            if key != self.clock and key not in HELD_OUT_KEYS:
                writer.add_scalar(f"eval/{key}", value, step)
        writer.add_scalar("eval/length_mean", length, step)
        for key, value in (gen or {}).items():
            if key != self.clock:
                writer.add_scalar(f"gen/{key}", value, step)
        write_json(self.run_dir / "summary.json", self.summary())
        return entry

    def measure_bias(self, writer) -> dict:
        """Critic estimate vs Monte-Carlo truth on replay states (harness/bias.py)."""
        start = time.perf_counter()
        step, k = self.counters[self.clock], self.run_cfg.bias_states
        seed = self.run_cfg.seed + EVAL_SEED_OFFSET + step
        if is_procgen_id(self.run_cfg.env):  # the greedy policy's states, on both sides
            result = procgen_bias(self.agent, self.run_cfg, k, seed, self.agent_cfg.gamma)
        else:
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

    def update_once(self) -> None:
        # Merge: an update may report only some metrics (TD3's actor loss comes every
        # policy_delay updates); keep the latest of each.
        batch = self.sample_batch()
        with self.autocast:
            self.last_metrics.update(self.agent.update(batch))
        self.counters["gradient_updates"] += 1

    def sample_batch(self):
        """The next minibatch from the buffer (its own RNG)."""
        cfg = self.agent_cfg
        return self.buffer.sample(cfg.batch_size, n_step=self.n_step, gamma=cfg.gamma,
                                  device=self.device)  # fmt: skip

    def agent_state(self) -> dict:
        """What a checkpoint keeps of the agent."""
        return self.agent.state_dict()

    def scores(self, return_mean: float) -> dict[str, float]:
        """Normalized scores of an evaluation (offline runs; none online)."""
        return {}

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
        writer, bar = self.open_session()
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
                self.end_session(finished)
        finally:
            self.close_session()
        if not finished:
            self.say_interrupted()
            raise SystemExit(130)

    # The pieces of train(), which a driver of several runs in lockstep (training/seeds.py)
    # calls for each of its runs.
    def open_session(self, show_bar: bool = True):
        """(TensorBoard writer, progress bar) of this session; begin() called."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        run_cfg, c = self.run_cfg, self.counters
        self.writer = SummaryWriter(str(self.run_dir))
        hide = {"auto": None, "on": False, "off": True}[self.progress_mode]
        self.bar = tqdm(
            total=run_cfg.total_steps, initial=c[self.clock], dynamic_ncols=True,
            disable=hide if show_bar else True,
            unit="step" if self.clock == "env_steps" else "update",
        )  # fmt: skip
        self.started, self.wall_before = time.perf_counter(), c["wall_time_s"]
        self.begin(self.writer)
        if c[self.clock] < run_cfg.total_steps:
            # A finished run resumed to a larger budget is unfinished again until it ends: its
            # old final.pt would tell benches (bench/jobs.py) that it finished.
            (self.run_dir / "checkpoints" / "final.pt").unlink(missing_ok=True)
        return self.writer, self.bar

    def end_session(self, finished: bool) -> None:
        """The session's last checkpoint (final.pt when the budget was reached) and summary."""
        self.bar.close()
        self.counters["wall_time_s"] = self.wall_time()
        self.save("final.pt" if finished else "latest.pt")
        write_json(self.run_dir / "summary.json", self.summary())

    def close_session(self) -> None:
        """Release the writer, the envs and the evaluation envs (also after an error)."""
        self.bar.close()
        self.writer.close()
        self.close()
        if self.level_eval is not None:
            self.level_eval.close()
        if self.eval_vec is not None:
            self.eval_vec.close()

    def say_interrupted(self) -> None:
        print(
            f"interrupted at step {self.counters[self.clock]}; checkpoint saved "
            f"({self.run_dir / 'checkpoints' / 'latest.pt'}). "
            f"Continue with: python train.py --resume {self.resume_target()}",
            file=sys.stderr,
        )

    def resume_target(self) -> Path:
        """The folder `train.py --resume` takes to continue this run."""
        return self.run_dir

    def wall_time(self) -> float:
        """Seconds this run has trained, over every session of it."""
        return self.wall_before + time.perf_counter() - self.started

    def loop(self, writer, bar) -> None:
        """Steps until the budget or stop_at_return; KeyboardInterrupt on a stop request."""
        self.start_schedule()
        while self.counters[self.clock] < self.run_cfg.total_steps:
            stop.check()
            bar.update(self.advance(writer))
            if self.after_advance(writer, bar):
                return

    def start_schedule(self) -> None:
        """The clock marks of the next log, evaluation, checkpoint and bias measurement."""
        run_cfg, c = self.run_cfg, self.counters
        self.next_eval, self.next_ckpt = self.after(run_cfg.eval_every), self.after(
            run_cfg.checkpoint_every)  # fmt: skip
        self.next_log = self.after(run_cfg.log_every)
        self.next_bias = self.after(run_cfg.bias_every) if run_cfg.bias_every else None
        self.last_log = (time.perf_counter(), c["env_steps"], c["gradient_updates"])
        self.last_ckpt = time.perf_counter()

    def checkpoint_due(self) -> bool:
        """Every checkpoint_every steps, and checkpoint_seconds of wall time after the last."""
        seconds = self.run_cfg.checkpoint_seconds
        return self.counters[self.clock] >= self.next_ckpt or bool(
            seconds and time.perf_counter() - self.last_ckpt >= seconds)  # fmt: skip

    def after(self, every: int) -> int:
        """The next multiple of `every` past the current step."""
        return (self.counters[self.clock] // every + 1) * every

    def stop_reached(self) -> bool:
        """Whether the mean return of the last stop_window evaluations reached stop_at_return
        (never before there are that many)."""
        returns = [e["return_mean"] for e in self.evals]
        return reaches_stop(returns, self.run_cfg.stop_window, self.run_cfg.stop_at_return)

    def after_advance(self, writer, bar, save: bool | None = None) -> bool:
        """Logging, evaluation, bias measurement and checkpoint when due (`save` decides the
        checkpoint instead, for runs that must save together), after one advance; True when
        the evaluation reached stop_at_return (the run then stops)."""
        run_cfg, c, clock = self.run_cfg, self.counters, self.clock
        if c[clock] >= self.next_log:
            self.next_log += run_cfg.log_every
            self.last_log = self.log_training(writer, self.last_log)
        reached = False
        if c[clock] >= self.next_eval or c[clock] >= run_cfg.total_steps:
            self.next_eval += run_cfg.eval_every
            c["wall_time_s"] = self.wall_time()
            entry = self.evaluate(writer)
            bar.set_postfix(eval=f"{entry['return_mean']:.1f}", refresh=False)
            reached = self.stop_reached()
            if bar.disable:  # no bar: one line per evaluation instead
                score = f", score {entry['score']:.1f}" if "score" in entry else ""
                print(
                    f"{self.label}step {c[clock]}: eval return {entry['return_mean']:.1f} "
                    f"+- {entry['return_std']:.1f}{score}, updates "
                    f"{c['gradient_updates']}, {c['wall_time_s']:.0f}s",
                    flush=True,
                )
        if self.next_bias is not None and c[clock] >= self.next_bias:
            self.next_bias += run_cfg.bias_every
            entry = self.measure_bias(writer)
            if bar.disable:
                # A Procgen run measures each side of its level split (training/procgen.py).
                parts = [("", entry)] if "bias_mean" in entry else [
                    (f" {side}", entry[side]) for side in ("train", "test")]  # fmt: skip
                for side, r in parts:
                    print(
                        f"{self.label}step {c[clock]}: bias{side} "
                        f"{r['bias_mean']:+.2f} (normalized {r['bias_normalized_mean']:+.3f}), "
                        f"Q {r['q_mean']:.2f} vs {r['bias_target']} MC return "
                        f"{r['mc_return_mean']:.2f}, {entry['seconds']:.1f}s",
                        flush=True,
                    )
        due = self.checkpoint_due() if save is None else save
        if due and c[clock] < run_cfg.total_steps:  # the last step's save is the final one
            self.next_ckpt = self.after(run_cfg.checkpoint_every)
            c["wall_time_s"] = self.wall_time()
            self.save()
            self.last_ckpt = time.perf_counter()
        if reached:
            what = "eval return" if run_cfg.stop_window == 1 else (
                f"mean of the last {run_cfg.stop_window} eval returns")  # fmt: skip
            print(f"{self.label}step {c[clock]}: {what} reached stop_at_return "
                  f"{run_cfg.stop_at_return}; stopping", flush=True)  # fmt: skip
        return reached
