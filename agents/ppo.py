"""PPO: Proximal Policy Optimization with the Procgen paper's settings.

Papers: Schulman et al., "Proximal Policy Optimization Algorithms" (arXiv 1707.06347); Cobbe
et al., "Leveraging Procedurally Generated Content for Benchmarking Reinforcement Learning",
ICML 2020 (arXiv 1912.01588). Reference implementation: github.com/openai/train-procgen
(`train_procgen/train.py`), which runs baselines' ppo2 (`baselines/ppo2/model.py`) with
`VecNormalize(ob=False)` and the IMPALA-CNN (`build_impala_cnn`, depths 16/32/32, dense 256).

The algorithm (ppo2's Model and Runner):
  rollout:  `num_steps` steps of every env with the sampling policy; GAE(gamma, lambda) over it,
            bootstrapped with V(last obs), no bootstrap across an episode end (`compute_gae`);
  update:   `epochs` passes over the rollout in `minibatches` shuffled minibatches; per step
            A <- (A - mean A) / (std A + 1e-8) over the minibatch, r = pi(a|s) / pi_old(a|s),
            L_pi = mean max(-A r, -A clip(r, 1 - clip, 1 + clip)),
            V_clip = V_old + clip(V - V_old, -clip, clip),
            L_V = 0.5 mean max((V - R)^2, (V_clip - R)^2),
            loss = L_pi - ent_coef * entropy + vf_coef * L_V; global grad-norm clip; Adam.
  rewards:  divided by the running std of each env's discounted return (gamma 0.99,
            VecNormalize's default; train-procgen does not pass its 0.999) and clipped to
            [-10, 10] (`scale_rewards`).

Networks: one encoder shared by a logits head and a value head, as baselines' default
(`value_network` shared). The heads are orthogonally initialised with gains 0.01 (logits) and 1
(value), zero biases, as baselines' `fc`; the IMPALA-CNN keeps agents/nets.py's initialisation
(see its notes). `encoder = mlp` is for vector observations (CartPole): baselines' `mlp`
(64-64, tanh, orthogonal gain sqrt(2)).

Where the references differ, and deliberate deviations from train-procgen:
- The learning rate is constant, as in train-procgen and CleanRL's ppo_procgen (anneal_lr off).
- The reward scaler discounts with 0.99, train-procgen's VecNormalize default; CleanRL's
  ppo_procgen passes gamma 0.999 to NormalizeReward (`--set reward_gamma=0.999` for that).
- A batch that minibatches do not divide splits unevenly (sizes differ by at most one);
  ppo2 asserts divisibility (64 x 256 / 8 divides).
- approx_kl is baselines' 0.5 * mean((log pi - log pi_old)^2); CleanRL logs the k3 estimator.
- Advantages are normalized with the population std (numpy's, as baselines), not torch's
  unbiased default (CleanRL).
- For `encoder = mlp`, CleanRL's ppo.py uses two separate networks; here the encoder is
  shared, as baselines' ppo2 (and train-procgen for pixels) does.
- Under bf16 autocast only the encoder runs in bfloat16: the heads, log-softmax, values and
  every loss are fp32.
- The running discounted return restarts at 0 after a checkpoint is loaded (the envs restart
  their episodes then, as VecNormalize.reset does); its variance statistics are saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.nets import ACTIVATIONS, ImpalaCNN, check_encoder, compile_methods, mlp
from core import stop

ON_POLICY = True  # train.py runs it in training/on_policy.py's loop (rollouts, no replay)
# `train.py --agent ppo --env procgen:GAME` starts from these (under a preset and flags): the
# paper's 64 envs x 256 steps, so its 8 minibatches are of 2,048 frames.
PROCGEN_DEFAULTS = {"agent": {}, "run": {"num_envs": 64}}


@dataclass
class Config:
    encoder: str = "impala"
    """impala (IMPALA-CNN for uint8 H x W x C frames, the paper) or mlp (flat vector obs)."""
    channels_last: bool = True
    """impala only: convolutions in channels-last memory format (same maths, faster on CPU)."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """mlp only: hidden layer sizes of the shared encoder (baselines / CleanRL: 64-64)."""
    activation: str = "tanh"
    """mlp only: activation of the hidden layers (baselines / CleanRL: tanh)."""
    lr: float = 5e-4
    """Adam learning rate, constant (train-procgen: 5e-4)."""
    adam_eps: float = 1e-5
    """Adam epsilon (baselines' ppo2 and CleanRL: 1e-5)."""
    gamma: float = 0.999
    """Discount factor of the advantages and returns (train-procgen: 0.999)."""
    gae_lambda: float = 0.95
    """GAE lambda (train-procgen: 0.95)."""
    num_steps: int = 256
    """Rollout length per env between updates (train-procgen: 256 steps x 64 envs)."""
    minibatches: int = 8
    """Minibatches per epoch; each is one gradient step (train-procgen: 8)."""
    epochs: int = 3
    """Passes over each rollout (train-procgen: 3)."""
    clip: float = 0.2
    """PPO clip range of the probability ratio, and of the value change (train-procgen: 0.2)."""
    clip_value: bool = True
    """Clip the value update around the behaviour values (train-procgen: use_vf_clipping)."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus (train-procgen: 0.01)."""
    vf_coef: float = 0.5
    """Weight of the value loss (train-procgen: 0.5)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip (train-procgen: 0.5)."""
    reward_scaling: bool = True
    """Divide rewards by the running std of the discounted return (VecNormalize(ob=False))."""
    reward_gamma: float = 0.99
    """Discount of that running return (VecNormalize's default 0.99; train-procgen keeps it)."""
    reward_clip: float = 10.0
    """Scaled rewards are clipped to [-reward_clip, reward_clip] (VecNormalize's cliprew)."""
    eval_sampled: bool = True
    """Evaluate (training's evaluations, evaluate.py) with sampled actions, as the Procgen
    protocol measures PPO (train-procgen's test worker runs the sampling policy); false = the
    argmax action, which can stand still in a level until its timeout."""
    compile: bool = False
    """torch.compile the minibatch loss (speed only; the same mathematics)."""


# ---- the losses (pure functions of tensors; hand-checked in tests/test_ppo.py) ---------------
def policy_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clipped surrogate loss, approx KL, clip fraction), all B -> scalar (ppo2's Model)."""
    ratio = (log_probs - old_log_probs).exp()  # B
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = torch.maximum(unclipped, clipped).mean()
    approx_kl = 0.5 * (log_probs - old_log_probs).pow(2).mean().detach()
    clip_fraction = ((ratio - 1.0).abs() > clip).float().mean().detach()
    return loss, approx_kl, clip_fraction


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip: float,
    clip_value: bool = True,
) -> torch.Tensor:
    """0.5 * mean of the larger of the unclipped and clipped squared errors (B -> scalar)."""
    unclipped = (values - returns).pow(2)  # B
    if not clip_value:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.maximum(unclipped, (clipped_values - returns).pow(2)).mean()


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    dones: np.ndarray,
    next_value: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation over a rollout (Schulman et al. 2016, eq. 16).

    rewards, values, dones: T x N; dones[t] = the episode ended after step t (terminated or
    truncated: no bootstrap across it, as train-procgen); next_value: N, V of the observation
    after the last step. Returns (advantages T x N, returns = advantages + values), float32.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    nonterminal = 1.0 - np.asarray(dones, dtype=np.float64)  # T x N
    next_values = np.concatenate([values[1:], np.asarray(next_value, np.float64)[None]])  # T x N
    deltas = rewards + gamma * nonterminal * next_values - values  # T x N, the TD errors
    advantages = np.zeros_like(deltas)
    running = np.zeros(deltas.shape[1:])
    for t in reversed(range(deltas.shape[0])):
        running = deltas[t] + gamma * lam * nonterminal[t] * running
        advantages[t] = running
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


