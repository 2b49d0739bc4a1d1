"""REValueD: regularised ensemble value-decomposition for factorised discrete actions.

Papers: Ireland & Montana, "REValueD: Regularised Ensemble Value-Decomposition for
Factorisable Markov Decision Processes", ICLR 2024 (arXiv 2401.08850); built on DecQN,
Seyde et al., "Solving Continuous Control via Q-learning", ICLR 2023. Reference
implementation: github.com/davidireland3/REValueD (it has no regularisation loss).

An action has D sub-actions (one per dimension, `train.py --bins N` makes them from a Box
space; a Discrete space is D = 1). Each of K critics outputs utilities U_k,i(s, a_i) for every
dimension i and bin, and
  Q_k(s, a) = mean_i U_k,i(s, a_i);      greedy action: a_i = argmax_b mean_k U_k,i(s, b);
  target    y = c R_n + gamma^n (1 - terminated) * mean_i max_b mean_k U'_k,i(s_n, b)
            (n-step return from the buffer, target networks U'; the ensemble's mean utility
            is maximised, as ../shared/REFERENCES.md orders it and the authors' REValueD does
            (`revalued.py`, update type 'Mean') — not the mean of each member's own max,
            which is larger by Jensen's inequality); c is `reward_scale` (1 unless a preset
            scales rewards; the critics then estimate c x the return);
            with `double_q` (DecQN's target, the authors' `decqn.py` and Seyde et al.'s
            `learning.py`): the online critics pick b*_i = argmax_b mean_k U_k,i(s_n, b) and
            the target critics value it, mean_i mean_k U'_k,i(s_n, b*_i);
  TD loss   mean_k mean_batch Huber(Q_k(s, a) - y);
  reg loss  mean_k mean_batch mean_i w_k,i Huber(U_k,i(s, a_i) - y),
            w_k,i = 1 - exp(-|y - U_k,i(s, a_i)|), detached;
  loss      TD + reg_weight * reg;  Adam, gradient-norm clip, Polyak targets;
  exploring epsilon-greedy, epsilon linear from epsilon_start to epsilon_end over
  epsilon_decay_steps acting steps; with probability epsilon the whole action is random.

The regularisation loss: the authors' public code omits it and the paper's text could not be
retrieved here (searches returned only its abstract), so this is the reading given in
../shared/REFERENCES.md and issue 7 — a per-dimension loss pulling each utility towards the
shared target, weighted by a function of its own TD error (1 - exp(-|delta|), detached), added
with weight beta (`reg_weight`, 0.5 here, also unconfirmed). `--set n_members=1 --set
reg_weight=0 --set double_q=true` is plain DecQN as its authors wrote it;
`configs/revalued/hopper-cpu-noreg.yaml` ablates the loss alone.
On Hopper (2 seeds, docs/results.md) that ablation matched REValueD's bias and returns within
seed noise: the ensemble made the gains over DecQN.

Deliberate deviations: while exploiting, the authors' code acts greedily on one randomly
drawn member (their code calls REValueD "randomised"); here the agent acts on the ensemble
mean, as the greedy action above, exploring only by epsilon. The critic is SimBa's residual
network (agents/nets.py: Linear, then residual blocks x + W2 relu(W1 LayerNorm(x)) with inner
width 4h, a final LayerNorm, a linear head), one batched ensemble; hidden [512] is one block of
width 512. The TD loss averages over members where the authors' REValueD sums them: Adam is
invariant to that scale, only the gradient-norm clip sees it (at 1/K of the authors' norm).
The authors make one gradient update every 5 env steps (`utd: 0.2` in the paper's
preset); the small -cpu presets need one per step (docs/results.md).

Pixels (`encoder = impala`, Procgen's uint8 64 x 64 x 3 frames, Discrete(15) = D 1 x 15 bins,
so REValueD is an ensemble DQN there): one IMPALA-CNN (agents/nets.py, channels last) feeds its
256 features to the K members' heads, one batched `critic_ensemble("mlp", K, 256, D * bins,
hidden)` (hidden [512]: one 512-unit layer per head, as Bootstrapped DQN's heads; plain MLP
heads because the encoder already ends in a ReLU'd dense layer). The members share the encoder,
as in Bootstrapped DQN (Osband et al. 2016) and EDE (facebookresearch/ede, a QR-DQN ensemble on
Procgen); their diversity comes from the heads' independent initialisation. K separate IMPALA
encoders would cost K x 622k parameters and K x the convolutions, which dominate the update.
The encoder learns from every member's loss (their mean, one backward pass). Under bf16
autocast the encoder and hidden layers run in bfloat16, the heads' output layer in fp32
(`fp32_head`), and utilities are cast to fp32 before every target and Huber loss.
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
    ImpalaCNN,
    check_encoder,
    compile_methods,
    critic_ensemble,
    optimize,
    soft_update,
)

# Its actions are bin indices chosen greedily: evaluations may be epsilon-greedy (run config's
# eval_epsilon, harness.evaluation.EpsilonGreedy).
GREEDY_DISCRETE = True

# The method `update` calls for its tensor maths: a seed-stacked update (training/seeds.py)
# runs it under torch.func.vmap, one slice per seed. SEED_SHARED: counters every seed has
# equal in lockstep, which the stacked template copies from the seeds before its update.
SEED_AXIS = ("losses",)
SEED_SHARED = ("acting_steps",)

# `train.py --agent revalued --env procgen:GAME` starts from these (over the class defaults,
# under a preset and flags): the pixel agent, an ensemble double DQN on one IMPALA-CNN, sized
# as configs/revalued/procgen-coinrun-cpu.yaml says why (EDE's Procgen DQN, shrunk for a CPU).
# reward_scale 0.1: Procgen pays about 1-10 an event (coinrun 10), scaled to DQN's [0, 1] scale.
PROCGEN_DEFAULTS = {
    "agent": {"encoder": "impala", "hidden": [512], "n_members": 5, "double_q": True,
              "reg_weight": 0.0, "lr": 2.5e-4, "batch_size": 32, "gamma": 0.99, "n_step": 3,
              "reward_scale": 0.1, "grad_clip": 10.0, "learning_starts": 2000,
              "epsilon_start": 1.0, "epsilon_end": 0.1, "epsilon_decay_steps": 50_000,
              "buffer_size": 100_000},
    # a checkpoint writes the 2.5 GB uint8 buffer: every 30 minutes, not every 2
    "run": {"num_envs": 8, "utd": 0.25, "eval_epsilon": 0.05, "checkpoint_seconds": 1800.0,
            "precision": "auto"},  # bf16 where native (one optimizer step an update: safe)
}  # fmt: skip


@dataclass
class Config:
    encoder: str = "simba"
    """simba (residual MLP critic, flat vector obs) or impala (shared IMPALA-CNN, uint8 frames)."""
    hidden: list[int] = field(default_factory=lambda: [512])
    """simba: residual blocks, one width per block (paper: 512); impala: each head's MLP layers."""
    n_members: int = 10
    """Critics K in the ensemble; the target averages them. 1 = DecQN."""
    reg_weight: float = 0.5
    """beta: weight of the regularisation loss (0 = DecQN's loss). Not confirmed by the paper."""
    double_q: bool = False
    """Online critics pick the next sub-actions, target critics value them (DecQN's double
    Q-learning); False: the target critics' own max (the authors' REValueD)."""
    lr: float = 1e-4
    """Adam learning rate."""
    batch_size: int = 256
    """Transitions per gradient update."""
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 3
    """Steps of the n-step return (the buffer computes it, cut at episode ends)."""
    tau: float = 0.005
    """Polyak rate of the target critics (every update)."""
    huber_delta: float = 1.0
    """Huber loss threshold."""
    reward_scale: float = 1.0
    """c: targets use c x the n-step reward, so the critics learn c x the return, on the Huber
    threshold's scale (Nature DQN clips rewards to [-1, 1]; EDE normalizes returns). `q_value`
    and the logged q/mean and target/member_std divide by c: the env's reward units."""
    grad_clip: float = 40.0
    """Gradient-norm clip of each update."""
    compile: bool = False
    """torch.compile the loss methods (speed only; same mathematics, another random stream)."""
    epsilon_start: float = 1.0
    """Exploration probability at the start of acting."""
    epsilon_end: float = 0.05
    """Exploration probability after the decay."""
    epsilon_decay_steps: int = 20_000
    """Acting steps (summed over envs) of the linear decay. The authors' code multiplies
    epsilon by 0.999 at each exploratory action, which reaches 0.05 after about 19k acting
    steps; 20k linear steps approximate that (100k explored so much that Hopper's greedy
    return was still under 200 after 60k steps, -cpu preset)."""
    learning_starts: int = 5_000
    """Env steps of uniform-random actions before the policy acts and updates begin."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions."""


