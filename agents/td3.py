"""TD3: Twin Delayed Deep Deterministic policy gradient.

Paper: Fujimoto, van Hoof, Meger, "Addressing Function Approximation Error in Actor-Critic
Methods", ICML 2018 (arXiv 1802.09477). Reference implementation: github.com/sfujim/TD3.

The algorithm (paper, Algorithm 1):
  critic:  y = r + gamma * (1 - terminated) * min_j Q'_j(s', clip(pi'(s') + clip(eps, -c, c)))
           with eps ~ N(0, policy_noise^2), both critics regress onto the same y;
  actor:   every `policy_delay` critic updates, ascend Q_1(s, pi(s)), then Polyak-update the
           target actor and target critics with rate tau.

Deliberate deviations from the reference code (none changes the mathematics):
- The twin critics are one batched ensemble (agents/nets.py EnsembleMLP), not two modules.
- Actions live in [-1, 1] (envs/ rescales every Box), so noise scales are in those units; the
  reference multiplies by max_action, which is the same thing for symmetric bounds.
- The actor loss backpropagates only into the actor's parameters (`backward(inputs=...)`); the
  reference computes critic gradients there too and discards them.
- Time-limit truncations bootstrap (the buffer keeps `truncated` apart from `terminated`),
  which is what the reference's `done_bool` trick does for the env's own time limit.
- `arch = simba` swaps in SimBa's residual networks and running observation normalization
  (Lee et al. 2024); not in the TD3 paper, offered for comparisons across agents.
- `n_critics = 1` is an ablation, not TD3: the target uses the single critic (a DDPG-style
  target with TD3's other tricks kept), to show what clipped double Q-learning buys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.buffer import Batch
from agents.nets import (
    RunningNorm,
    actor_net,
    critic_ensemble,
    normal_like,
    normalize_batch,
    optimize,
    soft_update,
)

# The methods `update` calls for its tensor maths: a seed-stacked update (training/seeds.py)
# runs them under torch.func.vmap, one slice per seed; the rest of `update` only steps
# optimizers and target networks.
SEED_AXIS = ("prepare", "_critic_loss", "_actor_loss")


@dataclass
class Config:
    arch: str = "mlp"
    """mlp (the paper), or simba: residual blocks + running observation normalization."""
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer sizes of the actor (paper: 256-256, ReLU)."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer sizes of each critic (paper: 256-256, ReLU)."""
    n_critics: int = 2
    """Critics in the ensemble; the target takes their minimum. 1 = single-critic ablation."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    batch_size: int = 256
    """Transitions per gradient update."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    policy_noise: float = 0.2
    """Std of the Gaussian noise added to the target action (target policy smoothing)."""
    noise_clip: float = 0.5
    """The target-action noise is clipped to [-noise_clip, noise_clip]."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to actions while collecting data."""
    learning_starts: int = 25_000
    """Env steps of uniform-random actions before the policy acts and updates begin."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions."""
    compile: bool = False
    """torch.compile the loss functions (speed only; same mathematics, different RNG stream)."""


