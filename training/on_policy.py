"""The on-policy loop: rollouts of `num_steps` steps in every env, GAE over them, then the
agent's update (PPO). Environments: Gymnasium ids through envs.VecEnv, and `procgen:GAME`
through envs.ProcgenVecEnv on the run's training levels (training/procgen.py).

Evaluation (training/trainer.py) plays the training levels on Procgen, and every gen_every
steps the generalization report. No replay: a
checkpoint holds the agent (networks, optimizer, reward statistics) and the
counters; a resume starts a fresh rollout (the interrupted one is dropped, its env steps
stay counted) with the envs on fresh episodes, as the off-policy loop does.
"""

from __future__ import annotations

import numpy as np
import torch

from core import stop
from core.errors import UserError
from envs import VecEnv
from envs.procgen import is_procgen_id
from training.procgen import procgen_envs
from training.trainer import Trainer


class OnPolicyTrainer(Trainer):
    """Collects num_steps x num_envs transitions with the sampling policy, then one update."""

    clock = "env_steps"
    kind = "on_policy"

    # ---- data ---------------------------------------------------------------------------
    def open_data(self):
        cfg = self.run_cfg
        try:
            if is_procgen_id(cfg.env):
                self.envs = procgen_envs(cfg, False, cfg.num_envs, cfg.seed)
            else:
                self.envs = VecEnv(cfg.env, cfg.num_envs, cfg.seed, cfg.bins,
                                   levels=self.level_spec)  # fmt: skip
        except ValueError as exc:
            raise UserError(f"{cfg.env}: {exc}") from None
        return self.envs.observation_space, self.envs.action_space

    def build_buffer(self, obs_space, act_space) -> None:
        """The rollout storage (T x N each), this loop's own; no replay buffer."""
        t, n = self.agent_cfg.num_steps, self.run_cfg.num_envs
        self.buffer, self.store_sim_state, self.n_step = None, False, 1
        self.rollout = {
            "obs": np.zeros((t, n, *obs_space.shape), obs_space.dtype),
            "actions": np.zeros((t, n), np.int64),
            "log_probs": np.zeros((t, n), np.float32),
            "values": np.zeros((t, n), np.float32),
            "rewards": np.zeros((t, n), np.float32),
            "dones": np.zeros((t, n), bool),
        }

    # ---- the loop's hooks ---------------------------------------------------------------
    def begin(self, writer) -> None:
        self.obs = self.envs.reset(self.run_cfg.seed + self.counters["resumes"] * 7919)

    def advance(self, writer) -> int:
        """One rollout of num_steps steps in every env, then one update on it."""
        c, r, n = self.counters, self.rollout, self.run_cfg.num_envs
        for t in range(self.agent_cfg.num_steps):
            stop.check()
            actions, log_probs, values = self.agent.policy_step(self.obs)
            step = self.envs.step(actions)
            # No bootstrap across an episode end of either kind: Procgen never renders a
            # truncated episode's last frame (the reference treats every end alike).
            dones = np.asarray(step.terminated) | np.asarray(step.truncated)
            r["obs"][t], r["actions"][t], r["log_probs"][t], r["values"][t] = (
                self.obs, actions, log_probs, values)  # fmt: skip
            r["rewards"][t] = self.agent.scale_rewards(np.asarray(step.rewards), dones)
            r["dones"][t] = dones
            self.obs = step.obs
            c["env_steps"] += n
            for episode_return, length in step.finished:
                c["episodes"] += 1
                writer.add_scalar("train/episode_return", episode_return, c["env_steps"])
                writer.add_scalar("train/episode_length", length, c["env_steps"])
        advantages, returns = self.module.compute_gae(
            r["rewards"], r["values"], r["dones"], self.agent.value(self.obs),
            self.agent_cfg.gamma, self.agent_cfg.gae_lambda,
        )  # fmt: skip
        flat = {**{k: r[k] for k in ("obs", "actions", "log_probs", "values")},
                "advantages": advantages, "returns": returns}  # fmt: skip
        batch = {k: torch.as_tensor(v.reshape(-1, *v.shape[2:]), device=self.device)
                 for k, v in flat.items()}  # fmt: skip
        try:
            with self.autocast:
                self.last_metrics.update(self.agent.update(batch))
        finally:  # a stop between its gradient steps saves the steps taken
            c["gradient_updates"] = self.agent.updates
        return self.agent_cfg.num_steps * n  # for the progress bar (the counters moved inside)

    def close(self) -> None:
        self.envs.close()
