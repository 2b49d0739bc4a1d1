"""The offline loop: a fixed dataset is the replay buffer and the clock is the gradient update
(TD3+BC, PRDC, SPOT, or any agent with --dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agents.buffer import ReplayBuffer
from core.errors import UserError
from datagen import load_dataset  # reads a dataset, making a missing ogzoo one on first use
from envs import check_env_id, make_env
from envs.datasets.dataset import check_against_env
from envs.datasets.loading import dataset_env_id
from envs.datasets.scores import d4rl_normalized_score, normalized_score
from envs.datasets.weighting import sampling_stats, transition_probabilities
from envs.levels import LevelSpec, range_text, spec_of
from training.trainer import Trainer


def fingerprint(data) -> dict:
    """What a checkpoint records of its dataset, and a resume (or a bench reading the run)
    checks it against: sizes and float64 sums of the rewards and observations."""
    return {
        "transitions": len(data),
        "episodes": int(len(data.episode_bounds())),
        "rewards_sum": float(data.rewards.astype(np.float64).sum()),
        "observations_sum": float(data.observations.astype(np.float64).sum()),
    }


class OfflineTrainer(Trainer):
    """The same loop on a fixed dataset: no env steps; the clock is the gradient update.

    The dataset is the replay buffer (sampled uniformly or by trajectory weights); checkpoints
    hold no copy of it, only the sampler's RNG state and a fingerprint of the dataset, which a
    resume checks. Evaluations add normalized scores (the dataset's own references, and D4RL's
    constants where the task has them, labelled d4rl_score)."""

    clock = "gradient_updates"
    kind = "offline"

    def open_data(self):
        run_cfg = self.run_cfg
        self.data, self.source = load_dataset(run_cfg.dataset, compat=run_cfg.d4rl_compat)
        if not run_cfg.env:
            run_cfg.env = dataset_env_id(self.data, run_cfg.dataset)
            try:
                check_env_id(run_cfg.env)
            except ValueError as exc:
                raise UserError(f"dataset {run_cfg.dataset}: {exc}") from None
        self.level_spec = self.dataset_levels()
        env = make_env(run_cfg.env, bins=run_cfg.bins)
        check_against_env(self.data, env.observation_space, env.action_space, self.source)
        return env.observation_space, env.action_space

    def levels_of(self, run_cfg) -> None:
        """Offline, the levels are the dataset's (dataset_levels), read with the data."""
        return None

    def dataset_levels(self) -> LevelSpec | None:
        """The spec of a dataset made across levels (its metadata), written into the run
        config so that the run folder, evaluate.py and resumes know the levels."""
        text, cfg = self.data.metadata.get("levels"), self.run_cfg
        if text is None:
            if cfg.context:
                raise UserError(f"{self.source} was not made across levels: offline runs "
                                "take the dataset's levels, --context does not apply")  # fmt: skip
            return None
        if self.data.levels is None:
            raise UserError(f"{self.source}: metadata names levels but infos/level is missing")
        try:
            spec = LevelSpec.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{self.source}: metadata/levels is not a level spec ({exc})") \
                from None  # fmt: skip
        if cfg.context and spec_of(cfg) != spec:  # a resume repeats the dataset's own
            raise UserError(f"--context {cfg.context} differs from the levels {self.source} "
                            "was made on; offline runs take the dataset's")  # fmt: skip
        cfg.context = ",".join(spec.context)
        cfg.context_range = range_text(spec.context, spec.ranges)
        cfg.train_levels, cfg.start_level = spec.train_levels, spec.start_level
        return spec

    def build_buffer(self, obs_space, act_space) -> None:
        run_cfg = self.run_cfg
        self.buffer = ReplayBuffer.from_dataset(self.data, seed=run_cfg.seed)
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
        self.fingerprint = fingerprint(self.data)

    def fit(self) -> None:
        """The agent's models of the whole dataset (TD3+BC's state normalization, PRDC's
        nearest-neighbour search, SPOT's VAE: minutes of pretraining), fitted once the run
        folder exists."""
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
