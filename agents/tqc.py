"""TQC: Truncated Quantile Critics.

Paper: Kuznetsov, Shvechikov, Grishin, Vetrov, "Controlling Overestimation Bias with Truncated
Mixture of Continuous Distributional Quantile Critics", ICML 2020 (arXiv 2005.04269).
Reference implementation: github.com/SamsungLabs/tqc_pytorch.

The algorithm: SAC (agents/sac.py: same tanh-Gaussian actor, same learned temperature) with N
distributional critics, each predicting M quantiles z_{n,m}(s, a) at fractions
tau_m = (2m + 1) / 2M. The target pools the N*M atoms of the target critics at (s', a'),
a' ~ pi(s'), sorts them, and drops the largest d*N (d = `drop_per_net`):
  y_k = r + gamma^n * (1 - terminated) * (z_(k)(s', a') - alpha * log pi(a'|s')),  k < (M-d)N
and every z_{n,m}(s, a) regresses onto every y_k with the quantile Huber loss (kappa = 1):
  rho(u) = |tau_m - 1{u < 0}| * huber(u),  u = y_k - z_{n,m}(s, a),  averaged over n, m, k, B.
The actor minimises E[alpha log pi(a|s) - mean_{n,m} z_{n,m}(s, a)] (all atoms, untruncated).

Defaults are the paper's: 5 critics x 25 quantiles, critic 512-512-512, actor 256-256, Adam
3e-4 for actor, critics and alpha, target entropy -dim(A), drop 2 per net (presets set the
per-env counts: Hopper 5, HalfCheetah 0, Walker2d/Ant/Humanoid 2). Warm-up follows the
reference: no random-action phase (`random_steps = 0`, the untrained policy collects), and
updates start once `learning_starts = batch_size` transitions exist.

Deviations from the reference (none changes the mathematics): critics are one batched
ensemble; the actor loss backpropagates only into the actor and is built after the critic step
(the reference builds it before, with the old critic; sb3-contrib after, as here). Time-limit
truncations bootstrap, as in the reference (which drops gym's TimeLimit).

sb3-contrib's TQC, with the same settings and weights, computes the same update to float
rounding except log pi, which it takes as log N(u) - log(1 - tanh(u)^2 + 1e-6) (ours is exact,
as the reference's; `log_prob_epsilon = 1e-6` gives theirs), and its warm-up acts uniformly at
random for learning_starts steps (`random_steps = learning_starts`); docs/peer-parity.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from agents import sac
from agents.buffer import Batch
from agents.nets import critic_ensemble

SEED_AXIS = sac.SEED_AXIS  # SAC's update and losses, TQC's critic pieces (training/seeds.py)


@dataclass
class Config(sac.Config):
    arch: str = "mlp"
    """mlp (the paper) or simba (residual blocks + running observation normalization)."""
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer sizes of the actor (paper: 256-256)."""
    critic_hidden: list[int] = field(default_factory=lambda: [512, 512, 512])
    """Hidden layer sizes of each critic (paper: 512-512-512)."""
    n_critics: int = 5
    """Distributional critics N."""
    n_quantiles: int = 25
    """Quantiles M predicted by each critic."""
    drop_per_net: int = 2
    """Atoms dropped from the top of the pooled target per critic (d; d*N dropped in all)."""
    actor_lr: float = 3e-4
    """Learning rate of the actor (Adam)."""
    critic_lr: float = 3e-4
    """Learning rate of the critics (Adam)."""
    temperature_lr: float = 3e-4
    """Learning rate of log(alpha) (Adam)."""
    weight_decay: float = 0.0
    """AdamW weight decay of actor and critics (0 = Adam, the paper)."""
    initial_temperature: float = 1.0
    """alpha at the start of training."""
    target_entropy_scale: float = -1.0
    """Target entropy = target_entropy_scale * dim(A)."""
    log_std_min: float = -20.0
    """Lower bound of the actor's log standard deviation (reference: [-20, 2])."""
    log_std_bound: str = "clip"
    """How log sigma is kept in bounds: clip (the reference's clamp) or tanh (SimBa)."""
    learning_starts: int = 256
    """Env steps before updates begin (reference: once a batch is available)."""
    random_steps: int = 0
    """Env steps of uniform-random actions at the start (reference: none)."""