# ---- networks --------------------------------------------------------------------------------
def _orthogonal(layer: nn.Linear, gain: float) -> nn.Linear:
    with torch.no_grad():
        nn.init.orthogonal_(layer.weight, gain=gain)
        layer.bias.zero_()
    return layer


class ActorCritic(nn.Module):
    """obs -> (logits N x A, values N), one shared encoder, two linear heads (fp32)."""

    def __init__(self, cfg: Config, obs_shape: tuple[int, ...], n_actions: int):
        super().__init__()
        if cfg.encoder == "impala":
            self.encoder: nn.Module = ImpalaCNN(obs_shape, channels_last=cfg.channels_last)
            features = self.encoder.out_dim  # 256
        else:
            # mlp(in, h[-1], h[:-1]) ends in a Linear: add the activation after it too.
            body = mlp(obs_shape[0], cfg.hidden[-1], cfg.hidden[:-1], cfg.activation)
            self.encoder = nn.Sequential(*body, ACTIVATIONS[cfg.activation]())
            for layer in self.encoder:
                if isinstance(layer, nn.Linear):
                    _orthogonal(layer, math.sqrt(2.0))
            features = cfg.hidden[-1]
        self.logits = _orthogonal(nn.Linear(features, n_actions), 0.01)
        self.value = _orthogonal(nn.Linear(features, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(obs)  # N x F, bf16 under autocast
        # The heads in fp32: log-probability ratios and values need more than bf16's precision.
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            return self.logits(x), self.value(x).squeeze(-1)  # N x A, N


class Agent:
    def __init__(
        self,
        cfg: Config,
        observation_space: gym.Space,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
    ):
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"ppo needs a discrete action space, got {action_space}")
        shape = tuple(observation_space.shape)
        check_encoder(cfg.encoder, observation_space, "mlp")
        if cfg.encoder == "mlp" and (not cfg.hidden or cfg.activation not in ACTIVATIONS):
            raise ValueError(
                f"encoder mlp needs at least one hidden layer and an activation in "
                f"{sorted(ACTIVATIONS)}, got hidden={cfg.hidden}, activation={cfg.activation}"
            )
        if cfg.minibatches < 1 or cfg.epochs < 1 or cfg.num_steps < 1:
            raise ValueError("num_steps, minibatches and epochs must be >= 1")
        if not (0 <= cfg.gae_lambda <= 1 and 0 <= cfg.reward_gamma < 1):
            raise ValueError("gae_lambda must be in [0, 1] and reward_gamma in [0, 1)")
        if min(cfg.clip, cfg.adam_eps, cfg.max_grad_norm, cfg.reward_clip) <= 0:
            raise ValueError("clip, adam_eps, max_grad_norm and reward_clip must be > 0")
        if min(cfg.ent_coef, cfg.vf_coef) < 0:
            raise ValueError("ent_coef and vf_coef must be >= 0")
        self.cfg = cfg
        self.device = torch.device(device)
        self.pixels = cfg.encoder == "impala"
        self.net = ActorCritic(cfg, shape, int(action_space.n)).to(self.device)
        fused = self.device.type in ("cpu", "cuda")
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=fused)
        self._params = list(self.net.parameters())
        # Reward scaling (baselines' RunningMeanStd of the discounted return, a scalar).
        self.ret_mean, self.ret_var, self.ret_count = 0.0, 1.0, 1e-4
        self.ret: np.ndarray | None = None  # N, each env's running discounted return
        self.updates = 0
        if cfg.compile:
            compile_methods(self, ("loss",))

    # ---- acting ---------------------------------------------------------------------------
    def _obs(self, obs) -> torch.Tensor:
        """uint8 frames stay uint8 (the encoder scales them); vectors become float32."""
        obs_t = torch.as_tensor(obs, device=self.device)
        return obs_t if self.pixels else obs_t.float()

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """obs: N x ... -> actions N (int64): argmax of the logits, or a sample."""
        logits, _ = self.net(self._obs(obs))  # N x A
        if deterministic:
            actions = logits.argmax(-1)
        else:
            actions = torch.distributions.Categorical(logits=logits).sample()
        return actions.cpu().numpy().astype(np.int64)

    @torch.no_grad()
    def policy_step(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A rollout step: (sampled actions N int64, their log-probs N, values N)."""
        logits, values = self.net(self._obs(obs))  # N x A, N
        log_pi = torch.log_softmax(logits, -1)  # N x A
        actions = torch.distributions.Categorical(logits=log_pi).sample()  # N
        log_probs = log_pi.gather(-1, actions[:, None]).squeeze(-1)  # N
        return (
            actions.cpu().numpy().astype(np.int64),
            log_probs.cpu().numpy(),
            values.cpu().numpy(),
        )

    @torch.no_grad()
    def value(self, obs: np.ndarray) -> np.ndarray:
        """V(obs), N (float32): the bootstrap of a rollout's last observation."""
        return self.net(self._obs(obs))[1].cpu().numpy()

    # ---- rewards --------------------------------------------------------------------------
    def scale_rewards(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """VecNormalize(ob=False, ret=True).step_wait: ret <- gamma ret + r; update the running
        variance with ret (all N envs as one batch); r / sqrt(var + 1e-8) clipped; ret <- 0 where
        the episode ended after this step. Identity (as float32) if reward_scaling is off."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if not self.cfg.reward_scaling:
            return rewards.astype(np.float32)
        if self.ret is None or self.ret.shape != rewards.shape:
            self.ret = np.zeros_like(rewards)
        self.ret = self.ret * self.cfg.reward_gamma + rewards
        # Parallel-variance merge of the batch's moments (baselines' RunningMeanStd).
        n, batch_mean, batch_var = self.ret.size, self.ret.mean(), self.ret.var()
        total = self.ret_count + n
        delta = batch_mean - self.ret_mean
        m2 = self.ret_var * self.ret_count + batch_var * n + delta**2 * self.ret_count * n / total
        self.ret_mean += delta * n / total
        self.ret_var, self.ret_count = m2 / total, total
        clip = self.cfg.reward_clip
        scaled = np.clip(rewards / math.sqrt(self.ret_var + 1e-8), -clip, clip)
        self.ret[np.asarray(dones, dtype=bool)] = 0.0
        return scaled.astype(np.float32)

    # ---- learning -------------------------------------------------------------------------
    def loss(self, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """PPO's total loss on one minibatch, and its detached parts."""
        logits, values = self.net(self._obs(mb["obs"]))  # B x A, B (fp32)
        log_pi = torch.log_softmax(logits, -1)  # B x A
        log_probs = log_pi.gather(-1, mb["actions"].long()[:, None]).squeeze(-1)  # B
        entropy = -(log_pi.exp() * log_pi).sum(-1).mean()
        adv = mb["advantages"].float()
        adv = (adv - adv.mean()) / (adv.std(correction=0) + 1e-8)  # per minibatch, as ppo2
        pi_loss, approx_kl, clip_fraction = policy_loss(
            log_probs, mb["log_probs"].float(), adv, self.cfg.clip
        )
        v_loss = value_loss(
            values, mb["values"].float(), mb["returns"].float(), self.cfg.clip, self.cfg.clip_value
        )
        total = pi_loss - self.cfg.ent_coef * entropy + self.cfg.vf_coef * v_loss
        return total, {
            "loss/policy": pi_loss.detach(),
            "loss/value": v_loss.detach(),
            "loss/entropy": entropy.detach(),
            "policy/approx_kl": approx_kl,
            "policy/clip_fraction": clip_fraction,
        }

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`epochs` x `minibatches` gradient steps on one rollout (B = num_steps x N samples);
        returns the metrics averaged over those steps."""
        size = batch["actions"].shape[0]
        if size < self.cfg.minibatches:
            raise ValueError(f"a batch of {size} cannot fill {self.cfg.minibatches} minibatches")
        history: list[dict[str, torch.Tensor]] = []
        for _ in range(self.cfg.epochs):
            perm = torch.randperm(size, device=batch["actions"].device)
            for idx in perm.tensor_split(self.cfg.minibatches):
                loss, metrics = self.loss({k: v[idx] for k, v in batch.items()})
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self._params, self.cfg.max_grad_norm)
                self.opt.step()
                self.updates += 1
                history.append({**metrics, "grad_norm": grad_norm.detach()})
                # Ctrl-C between gradient steps: each leaves weights, optimizer and `updates`
                # consistent (one update of the paper's 64 x 256 rollout is minutes on a CPU)
                stop.check()
        return {k: torch.stack([h[k] for h in history]).mean() for k in history[0]}

    # ---- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            # Python floats: numpy scalars would not load with torch.load(weights_only=True).
            "reward_rms": {
                "mean": float(self.ret_mean),
                "var": float(self.ret_var),
                "count": float(self.ret_count),
            },  # fmt: skip
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        rms = state["reward_rms"]
        self.ret_mean, self.ret_var = float(rms["mean"]), float(rms["var"])
        self.ret_count = float(rms["count"])
        self.ret = None
        self.updates = int(state["updates"])
