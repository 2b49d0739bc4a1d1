"""The online off-policy loop: vector envs feed the replay buffer, the agent updates `utd`
times per env step (TD3, SAC, TQC, REValueD)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agents.buffer import ReplayBuffer
from core import stop
from core.errors import UserError
from envs import VecEnv, random_actions, sim_state_dim
from envs.procgen import is_procgen_id
from training.procgen import procgen_envs
from training.trainer import REPLAY_STREAM, Trainer, stream_seed


class OffPolicyTrainer(Trainer):
    """Acts in `num_envs` environments (uniformly at random during the warm-up), stores every
    transition with its simulator state, and spends an update credit of utd per env step."""

    clock = "env_steps"

    def open_data(self):
        """The training envs; returns (observation space, action space)."""
        run_cfg = self.run_cfg
        try:
            if is_procgen_id(run_cfg.env):  # pixel agents: uint8 frames in the buffer
                self.envs = procgen_envs(run_cfg, False, run_cfg.num_envs, run_cfg.seed)
            else:
                self.envs = VecEnv(run_cfg.env, run_cfg.num_envs, run_cfg.seed, run_cfg.bins,
                                   levels=self.level_spec)  # fmt: skip
        except ValueError as exc:  # e.g. --bins on an env without a Box action space
            raise UserError(f"{run_cfg.env}: {exc}") from None
        return self.envs.observation_space, self.envs.action_space

    def build_buffer(self, obs_space, act_space) -> None:
        run_cfg, agent_cfg = self.run_cfg, self.agent_cfg
        # Procgen's states are bytes objects, not vectors: not stored (no bias harness there).
        state_dim = 0 if is_procgen_id(run_cfg.env) else sim_state_dim(self.envs.envs[0])
        # MuJoCo states ride along with each transition so the harness can restore them.
        self.store_sim_state = state_dim > 0
        extras = {"sim_state": ((state_dim,), torch.float64)} if state_dim else {}
        if self.level_spec is not None:  # the level of every transition (envs/levels.py)
            extras["level"] = ((), torch.int64)
        discrete = not np.issubdtype(act_space.dtype, np.floating)
        self.buffer = ReplayBuffer(
            agent_cfg.buffer_size,
            obs_space.shape,
            act_space.shape,
            num_envs=run_cfg.num_envs,
            obs_dtype=torch.uint8 if obs_space.dtype == np.uint8 else torch.float32,
            action_dtype=torch.int64 if discrete else torch.float32,
            extras=extras or None,
            seed=stream_seed(run_cfg.seed, REPLAY_STREAM),
        )
        self.n_step = getattr(agent_cfg, "n_step", 1)

    def save_replay(self, ckpt_dir: Path) -> str | None:
        """Write the replay buffer beside the checkpoints; returns its file name."""
        replay_file = f"replay-{self.counters['env_steps']}.pt"
        self.buffer.save(ckpt_dir / replay_file)
        return replay_file

    def restore_data(self, ckpt: dict) -> None:
        replay_path = self.run_dir / "checkpoints" / ckpt["replay_file"]
        try:
            self.buffer = ReplayBuffer.load(replay_path)
        except (ValueError, FileNotFoundError) as exc:
            raise UserError(str(exc)) from None
        # The interrupted episodes end at the last stored transition: a time-limit-like cut
        # that still bootstraps, and n-step walks never cross into the restarted episodes.
        self.buffer.mark_episode_ends()

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
        terminated = step.terminated
        if not getattr(self.envs, "final_obs_available", True):
            # The env never renders an ended episode's last frame (Procgen): a truncated end's
            # next_obs is the next level's first frame, and nothing can be bootstrapped from
            # it. Its end is stored as terminal, as EDE's Procgen DQN and ppo2 store every end.
            terminated = step.terminated | step.truncated
        self.buffer.add(
            obs, actions, step.rewards, step.next_obs, terminated, step.truncated,
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
        if not self.add_update_credit():
            return
        c = self.counters
        while c["update_credit"] >= 1.0:
            stop.check()  # a large utd makes this loop long; stopping between updates is safe
            self.update_once()
            c["update_credit"] -= 1.0

    def add_update_credit(self) -> bool:
        """After the warm-up, credit this step's updates (utd per env step); False before."""
        c, cfg = self.counters, self.agent_cfg
        if c["env_steps"] < cfg.learning_starts or len(self.buffer) < cfg.batch_size:
            return False
        c["update_credit"] += self.run_cfg.utd * self.run_cfg.num_envs
        return True

    def begin(self, writer) -> None:
        """Fresh episodes, seeded apart from the earlier sessions' (a resume restarts them)."""
        self.obs = self.envs.reset(self.run_cfg.seed + self.counters["resumes"] * 7919)

    def advance(self, writer) -> int:
        """One iteration; returns how far the clock moved."""
        self.obs = self.collect(self.obs, writer)
        self.learn()
        return self.run_cfg.num_envs

    def close(self) -> None:
        self.envs.close()

    def buffer_extras(self) -> dict[str, np.ndarray] | None:
        """What is stored beside each transition, read before the step: the simulator state
        and, on a level run, the level it is played in."""
        extras = {"sim_state": self.envs.sim_states()} if self.store_sim_state else {}
        if self.level_spec is not None:
            extras["level"] = self.envs.current_levels()
        return extras or None
