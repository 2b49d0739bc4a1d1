"""SPOT: Supported Policy OpTimization, with a VAE model of the behaviour density.

Paper: Wu, Wu, Qiu, Wang, Long, "Supported Policy Optimization for Offline Reinforcement
Learning", NeurIPS 2022 (arXiv 2202.06239). Reference implementation: github.com/thuml/SPOT.

TD3+BC's loop and state normalization (agents/td3_bc.py) with a density-based regulariser:
  density: a conditional VAE q(z | s, a), p(a | s, z) fitted once to the dataset; its negative
           ELBO, per sample, is the estimate of -log pi_beta(a | s) (paper, Eq. 8):
             L(s, a) = mean_j (a_j - mu_dec(s, z)_j)^2 + beta_kl * KL(q(z | s, a) || N(0, I)),
             the KL averaged over latent dimensions, z ~ q(z | s, a) (one sample), beta_kl 0.5;
  actor:   minimise  -mean Q1(s, pi(s)) / mean|Q1(s, pi(s))| + lambda * mean L(s, pi(s))
           (paper, Eq. 9; Q normalized as TD3+BC does, |Q| detached), lambda per dataset
           (configs/spot/*.yaml hold the paper's values).
The VAE (encoder and decoder 2 x 750 ReLU, latent 2 dim(A), log-std clamped to [-4, 15], the
decoder's mean squashed by tanh; Adam 1e-3, 100k steps of batch 256) is trained before the
agent's first update and is frozen afterwards. It is cached on disk (`fit_dataset`'s
cache_dir, beside the dataset) under a key made of the dataset's bytes and every VAE setting,
so later runs on the same data reuse it and any change to the data or settings retrains it.

The actor has dropout (p = 0.1, `actor_dropout`) after each hidden layer, as the authors'
code does for the locomotion tasks (SPOT.py: `Actor(..., dropout=actor_dropout)` wraps l1 and
l2 in nn.Dropout; main.py's default 0.1, which none of the MuJoCo configs overrides; the
AntMaze configs set 0). It is active wherever the authors' modules are in training mode, which
is every training forward pass: pi(s) in the actor loss, and the target actor pi'(s') in the
TD target (a deepcopy of the training-mode actor, never switched to eval). Acting is in eval
mode (their `select_action`: actor.eval(), forward, actor.train()), so evaluation is
deterministic. SPOT runs recorded before this (docs/offline.csv up to commit 3e96159) trained
without dropout; `--set actor_dropout=0` reproduces them.

Deliberate deviations from the reference code: none in the mathematics; the VAE sees the
normalized states the actor and critics see; dropout sits after the ReLU instead of before it
(relu(dropout(x)) = dropout(relu(x)) for the same mask, the inverted-dropout scale being >= 0).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents import td3_bc
from agents.buffer import Batch
from agents.nets import mlp
from core.progress import Progress
from core.runs import atomic_torch_save, torch_load

OFFLINE = True


@dataclass
class Config(td3_bc.Config):
    alpha: float = 1.0
    """Weight of the normalized Q term: SPOT's actor loss is -Q / mean|Q| (alpha 1)."""
    spot_lambda: float = 0.1
    """Weight lambda of the density regulariser (paper, per dataset: hopper-medium 0.1)."""
    vae_hidden: int = 750
    """Width of the VAE's two hidden layers, in the encoder and in the decoder."""
    vae_latent_scale: int = 2
    """Latent dimension = vae_latent_scale * dim(A)."""
    vae_kl_weight: float = 0.5
    """beta of the ELBO: weight of the KL term."""
    vae_lr: float = 1e-3
    """Adam learning rate of the VAE."""
    vae_steps: int = 100_000
    """Gradient steps of the VAE's pretraining (batch = batch_size)."""
    actor_dropout: float = 0.1
    """Dropout after each hidden layer of the actor, training only (the authors' code: 0.1)."""


class VAE(nn.Module):
    """Conditional VAE of actions given states (module doc)."""

    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int, hidden: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp(obs_dim + action_dim, 2 * latent_dim, [hidden, hidden])
        self.decoder = mlp(obs_dim + latent_dim, action_dim, [hidden, hidden])

    def neg_elbo(self, obs: torch.Tensor, actions: torch.Tensor, kl_weight: float) -> torch.Tensor:
        """Per-sample negative ELBO (B): reconstruction MSE + kl_weight * mean KL."""
        mean, log_std = self.encoder(torch.cat([obs, actions], -1)).chunk(2, dim=-1)  # B x Z
        log_std = log_std.clamp(-4.0, 15.0)
        std = log_std.exp()
        z = mean + std * torch.randn_like(std)
        recon = torch.tanh(self.decoder(torch.cat([obs, z], -1)))  # B x A
        mse = (recon - actions).pow(2).mean(-1)
        kl = -0.5 * (1 + 2 * log_std - mean.pow(2) - std.pow(2)).mean(-1)
        return mse + kl_weight * kl


def with_dropout(net: nn.Sequential, p: float) -> nn.Sequential:
    """`net` (an `mlp`) with nn.Dropout(p) after every hidden ReLU. The layers themselves are
    reused, so the optimizer that already holds their parameters keeps training them, and each
    ReLU becomes ReLU -> Dropout in its own slot, so the state_dict keys do not depend on p."""
    return nn.Sequential(
        *(nn.Sequential(m, nn.Dropout(p)) if isinstance(m, nn.ReLU) else m for m in net)
    )


