"""SAC: Soft Actor-Critic, by default with the SimBa architecture.

Papers: Haarnoja et al., "Soft Actor-Critic Algorithms and Applications" (arXiv 1812.05905:
learned temperature with a target entropy); Lee et al., "SimBa: Simplicity Bias for Scaling Up
Parameters in Deep Reinforcement Learning", ICLR 2025 (arXiv 2410.09754). Reference code:
github.com/SonyResearch/simba (JAX); classic SAC as in Stable-Baselines3 / CleanRL.

The algorithm:
  actor:   a = tanh(u), u ~ N(mu(s), sigma(s)^2); log pi(a|s) includes the tanh Jacobian;
           minimise E[alpha * log pi(a|s) - Q(s, a)], Q = min over critics (single critic: Q_1);
  critic:  y = r + gamma^n * (1 - terminated) * (Q'(s', a') - alpha * log pi(a'|s')),
           a' ~ pi(.|s'), Q' = min over target critics; each critic regresses onto y (MSE);
  alpha:   minimise E[-log(alpha) * (log pi(a|s) + target_entropy)] (alpha grows while the
           policy's entropy is below the target); target critics Polyak-averaged every update.

Defaults are SimBa's SAC configuration (`arch = simba`): critic 2 residual blocks x 512, actor 1
block x 128, running observation normalization, AdamW 1e-4 with weight decay 1e-2, initial
temperature 0.01, target entropy -0.5 dim(A), 5k warm-up and UTD 2 (a run-level setting, see
ARCH_DEFAULTS), and clipped double Q (2 critics) only where the task can terminate: SimBa's
`critic_use_cdq: ${env.episodic}`, so HalfCheetah (which never terminates) gets one critic
(`envs.can_terminate`; `--set n_critics=2` overrides). `arch = mlp` (`train.py --arch mlp`)
switches every one of those to classic SAC: 256-256 ReLU networks, Adam 3e-4, initial
temperature 1, target entropy -dim(A), UTD 1, two critics on every task.

Deliberate deviations (none changes the mathematics):
- The critics are one batched ensemble (agents/nets.py).
- The actor loss backpropagates only into the actor (`backward(inputs=...)`).
- log sigma is rescaled smoothly into [log_std_min, log_std_max] with tanh, as SimBa ([-10, 2])
  and CleanRL ([-5, 2], our `arch = mlp` setting) do; `log_std_bound = clip` is SB3's clamp.
  With the same untrained weights, mean sigma on HalfCheetah states is 0.54 here, 1.2 in SB3.
- log pi is the exact tanh-Gaussian density (as in the TQC reference, tqc_pytorch). SB3 and
  CleanRL subtract log(1 - tanh(u)^2 + 1e-6): the same up to |u| ~ 4, but from |u| ~ 7 their log
  pi is lower (-0.27 nats per dimension at 7, -4.8 at 10) and its Jacobian term stops pushing u
  back from saturation. `log_prob_epsilon = 1e-6` reproduces their form (docs/peer-parity.md).
- The critic loss is the sum of the critics' MSEs; SB3 halves it. Adam makes the step nearly
  scale-free (only its eps, 1e-8, sees the factor 2).
- The temperature steps last (SB3: first); both use alpha from before its step in the target
  and the actor loss, so the order changes nothing.
- Time-limit truncations bootstrap; actions live in [-1, 1] (envs/ rescales every Box).

`TanhGaussianActor` and `Temperature` are shared with TQC (agents/tqc.py), which overrides
only the critic pieces of `Agent`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.buffer import Batch
from agents.nets import (
    RunningNorm,
    actor_net,
    compile_methods,
    critic_ensemble,
    normal_like,
    normalize_batch,
    optimize,
    soft_update,
)

# The methods `update` calls for its tensor maths: a seed-stacked update (training/seeds.py)
# runs them under torch.func.vmap, one slice per seed; the rest of `update` only steps
# optimizers and target networks, and reads per-seed numbers elementwise.
SEED_AXIS = ("prepare", "critic_loss", "actor_loss", "temperature_loss")


@dataclass
class Config:
    arch: str = "simba"
    """simba (SimBa's SAC) or mlp (classic SAC); switching it switches the defaults below."""
    actor_hidden: list[int] = field(default_factory=lambda: [128])
    """Actor: SimBa = one width per residual block (1 x 128); mlp = hidden layer sizes."""
    critic_hidden: list[int] = field(default_factory=lambda: [512, 512])
    """Each critic: SimBa = one width per residual block (2 x 512); mlp = hidden layer sizes."""
    n_critics: int = 2
    """Critics; the target and the actor take their minimum. SimBa: 1 where the task cannot
    terminate (train.py applies ARCH_DEFAULTS' non_episodic entry)."""
    actor_lr: float = 1e-4
    """Learning rate of the actor (AdamW)."""
    critic_lr: float = 1e-4
    """Learning rate of the critics (AdamW)."""
    temperature_lr: float = 1e-4
    """Learning rate of log(alpha) (Adam, no weight decay)."""
    weight_decay: float = 1e-2
    """AdamW weight decay of actor and critics (0 = plain Adam)."""
    initial_temperature: float = 0.01
    """alpha at the start of training."""
    target_entropy_scale: float = -0.5
    """Target entropy = target_entropy_scale * dim(A)."""
    log_std_min: float = -10.0
    """Lower bound of the actor's log standard deviation."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log standard deviation."""
    log_std_bound: str = "tanh"
    """How log sigma is kept in bounds: tanh (smooth rescaling; SimBa, CleanRL) or clip (SB3)."""
    log_prob_epsilon: float = 0.0
    """0 = exact log pi; > 0 = SB3's and CleanRL's log(1 - tanh(u)^2 + eps) (theirs: 1e-6)."""
    batch_size: int = 256
    """Transitions per gradient update."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics (every update)."""
    learning_starts: int = 5_000
    """Env steps of uniform-random actions before the policy acts and updates begin."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions."""
    compile: bool = False
    """torch.compile the loss methods (speed only; same mathematics, another random stream)."""


# `train.py --arch NAME` (or arch in a preset) starts from these instead of the class defaults;
# "run" holds the loop settings the paper pairs with the architecture, "non_episodic" the agent
# settings for a task that cannot terminate.
ARCH_DEFAULTS = {
    "simba": {"agent": {}, "run": {"utd": 2.0}, "non_episodic": {"n_critics": 1}},
    "mlp": {
        "agent": {
            "actor_hidden": [256, 256],
            "critic_hidden": [256, 256],
            "actor_lr": 3e-4,
            "critic_lr": 3e-4,
            "temperature_lr": 3e-4,
            "weight_decay": 0.0,
            "initial_temperature": 1.0,
            "target_entropy_scale": -1.0,
            "log_std_min": -5.0,
        },
        "run": {"utd": 1.0},
    },
}


def tanh_log_prob(
    u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, epsilon: float = 0.0
) -> torch.Tensor:
    """log pi(tanh(u)) for u ~ N(mean, exp(log_std)^2), summed over the last dim.

    The change of variables subtracts log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), the
    form that stays finite when tanh(u) rounds to +-1; `epsilon` > 0 subtracts SB3's
    log(1 - tanh(u)^2 + epsilon) instead (at most -log(epsilon) per dimension).
    """
    gaussian = -0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    if epsilon > 0:
        jacobian = torch.log(1.0 - torch.tanh(u).pow(2) + epsilon)
    else:
        jacobian = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
    return (gaussian - jacobian).sum(-1)


class TanhGaussianActor(nn.Module):
    """obs -> tanh-squashed diagonal Gaussian over actions in [-1, 1]."""

    def __init__(self, arch: str, obs_dim: int, action_dim: int, hidden: list[int],
                 log_std_min: float, log_std_max: float, log_std_bound: str,
                 log_prob_epsilon: float = 0.0):  # fmt: skip
        super().__init__()
        if log_std_bound not in ("tanh", "clip") or not log_std_min < log_std_max:
            raise ValueError(
                f"need log_std_bound tanh or clip and log_std_min < log_std_max, got "
                f"{log_std_bound}, {log_std_min}, {log_std_max}"
            )
        if log_prob_epsilon < 0:
            raise ValueError(f"log_prob_epsilon must be >= 0, got {log_prob_epsilon}")
        self.log_prob_epsilon = log_prob_epsilon
        self.net = actor_net(arch, obs_dim, 2 * action_dim, hidden)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.smooth = log_std_bound == "tanh"

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the pre-tanh Gaussian, each B x A."""
        mean, raw = self.net(obs).float().chunk(2, dim=-1)
        if not self.smooth:
            return mean, raw.clamp(self.log_std_min, self.log_std_max)
        span = self.log_std_max - self.log_std_min
        return mean, self.log_std_min + 0.5 * span * (torch.tanh(raw) + 1.0)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(action B x A, log pi(action | obs) B), reparameterised."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * normal_like(mean)
        return torch.tanh(u), tanh_log_prob(u, mean, log_std, self.log_prob_epsilon)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


class Temperature(nn.Module):
    """The entropy temperature alpha = exp(log_alpha), tuned towards a target entropy."""

    def __init__(self, initial: float, target_entropy: float):
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(initial)))
        self.target_entropy = target_entropy

    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        """-log(alpha) * (log pi + target entropy): descending it raises alpha exactly when
        the policy's entropy (-log pi) is below the target."""
        return -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()


class Agent:
    def __init__(
        self,
        cfg: Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
    ):
        name = type(self).__module__.rsplit(".", 1)[-1]
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"{name} needs a continuous (Box) action space, got {action_space}")
        if len(observation_space.shape) != 1:
            raise ValueError(
                f"{name} needs flat vector observations, got {observation_space.shape}"
            )
        if cfg.n_critics < 1:
            raise ValueError("n_critics must be >= 1")
        if cfg.initial_temperature <= 0:
            raise ValueError(f"initial_temperature must be > 0, got {cfg.initial_temperature}")
        self.cfg = cfg
        self.device = torch.device(device)
        obs_dim = observation_space.shape[0]
        self.action_dim = int(np.prod(action_space.shape))

        self.actor = TanhGaussianActor(
            cfg.arch, obs_dim, self.action_dim, cfg.actor_hidden,
            cfg.log_std_min, cfg.log_std_max, cfg.log_std_bound, cfg.log_prob_epsilon,
        ).to(self.device)  # fmt: skip
        self.critic = self.build_critic(obs_dim + self.action_dim).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.temperature = Temperature(
            cfg.initial_temperature, cfg.target_entropy_scale * self.action_dim
        ).to(self.device)
        # SimBa normalizes observations with statistics of what the envs returned.
        self.obs_norm = RunningNorm(obs_dim).to(self.device) if cfg.arch == "simba" else None

        fused = self.device.type in ("cpu", "cuda")
        wd = cfg.weight_decay
        self.actor_opt = torch.optim.AdamW(
            self.actor.parameters(), lr=cfg.actor_lr, weight_decay=wd, fused=fused
        )
        self.critic_opt = torch.optim.AdamW(
            self.critic.parameters(), lr=cfg.critic_lr, weight_decay=wd, fused=fused
        )
        self.temperature_opt = torch.optim.Adam(
            self.temperature.parameters(), lr=cfg.temperature_lr, fused=fused
        )
        self._actor_params = list(self.actor.parameters())
        self.updates = 0
        if cfg.compile:
            compile_methods(self, SEED_AXIS)

    # ---- the critic: the pieces TQC overrides ------------------------------------------
    def build_critic(self, in_dim: int) -> nn.Module:
        cfg = self.cfg
        return critic_ensemble(cfg.arch, cfg.n_critics, in_dim, 1, cfg.critic_hidden)

    @torch.no_grad()
    def compute_target(self, batch: Batch) -> torch.Tensor:
        """Soft TD target y (B): min over target critics at a' ~ pi(s'), minus alpha log pi."""
        next_actions, next_log_prob = self.actor.sample(batch.next_obs)
        next_q = self.critic_target(torch.cat([batch.next_obs, next_actions], -1))  # E x B x 1
        soft_v = next_q.squeeze(-1).min(dim=0).values - self.temperature.alpha() * next_log_prob
        return batch.rewards + batch.discounts * (1.0 - batch.terminated) * soft_v

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum over critics of each critic's MSE to the shared target, mean Q)."""
        target = self.compute_target(batch)  # B
        q = self.critic(torch.cat([batch.obs, batch.actions], -1)).squeeze(-1)  # E x B
        return (q - target).pow(2).mean(dim=1).sum(), q.detach().mean()

    def policy_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The value (B) the actor ascends: the min over critics."""
        return self.critic(torch.cat([obs, actions], -1)).squeeze(-1).min(dim=0).values

    # ---- observations and acting --------------------------------------------------------
    def observe(self, obs: np.ndarray) -> None:
        """Observations the training envs returned (N x obs_dim): the normalizer's data."""
        if self.obs_norm is not None:
            self.obs_norm.update(torch.as_tensor(obs, device=self.device))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return obs if self.obs_norm is None else self.obs_norm(obs)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """obs: N x obs_dim -> actions N x action_dim in [-1, 1] (the mean if deterministic)."""
        obs_t = self.normalize(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        actions = self.actor.mode(obs_t) if deterministic else self.actor.sample(obs_t)[0]
        return actions.cpu().numpy()

    # ---- learning -----------------------------------------------------------------------
    def actor_loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[alpha log pi(a|s) - Q(s, a)] with a ~ pi(s) reparameterised, log pi (B))."""
        actions, log_prob = self.actor.sample(obs)
        loss = (self.temperature.alpha() * log_prob - self.policy_q(obs, actions)).mean()
        return loss, log_prob

    def temperature_loss(self, log_prob: torch.Tensor) -> torch.Tensor:
        return self.temperature.loss(log_prob)

    def prepare(self, batch: Batch) -> Batch:
        """The batch the losses see: observations normalized (SimBa), else unchanged."""
        return normalize_batch(self.obs_norm, batch)

    def begin_update(self) -> None:
        """The Python side of an update (counting it); SAC's updates have a single phase."""
        self.updates += 1

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One critic, actor and temperature update, then the target critics' Polyak step."""
        return self.update_step(batch, self.begin_update())

    def update_step(self, batch: Batch, phase: None = None) -> dict[str, torch.Tensor]:
        """The tensor work of an update (capturable: agents/graphs.py)."""
        batch = self.prepare(batch)
        critic_loss, q_mean = self.critic_loss(batch)
        optimize(self.critic_opt, critic_loss)
        actor_loss, log_prob = self.actor_loss(batch.obs)
        # Only the actor's parameters need gradients: skips the critics' weight gradients.
        optimize(self.actor_opt, actor_loss, inputs=self._actor_params)
        temperature_loss = self.temperature_loss(log_prob)
        optimize(self.temperature_opt, temperature_loss)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        return {
            "loss/critic": critic_loss.detach(),
            "loss/actor": actor_loss.detach(),
            "loss/temperature": temperature_loss.detach(),
            "q/mean": q_mean,
            "policy/alpha": self.temperature.alpha(),
            "policy/entropy": -log_prob.detach().mean(-1),
        }

    # ---- measurement --------------------------------------------------------------------
    @torch.no_grad()
    def q_estimates(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every estimate SAC exposes: the min over critics (what the actor ascends), Q1."""
        q = self.critic(torch.cat([self.normalize(obs), actions], -1)).squeeze(-1)  # E x B
        return {"min": q.min(dim=0).values, "q1": q[0]}

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The estimate the policy maximises, shape B: the soft Q, whose future entropy bonuses
        the bias harness adds to its Monte-Carlo truth (harness/bias.py)."""
        return self.policy_q(self.normalize(obs), actions)

    @torch.no_grad()
    def act_with_log_prob(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """obs N x obs_dim -> (sampled actions N x action_dim, log pi(action | obs) N)."""
        obs_t = self.normalize(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        actions, log_prob = self.actor.sample(obs_t)
        return actions.cpu().numpy(), log_prob.cpu().numpy()

    def entropy_alpha(self) -> float:
        """The temperature alpha the critic's soft target uses now."""
        return float(self.temperature.alpha())

    # ---- checkpoints --------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        mods = {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "temperature": self.temperature,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
            "temperature_opt": self.temperature_opt,
        }
        if self.obs_norm is not None:
            mods["obs_norm"] = self.obs_norm
        return mods

    def state_dict(self) -> dict:
        return {
            **{name: m.state_dict() for name, m in self.modules().items()},
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        for name, m in self.modules().items():
            m.load_state_dict(state[name])
        self.updates = int(state["updates"])