class ImpalaEnsemble(nn.Module):
    """K critics on one shared IMPALA-CNN: uint8 B x H x W x C -> K x B x out_dim."""

    def __init__(self, obs_shape: tuple, members: int, out_dim: int, hidden: list[int]):
        super().__init__()
        self.encoder = ImpalaCNN(obs_shape, channels_last=True)
        self.heads = critic_ensemble("mlp", members, self.encoder.out_dim, out_dim, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.heads(self.encoder(obs))  # B x 256 features -> K x B x out_dim


class Agent:
    def __init__(
        self,
        cfg: Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
    ):
        if isinstance(action_space, gym.spaces.Discrete):
            nvec = [int(action_space.n)]
            self.flat = True  # actions are scalars, one dimension
        elif isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
            nvec = [int(n) for n in action_space.nvec]
            self.flat = False
        else:
            raise ValueError(
                f"revalued needs a Discrete or MultiDiscrete action space (continuous envs: "
                f"train.py --bins N), got {action_space}"
            )
        if len(set(nvec)) != 1:
            raise ValueError(f"revalued needs the same number of bins per dimension, got {nvec}")
        shape = tuple(observation_space.shape)
        check_encoder(cfg.encoder, observation_space, "simba")
        if cfg.n_members < 1 or cfg.n_step < 1 or cfg.reg_weight < 0 or cfg.reward_scale <= 0:
            raise ValueError(
                "need n_members >= 1, n_step >= 1, reg_weight >= 0 and reward_scale > 0"
            )
        self.cfg = cfg
        self.device = torch.device(device)
        self.dims, self.bins = len(nvec), nvec[0]
        self.pixels = cfg.encoder == "impala"
        out_dim = self.dims * self.bins
        if self.pixels:
            critic: nn.Module = ImpalaEnsemble(shape, cfg.n_members, out_dim, cfg.hidden)
        else:
            critic = critic_ensemble("simba", cfg.n_members, shape[0], out_dim, cfg.hidden)
        self.critic = critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.huber = nn.HuberLoss(reduction="none", delta=cfg.huber_delta)
        self.updates = 0
        if cfg.compile:
            compile_methods(self, SEED_AXIS)
        self.acting_steps = 0
        # Exploration draws, seeded from torch's generator (which the run's seed fixes).
        self.rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))

    # ---- the decomposition --------------------------------------------------------------
    def utilities(self, net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """U_k,i(s, b) for every member, dimension and bin: K x B x D x bins, fp32 even under
        bf16 autocast, so targets and Huber losses are computed in fp32."""
        return net(obs).float().unflatten(-1, (self.dims, self.bins))

    def _index(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as B x D int64 bin indices (a Discrete env's B actions become B x 1)."""
        actions = actions.long()
        return actions.unsqueeze(-1) if self.flat or actions.dim() == 1 else actions

    def chosen_utilities(self, u: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """U_k,i(s, a_i): K x B x D."""
        index = self._index(actions).expand(u.shape[0], -1, -1).unsqueeze(-1)  # K x B x D x 1
        return u.gather(-1, index).squeeze(-1)

    @torch.no_grad()
    def compute_target(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(y: B, each member's own target: K x B, for their spread). Each member's own is
        mean_i max_b U'_k,i, or with double_q mean_i U'_k,i(b*_i) at the online choice b*."""
        next_u = self.utilities(self.critic_target, batch.next_obs)  # K x B x D x bins
        if self.cfg.double_q:
            choice = self.greedy(batch.next_obs)  # B x D, from the online critics
            index = choice[None, :, :, None].expand(next_u.shape[0], -1, -1, 1)
            per_member = next_u.gather(-1, index).squeeze(-1).mean(dim=-1)  # K x B
            value = per_member.mean(dim=0)  # B: mean_i mean_k U'_k,i(b*_i)
        else:
            per_member = next_u.max(dim=-1).values.mean(dim=-1)  # K x B
            value = next_u.mean(dim=0).max(dim=-1).values.mean(dim=-1)  # B
        y = self.cfg.reward_scale * batch.rewards
        y = y + batch.discounts * (1.0 - batch.terminated) * value
        return y, per_member

    def losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD + reg_weight * regularisation (module doc), with their metrics."""
        y, per_member = self.compute_target(batch)
        chosen = self.chosen_utilities(self.utilities(self.critic, batch.obs), batch.actions)
        q = chosen.mean(dim=-1)  # K x B
        td = self.huber(q, y.expand_as(q)).mean()
        delta = y[None, :, None] - chosen  # K x B x D
        weight = 1.0 - torch.exp(-delta.detach().abs())
        reg = (weight * self.huber(chosen, y[None, :, None].expand_as(chosen))).mean()
        metrics = {
            "loss/td": td.detach(),
            "loss/reg": reg.detach(),
            "q/mean": q.detach().mean() / self.cfg.reward_scale,  # env reward units
            # Spread of the members' own targets: the variance the ensemble averages away.
            "target/member_std": per_member.std(dim=0, unbiased=False).mean()
            / self.cfg.reward_scale
            if per_member.shape[0] > 1
            else torch.zeros((), device=y.device),
        }
        return td + self.cfg.reg_weight * reg, metrics

    # ---- acting -------------------------------------------------------------------------
    def epsilon(self) -> float:
        cfg = self.cfg
        frac = min(1.0, self.acting_steps / max(1, cfg.epsilon_decay_steps))
        return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """argmax_b mean_k U_k,i(s, b) per dimension: B x D."""
        return self.utilities(self.critic, obs).mean(dim=0).argmax(dim=-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """obs: N x obs_dim (or N x H x W x C uint8) -> N x D bin indices (N for Discrete)."""
        obs_t = torch.as_tensor(obs, device=self.device)
        obs_t = obs_t if self.pixels else obs_t.float()  # the encoder scales uint8 frames
        actions = self.greedy(obs_t).cpu().numpy()
        if not deterministic:
            explore = self.rng.random(len(actions)) < self.epsilon()
            actions[explore] = self.rng.integers(0, self.bins, size=actions[explore].shape)
            self.acting_steps += len(actions)
        return actions[:, 0] if self.flat else actions

    # ---- learning -----------------------------------------------------------------------
    def begin_update(self) -> None:
        """The Python side of an update (counting it); one phase."""
        self.updates += 1

    def update_step(self, batch: Batch, phase: None = None) -> dict[str, torch.Tensor]:
        """The tensor work of an update (capturable: agents/graphs.py)."""
        loss, metrics = self.losses(batch)
        metrics["grad_norm"] = optimize(self.opt, loss, max_norm=self.cfg.grad_clip)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        return metrics

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        metrics = self.update_step(batch, self.begin_update())
        metrics["explore/epsilon"] = torch.tensor(self.epsilon())
        return metrics

    # ---- measurement --------------------------------------------------------------------
    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The decomposed, ensemble-averaged estimate mean_k mean_i U_k,i(s, a_i) / c: B, in
        the env's reward units."""
        u = self.utilities(self.critic, obs)
        q = self.chosen_utilities(u, actions).mean(dim=-1).mean(dim=0)
        return q / self.cfg.reward_scale

    # ---- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "opt": self.opt.state_dict(),
            "updates": self.updates,
            "acting_steps": self.acting_steps,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.opt.load_state_dict(state["opt"])
        self.updates = int(state["updates"])
        self.acting_steps = int(state["acting_steps"])
        self.rng.bit_generator.state = state["rng"]