VAE_SEED = 0  # the behaviour VAE's own seed (fit_dataset)


class Agent(td3_bc.Agent):
    def __init__(
        self,
        cfg: Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
    ):
        super().__init__(cfg, observation_space, action_space, device)
        if cfg.spot_lambda < 0 or cfg.vae_steps < 0:
            raise ValueError("spot_lambda and vae_steps must be >= 0")
        if not 0.0 <= cfg.actor_dropout < 1.0:
            raise ValueError(f"actor_dropout must be in [0, 1), got {cfg.actor_dropout}")
        if cfg.actor_dropout > 0:
            if cfg.arch != "mlp":
                raise ValueError("actor_dropout needs arch mlp (set actor_dropout=0 for simba)")
            # Same initial weights as without dropout; the modules stay in training mode (as
            # the authors' do), so pi(s) in the actor loss and pi'(s') in the target drop units.
            self.actor = with_dropout(self.actor, cfg.actor_dropout)
            self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.obs_dim = observation_space.shape[0]
        self.vae = self.new_vae()

    def new_vae(self) -> VAE:
        latent = self.cfg.vae_latent_scale * self.action_dim
        vae = VAE(self.obs_dim, self.action_dim, latent, self.cfg.vae_hidden).to(self.device)
        return vae.requires_grad_(False)  # frozen once fitted; the actor's gradient flows through

    # ---- the behaviour model ------------------------------------------------------------
    def vae_key(self, observations: np.ndarray, actions: np.ndarray) -> str:
        """Changes with the data's bytes and with anything that changes the fitted VAE."""
        cfg = self.cfg
        h = hashlib.blake2b(digest_size=12)
        for array in (observations, actions):
            array = np.ascontiguousarray(array)
            h.update(str((array.shape, array.dtype.str)).encode())
            h.update(memoryview(array).cast("B"))
        settings = (cfg.vae_hidden, cfg.vae_latent_scale, cfg.vae_kl_weight, cfg.vae_lr,
                    cfg.vae_steps, cfg.batch_size, cfg.normalize_states,
                    "seed", VAE_SEED)  # fmt: skip
        h.update(repr(settings).encode())
        return h.hexdigest()

    def fit_dataset(
        self, observations: np.ndarray, actions: np.ndarray, cache_dir: Path | None = None
    ) -> None:
        """State statistics, then the VAE: loaded from the cache when the key matches, else
        initialised and trained from its own seed (VAE_SEED) and cached. The fit is a function
        of the data and the VAE's settings alone, so a cached fit is the one training would
        make, every seed of a dataset shares it, and torch's random stream, which the run's
        seed fixes, is the same after the fit whether it was trained or loaded."""
        super().fit_dataset(observations, actions, cache_dir)
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"spot-vae-{self.vae_key(observations, actions)}.pt"
            if path.is_file():
                self.vae.load_state_dict(torch_load(path, "SPOT VAE cache"))
                print(f"SPOT VAE: loaded the cached fit {path}", flush=True)
                return
        obs = self.normalize(torch.as_tensor(observations, device=self.device))
        acts = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the run's own stream is left as it was
            torch.manual_seed(VAE_SEED)
            self.vae = self.new_vae()
            self.train_vae(obs, acts, progress=True)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(self.vae.state_dict(), path)
            print(f"SPOT VAE: cached for later runs on this data: {path}", flush=True)

    def train_vae(
        self, obs: torch.Tensor, actions: torch.Tensor, progress: bool = False
    ) -> list[float]:
        """vae_steps Adam steps on uniform minibatches of (normalized) states and actions;
        returns the loss every 1000 steps. With `progress`, shows how far it is (a bar on a
        terminal, else a line every tenth or 30 s, core/progress.py) with the latest loss:
        the pretraining takes about half an hour on one CPU core."""
        cfg = self.cfg
        shown = Progress(cfg.vae_steps, "SPOT VAE pretraining") if progress else None
        self.vae.requires_grad_(True)
        opt = torch.optim.Adam(self.vae.parameters(), lr=cfg.vae_lr)
        losses = []
        for step in range(cfg.vae_steps):
            idx = torch.randint(0, obs.shape[0], (cfg.batch_size,), device=self.device)
            loss = self.vae.neg_elbo(obs[idx], actions[idx], cfg.vae_kl_weight).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 1000 == 0:
                losses.append(loss.item())
            if shown is not None:  # the loss read every 1000 steps only: .item() waits for a GPU
                shown.update(note=f"negative ELBO {losses[-1]:.4f}" if step % 1000 == 0 else None)
        if shown is not None:
            shown.close()
        self.vae.requires_grad_(False)
        return losses

    # ---- the actor ----------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """TD3's act with the actor in eval mode (no dropout), as the authors' select_action;
        training mode is restored for the updates."""
        self.actor.eval()
        try:
            return super().act(obs, deterministic)
        finally:
            self.actor.train()

    def regulariser(
        self, batch: Batch, actions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """lambda * mean negative ELBO of (s, pi(s)): low where the data has support."""
        neg_elbo = self.vae.neg_elbo(batch.obs, actions, self.cfg.vae_kl_weight)  # B
        return self.cfg.spot_lambda * neg_elbo.mean(), {"loss/neg_elbo": neg_elbo.mean()}

    # ---- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**super().state_dict(), "vae": self.vae.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.vae.load_state_dict(state["vae"])