class QuantileHuberLoss(torch.autograd.Function):
    """Mean quantile Huber loss of quantiles (E x B x M) against constant target atoms (B x K).

    rho(u) = |tau_m - 1{u < 0}| * huber_kappa(u) with u = y_k - z_m and tau_m = (2m + 1) / 2M,
    averaged over every (e, b, m, k). The gradient with respect to the quantiles is written out,
    d rho / d z = -|tau_m - 1{u < 0}| * clamp(u, -kappa, kappa), and computed in the forward
    pass: autograd through the E x B x M x K pairwise tensor was most of TQC's update time.
    The targets get no gradient (TQC's are computed under no_grad).
    """

    # torch.func.vmap derives the batched rule (a seed-stacked update, training/seeds.py), so
    # forward takes no ctx: it returns the loss and its gradient, which setup_context keeps.
    generate_vmap_rule = True

    @staticmethod
    def forward(quantiles: torch.Tensor, target: torch.Tensor, kappa: float = 1.0):
        m = quantiles.shape[-1]
        taus = (torch.arange(m, device=quantiles.device, dtype=quantiles.dtype) + 0.5) / m
        taus = taus[:, None]  # M x 1
        # Eight passes over the E x B x M x K pairwise tensor (it is most of TQC's update time):
        u = target[None, :, None, :] - quantiles[..., None]
        c = u.clamp(-kappa, kappa)
        # weight |tau - 1{u < 0}| times c, the clipped u: -(d rho / d z) term by term
        weighted = torch.where(u < 0, 1.0 - taus, taus).mul_(c)
        grad = weighted.sum(-1).mul_(-1.0 / u.numel())
        # huber(u) = c (u - c / 2): u^2 / 2 inside [-kappa, kappa], kappa (|u| - kappa / 2) outside
        loss = torch.dot(weighted.reshape(-1), u.sub_(c, alpha=0.5).reshape(-1)) / u.numel()
        return loss, grad

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad = output[1]
        ctx.mark_non_differentiable(grad)
        ctx.save_for_backward(grad)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor, _):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None


def quantile_huber_loss(
    quantiles: torch.Tensor, target: torch.Tensor, kappa: float = 1.0
) -> torch.Tensor:
    """Mean quantile Huber loss of quantiles (E x B x M) against target atoms (B x K)."""
    return QuantileHuberLoss.apply(quantiles, target.detach(), kappa)[0]


def truncated_atoms(atoms: torch.Tensor, drop: int) -> torch.Tensor:
    """E x B x M atoms -> B x (E*M - drop): the pooled atoms, sorted, the largest `drop` removed."""
    pooled = atoms.permute(1, 0, 2).reshape(atoms.shape[1], -1)  # B x E*M
    keep = pooled.shape[1] - drop
    return pooled.sort(dim=1).values[:, :keep]


class Agent(sac.Agent):
    """SAC's actor, temperature, acting and update order; the critic pieces below differ."""

    def __init__(self, cfg: Config, observation_space, action_space, device="cpu"):
        if cfg.n_quantiles < 1:
            raise ValueError(f"n_quantiles must be >= 1, got {cfg.n_quantiles}")
        if not 0 <= cfg.drop_per_net < cfg.n_quantiles:
            raise ValueError(f"drop_per_net must be in [0, n_quantiles), got {cfg.drop_per_net}")
        self.drop = cfg.drop_per_net * cfg.n_critics
        super().__init__(cfg, observation_space, action_space, device)

    def build_critic(self, in_dim: int) -> nn.Module:
        cfg = self.cfg
        return critic_ensemble(cfg.arch, cfg.n_critics, in_dim, cfg.n_quantiles, cfg.critic_hidden)

    @torch.no_grad()
    def compute_target(self, batch: Batch) -> torch.Tensor:
        """Target atoms B x (N*M - d*N): truncated pooled target quantiles, soft and discounted."""
        next_actions, next_log_prob = self.actor.sample(batch.next_obs)
        next_z = self.critic_target(torch.cat([batch.next_obs, next_actions], -1))  # N x B x M
        kept = truncated_atoms(next_z, self.drop)
        soft = kept - self.temperature.alpha() * next_log_prob[:, None]
        not_done = (batch.discounts * (1.0 - batch.terminated))[:, None]
        return batch.rewards[:, None] + not_done * soft

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantile Huber loss of every critic's atoms against the target atoms, mean Q)."""
        target = self.compute_target(batch)  # B x K
        z = self.critic(torch.cat([batch.obs, batch.actions], -1))  # N x B x M
        return quantile_huber_loss(z, target), z.detach().mean()

    def policy_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The value (B) the actor ascends: the mean of all N*M atoms."""
        return self.critic(torch.cat([obs, actions], -1)).mean(dim=(0, 2))

    @torch.no_grad()
    def q_estimates(self, obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """mean: all atoms (what the actor ascends); truncated: the mean of the atoms left after
        dropping the top d*N, as in the target."""
        z = self.critic(torch.cat([self.normalize(obs), actions], -1))  # N x B x M
        return {"mean": z.mean(dim=(0, 2)), "truncated": truncated_atoms(z, self.drop).mean(1)}