class Agent:
    def __init__(
        self,
        cfg: Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
    ):
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"td3 needs a continuous (Box) action space, got {action_space}")
        if len(observation_space.shape) != 1:
            raise ValueError(f"td3 needs flat vector observations, got {observation_space.shape}")
        if cfg.n_critics < 1 or cfg.policy_delay < 1:
            raise ValueError("n_critics and policy_delay must be >= 1")
        self.cfg = cfg
        self.device = torch.device(device)
        obs_dim = observation_space.shape[0]
        self.action_dim = int(np.prod(action_space.shape))

        self.actor = actor_net(
            cfg.arch, obs_dim, self.action_dim, cfg.actor_hidden, output_activation=nn.Tanh()
        ).to(self.device)
        self.critic = critic_ensemble(
            cfg.arch, cfg.n_critics, obs_dim + self.action_dim, 1, cfg.critic_hidden
        ).to(self.device)
        # SimBa normalizes observations with statistics of what the envs returned.
        self.obs_norm = RunningNorm(obs_dim).to(self.device) if cfg.arch == "simba" else None
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

        fused = self.device.type in ("cpu", "cuda")
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=fused)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, fused=fused)
        self._actor_params = list(self.actor.parameters())
        # The loss functions are pure functions of tensors, so torch.compile can fuse them.
        self._critic_loss, self._actor_loss = self.critic_loss, self.actor_loss
        if cfg.compile:
            self._critic_loss = torch.compile(self.critic_loss)
            self._actor_loss = torch.compile(self.actor_loss)
        self.updates = 0

    # ---- observations -------------------------------------------------------------------
    def observe(self, obs: np.ndarray) -> None:
        """Observations the training envs returned (N x obs_dim): the normalizer's data."""
        if self.obs_norm is not None:
            self.obs_norm.update(torch.as_tensor(obs, device=self.device))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return obs if self.obs_norm is None else self.obs_norm(obs)

    # ---- acting -------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """obs: N x obs_dim -> actions N x action_dim in [-1, 1]."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        actions = self.actor(self.normalize(obs_t))
        if not deterministic:
            noise = normal_like(actions) * self.cfg.exploration_noise
            actions = (actions + noise).clamp(-1.0, 1.0)
        return actions.cpu().numpy()

    # ---- learning -----------------------------------------------------------------------
    @torch.no_grad()
    def compute_target(self, batch: Batch) -> torch.Tensor:
        """TD target y (B), with target policy smoothing and the min over target critics."""
        next_actions = self.actor_target(batch.next_obs)  # B x A
        noise = (normal_like(next_actions) * self.cfg.policy_noise).clamp(
            -self.cfg.noise_clip, self.cfg.noise_clip
        )
        next_actions = (next_actions + noise).clamp(-1.0, 1.0)
        next_q = self.critic_target(torch.cat([batch.next_obs, next_actions], -1))  # E x B x 1
        next_q = next_q.squeeze(-1).min(dim=0).values  # B
        return batch.rewards + batch.discounts * (1.0 - batch.terminated) * next_q

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum over critics of each critic's MSE to the shared target, mean Q)."""
        target = self.compute_target(batch)  # B
        q = self.critic(torch.cat([batch.obs, batch.actions], -1)).squeeze(-1)  # E x B
        # Each critic has its own loss, as in the paper; summing them trains all in one pass.
        return (q - target).pow(2).mean(dim=1).sum(), q.detach().mean()

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(-Q1(s, pi(s)), extra metrics): the deterministic policy gradient through the first
        critic. Variants (TD3+BC, PRDC, SPOT) add their regulariser here."""
        actions = self.actor(batch.obs)  # B x A
        return -self.policy_q(batch.obs, actions).mean(), {}

    def policy_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q1(s, a) for the actor's gradient, shape B."""
        return self.critic(torch.cat([obs, actions], -1), members=slice(0, 1))[0, :, 0]

    def prepare(self, batch: Batch) -> Batch:
        """The batch the losses see: observations normalized (SimBa), else unchanged."""
        return normalize_batch(self.obs_norm, batch)

    def begin_update(self) -> bool:
        """The Python side of an update (counting it); returns its phase: whether this update
        also steps the actor and the targets."""
        self.updates += 1
        return self.updates % self.cfg.policy_delay == 0

    def update_step(self, batch: Batch, actor_step: bool) -> dict[str, torch.Tensor]:
        """The tensor work of an update (capturable: agents/graphs.py): a critic step, and an
        actor and target step when `actor_step`."""
        batch = self.prepare(batch)
        critic_loss, q_mean = self._critic_loss(batch)
        optimize(self.critic_opt, critic_loss)
        metrics = {"loss/critic": critic_loss.detach(), "q/mean": q_mean}

        if actor_step:
            actor_loss, extra = self._actor_loss(batch)
            # Only the actor's parameters need gradients: skips the critic's weight gradients.
            optimize(self.actor_opt, actor_loss, inputs=self._actor_params)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
            soft_update(self.critic_target, self.critic, self.cfg.tau)
            metrics["loss/actor"] = actor_loss.detach()
            metrics.update({k: v.detach() for k, v in extra.items()})
        return metrics

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One critic update; every `policy_delay` calls also an actor and target update."""
        return self.update_step(batch, self.begin_update())

    # ---- measurement --------------------------------------------------------------------
    @torch.no_grad()
    def q_estimates(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every estimate TD3 exposes: Q1 (what the actor ascends) and the min over critics."""
        q = self.critic(torch.cat([self.normalize(obs), actions], -1)).squeeze(-1)  # E x B
        return {"q1": q[0], "min": q.min(dim=0).values}

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The estimate the policy maximises: Q1(s, a), shape B."""
        return self.q_estimates(obs, actions)["q1"]

    # ---- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict:
        norm = {} if self.obs_norm is None else {"obs_norm": self.obs_norm.state_dict()}
        return {
            **norm,
            "actor": self.actor.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.updates = int(state["updates"])
        if self.obs_norm is not None:
            self.obs_norm.load_state_dict(state["obs_norm"])
