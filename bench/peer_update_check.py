"""Issue 18, item 6: our SAC and TQC updates against Stable-Baselines3's, tensor by tensor.

    python bench/peer_update_check.py                       # TQC and SAC, 1 update + 20
    python bench/peer_update_check.py --algo tqc --updates 50

Our agent is built from the configuration train.py resolves (TQC: configs/tqc/halfcheetah-cpu.yaml;
SAC: --agent sac --arch mlp on HalfCheetah-v5, with SB3's log-std clamp for the update check,
since our mlp default bounds log sigma with tanh into [-5, 2]); SB3's SAC / sb3-contrib's TQC
get the same hyperparameters (`sb3_kwargs`) and a copy of our weights. Both then take one update
on the same batch of HalfCheetah transitions with the same Gaussian noise: eps is looked up by
the observation batch it perturbs (`SharedNoise`), so both sides sample the same actions at s
and s' whatever order they draw them in. SB3's update is never re-implemented here: its
tensors are read from hooks (the loss function it calls, its networks' outputs, its optimizers'
steps, its logger). Every comparison is a max abs difference; `--markdown` prints the tables of
docs/peer-parity.md. tests/test_peer_parity.py asserts the pieces that must match.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train  # noqa: E402
import training  # noqa: E402
from agents import get_agent_module, sac  # noqa: E402
from agents.buffer import Batch, ReplayBuffer  # noqa: E402
from envs import make_env  # noqa: E402
from training import launch  # noqa: E402

ENV = "HalfCheetah-v5"
# How each side of the comparison is configured: train.py's arguments.
OUR_ARGS = {
    "tqc": ["--config", "configs/tqc/halfcheetah-cpu.yaml"],
    "sac": ["--agent", "sac", "--arch", "mlp", "--env", ENV],
}
SB3_LOG_STD = ["--set", "log_std_bound=clip", "--set", "log_std_min=-20"]
# SB3's log pi: log(1 - tanh(u)^2 + 1e-6) where ours is exact (agents/sac.py header).
SB3_LOG_PROB = ["--set", "log_prob_epsilon=1e-6"]


# ---- the two sides, configured alike ------------------------------------------------------
def our_config(algo: str, sb3_log_std: bool = True, extra: list[str] | None = None):
    """(RunConfig, agent Config) as train.py resolves them; SAC with SB3's clamp to [-20, 2]
    when `sb3_log_std` (TQC's preset already clamps there)."""
    argv = [*OUR_ARGS[algo], *(SB3_LOG_STD if algo == "sac" and sb3_log_std else [])]
    return launch.resolve_config(train.build_parser().parse_args([*argv, *(extra or [])]))


def sb3_class(algo: str):
    if algo == "tqc":
        from sb3_contrib import TQC

        return TQC
    from stable_baselines3 import SAC

    return SAC


def sb3_kwargs(algo: str, cfg, action_dim: int, seed: int) -> dict:
    """SB3 SAC / sb3-contrib TQC keyword arguments equal to our agent config `cfg`."""
    if not cfg.actor_lr == cfg.critic_lr == cfg.temperature_lr or cfg.weight_decay:
        raise ValueError("SB3 has one learning rate and plain Adam: configs must agree")
    if cfg.arch != "mlp":
        raise ValueError(f"SB3 builds MLPs, got arch={cfg.arch}")
    policy = {
        "net_arch": {"pi": list(cfg.actor_hidden), "qf": list(cfg.critic_hidden)},
        "n_critics": cfg.n_critics,
    }
    kwargs = {
        "learning_rate": cfg.actor_lr,
        "buffer_size": cfg.buffer_size,
        "learning_starts": cfg.learning_starts,
        "batch_size": cfg.batch_size,
        "tau": cfg.tau,
        "gamma": cfg.gamma,
        "train_freq": 1,
        "gradient_steps": 1,
        "ent_coef": f"auto_{cfg.initial_temperature}",
        "target_entropy": float(cfg.target_entropy_scale * action_dim),
        "policy_kwargs": policy,
        "device": "cpu",
        "seed": seed,
    }
    if algo == "tqc":
        policy["n_quantiles"] = cfg.n_quantiles
        kwargs["top_quantiles_to_drop_per_net"] = cfg.drop_per_net
    return kwargs


def build_pair(algo: str, seed: int = 0, sb3_log_std: bool = True, extra: list[str] | None = None):
    """(our agent, SB3 model, agent config), SB3 holding a copy of our weights; `extra`:
    train.py arguments for our side (e.g. SB3_LOG_PROB)."""
    from stable_baselines3.common.logger import Logger

    _, cfg = our_config(algo, sb3_log_std, extra)
    env = make_env(ENV)
    torch.manual_seed(seed)
    agent = get_agent_module(algo).Agent(cfg, env.observation_space, env.action_space, "cpu")
    kwargs = sb3_kwargs(algo, cfg, agent.action_dim, seed)
    model = sb3_class(algo)("MlpPolicy", env, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))
    copy_weights(agent, model)
    return agent, model, cfg


def linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def copy_weights(agent, model) -> None:
    """Our actor, critics, target critics and log alpha into SB3's networks. Our actor's last
    layer outputs (mean, raw log sigma) stacked; SB3 has one layer for each."""
    a = agent.action_dim
    *trunk, head = linears(agent.actor.net)
    for ours, theirs in zip(trunk, linears(model.actor.latent_pi), strict=True):
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias)
    for layer, rows in ((model.actor.mu, slice(0, a)), (model.actor.log_std, slice(a, 2 * a))):
        layer.weight.copy_(head.weight[rows])
        layer.bias.copy_(head.bias[rows])
    for ours, theirs in ((agent.critic, model.critic), (agent.critic_target, model.critic_target)):
        for member, qf in enumerate(theirs.q_networks):
            for layer, lin in zip(ours.layers, linears(qf), strict=True):
                lin.weight.copy_(layer.weight[member].T)
                lin.bias.copy_(layer.bias[member, 0])
    model.log_ent_coef.copy_(agent.temperature.log_alpha.reshape(1))


def paired_parameters(agent, model) -> list[tuple[str, torch.Tensor, list, object]]:
    """(name, our parameter, SB3's parameters, how to lay SB3's tensors out as ours)."""
    pairs = []
    *trunk, head = linears(agent.actor.net)
    for j, (ours, theirs) in enumerate(zip(trunk, linears(model.actor.latent_pi), strict=True)):
        pairs += [
            (f"actor.{j}.weight", ours.weight, [theirs.weight], lambda t: t[0]),
            (f"actor.{j}.bias", ours.bias, [theirs.bias], lambda t: t[0]),
        ]
    mu, log_std = model.actor.mu, model.actor.log_std
    pairs += [
        ("actor.head.weight", head.weight, [mu.weight, log_std.weight], torch.cat),
        ("actor.head.bias", head.bias, [mu.bias, log_std.bias], torch.cat),
    ]
    for name, ours, theirs in (
        ("critic", agent.critic, model.critic),
        ("critic_target", agent.critic_target, model.critic_target),
    ):
        members = [linears(qf) for qf in theirs.q_networks]
        for j, layer in enumerate(ours.layers):
            weights = [m[j].weight for m in members]
            biases = [m[j].bias for m in members]
            pairs += [
                (f"{name}.{j}.weight", layer.weight, weights,
                 lambda t: torch.stack([w.T for w in t])),  # E x in x out
                (f"{name}.{j}.bias", layer.bias, biases,
                 lambda t: torch.stack([b[None] for b in t])),  # E x 1 x out
            ]  # fmt: skip
    pairs.append(
        ("log_alpha", agent.temperature.log_alpha, [model.log_ent_coef], lambda t: t[0][0])
    )
    return pairs


def parameter_diffs(agent, model, ours_of=None, theirs_of=None) -> dict[str, float]:
    """Max abs difference per paired parameter (or of what `*_of(param)` maps them to, e.g.
    their gradients); parameters an `*_of` maps to None are left out."""
    ours_of = ours_of or (lambda p: p.detach())
    theirs_of = theirs_of or (lambda p: p.detach())
    out = {}
    for name, ours, theirs, layout in paired_parameters(agent, model):
        mine, others = ours_of(ours), [theirs_of(t) for t in theirs]
        if mine is None or any(o is None for o in others):
            continue
        out[name] = max_diff(mine, layout(others))
    return out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a - b).abs().max())


# ---- the same data, the same noise --------------------------------------------------------
def transitions(n: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    """n HalfCheetah transitions under uniform-random actions from reset(seed); the 1000th,
    if reached, is the time-limit truncation."""
    env = make_env(ENV)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")}
    for _ in range(n):
        action = rng.uniform(-1.0, 1.0, 6).astype(np.float32)
        next_obs, reward, term, trunc, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, next_obs, term, trunc)):
            rows[key].append(value)
        obs = env.reset()[0] if term or trunc else next_obs
    return {k: torch.as_tensor(np.array(v), dtype=torch.float32) for k, v in rows.items()}


def make_batch(data: dict[str, torch.Tensor], size: int, gamma: float, seed: int) -> Batch:
    """`size` rows of `data`: always the time-limit truncation if present (bootstraps), and the
    first 16 rows marked terminated (HalfCheetah never terminates; these test the mask)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data["rewards"]), generator=g)[:size]
    last_truncated = torch.nonzero(data["truncated"]).flatten()
    if len(last_truncated):
        idx[-1] = last_truncated[0]
    terminated = data["terminated"][idx].clone()
    terminated[:16] = 1.0
    return Batch(
        obs=data["obs"][idx], actions=data["actions"][idx], rewards=data["rewards"][idx],
        next_obs=data["next_obs"][idx], terminated=terminated, truncated=data["truncated"][idx],
        discounts=torch.full((size,), gamma), extras={}, indices=idx,
    )  # fmt: skip


def sb3_samples(batch: Batch):
    """The batch as SB3's ReplayBufferSamples: dones = terminated only (SB3's replay buffer
    zeroes `done` for time-limit truncations, handle_timeout_termination=True)."""
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    return ReplayBufferSamples(
        observations=batch.obs, actions=batch.actions, next_observations=batch.next_obs,
        dones=batch.terminated[:, None], rewards=batch.rewards[:, None],
    )  # fmt: skip


class SharedNoise:
    """The same Gaussian eps on both sides for the same observation batch.

    eps for a registered batch is drawn once; a forward pre-hook on each actor's trunk notes
    which batch goes through, and the draw is replaced by that batch's eps: torch.randn_like
    in our TanhGaussianActor.sample, torch.distributions' _standard_normal in SB3's
    Normal.rsample. A draw for an unregistered batch is an error."""

    def __init__(self, seed: int = 0):
        self.gen = torch.Generator().manual_seed(seed)
        self.table: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.current: torch.Tensor | None = None

    def register(self, obs: torch.Tensor, action_dim: int) -> None:
        eps = torch.randn(obs.shape[0], action_dim, generator=self.gen)
        self.table.append((obs.detach().float().clone(), eps))

    def see(self, module, args) -> None:
        x = args[0].detach().float()
        self.current = next(
            (eps for obs, eps in self.table if obs.shape == x.shape and torch.equal(obs, x)),
            None,
        )

    def draw(self, shape) -> torch.Tensor:
        if self.current is None or tuple(self.current.shape) != tuple(shape):
            raise RuntimeError(f"a Gaussian draw of shape {tuple(shape)} for no registered batch")
        return self.current.clone()

    @contextlib.contextmanager
    def installed(self, agent, model):
        hooks = [
            agent.actor.net.register_forward_pre_hook(self.see),
            model.actor.latent_pi.register_forward_pre_hook(self.see),
        ]
        patches = (
            mock.patch("torch.randn_like", lambda t, **kw: self.draw(t.shape)),
            mock.patch(
                "torch.distributions.normal._standard_normal",
                lambda shape, dtype=None, device=None: self.draw(shape),
            ),
        )
        try:
            with patches[0], patches[1]:
                yield self
        finally:
            for hook in hooks:
                hook.remove()


# ---- what each update computed ------------------------------------------------------------
@dataclass
class Record:
    """What one side's update computed, and the order of its steps."""

    events: list[str] = field(default_factory=list)  # optimizer steps and alpha reads, in order
    tensors: dict[str, list] = field(default_factory=dict)  # name -> values, call by call
    grads: dict[int, torch.Tensor] = field(default_factory=dict)  # id(parameter) -> gradient

    def put(self, name: str, value) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().clone()
        elif isinstance(value, (tuple, list)):
            value = [v.detach().clone() if isinstance(v, torch.Tensor) else v for v in value]
        self.tensors.setdefault(name, []).append(value)

    def first(self, name: str):
        return self.tensors[name][0]


def after_call(stack: contextlib.ExitStack, obj, name: str, then) -> None:
    """obj.name(...) also hands its result to then(result), until the stack closes."""
    original = getattr(obj, name)

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        then(result)
        return result

    setattr(obj, name, wrapped)
    stack.callback(delattr, obj, name)  # the class's method shows through again


def watch_steps(stack: contextlib.ExitStack, rec: Record, optimizers: dict) -> None:
    """Each optimizer step is logged in order, with the gradients it is about to apply."""

    def hook_for(name: str):
        def hook(optimizer, args, kwargs):
            rec.events.append(f"{name} step")
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        rec.grads[id(p)] = p.grad.detach().clone()

        return hook

    for name, opt in optimizers.items():
        stack.callback(opt.register_step_pre_hook(hook_for(name)).remove)


def watch_output(stack: contextlib.ExitStack, module: nn.Module, rec: Record, name: str) -> None:
    handle = module.register_forward_hook(lambda m, args, out: rec.put(name, out))
    stack.callback(handle.remove)


def probe_ours(stack: contextlib.ExitStack, agent, rec: Record) -> None:
    after_call(stack, agent, "compute_target", lambda y: rec.put("target", y))
    after_call(stack, agent, "critic_loss", lambda r: rec.put("critic_loss", r[0]))
    after_call(stack, agent, "actor_loss", lambda r: rec.put("actor_loss", r[0]))
    after_call(stack, agent.temperature, "loss", lambda r: rec.put("temperature_loss", r))
    after_call(stack, agent.actor, "sample", lambda r: rec.put("samples", r))

    def alpha_read(value):
        rec.events.append("alpha read")
        rec.put("alpha", value)

    after_call(stack, agent.temperature, "alpha", alpha_read)
    watch_output(stack, agent.critic, rec, "critic_out")
    watch_output(stack, agent.critic_target, rec, "next_critic_out")
    watch_steps(stack, rec, {"critic": agent.critic_opt, "actor": agent.actor_opt,
                             "temperature": agent.temperature_opt})  # fmt: skip


def probe_sb3(
    stack: contextlib.ExitStack, algo: str, model, rec: Record, loss_scale: float
) -> None:
    """Hooks on SB3's networks and optimizers; the critic loss's inputs from the loss function
    its train() calls (sb3-contrib's quantile_huber_loss; torch's mse_loss for SAC), whose
    value is multiplied by `loss_scale` (1 = SB3 as is)."""
    after_call(stack, model.actor, "action_log_prob", lambda r: rec.put("samples", r))
    watch_output(stack, model.critic, rec, "critic_out")
    watch_output(stack, model.critic_target, rec, "next_critic_out")
    watch_steps(stack, rec, {"critic": model.critic.optimizer, "actor": model.actor.optimizer,
                             "temperature": model.ent_coef_optimizer})  # fmt: skip

    def recording(fn):
        def recorded(current, target, *args, **kwargs):
            rec.put("loss_inputs", (current, target))
            return loss_scale * fn(current, target, *args, **kwargs)

        return recorded

    if algo == "tqc":
        import sb3_contrib.tqc.tqc as where

        loss = recording(where.quantile_huber_loss)
        stack.enter_context(mock.patch.object(where, "quantile_huber_loss", loss))
    else:
        import stable_baselines3.sac.sac as where

        proxy = type("F", (), {"mse_loss": staticmethod(recording(where.F.mse_loss))})
        stack.enter_context(mock.patch.object(where, "F", proxy))


# ---- one update on each side --------------------------------------------------------------
def one_update(algo: str, agent, model, cfg, batch: Batch, seed: int,
               sb3_loss_scale: float = 1.0) -> dict:  # fmt: skip
    """Our Agent.update and SB3's train(gradient_steps=1) on the same batch and noise; the
    max abs differences of every piece, the order of the steps and which alpha each used.
    `sb3_loss_scale` multiplies SB3's critic loss (2 for SAC = our sum of MSEs)."""
    noise = SharedNoise(seed)
    for obs in (batch.obs, batch.next_obs):
        noise.register(obs, agent.action_dim)
    ours, theirs = Record(), Record()
    alpha_before = float(agent.temperature.alpha())
    model.logger.name_to_value.clear()
    with contextlib.ExitStack() as stack:
        stack.enter_context(noise.installed(agent, model))
        stack.enter_context(mock.patch.object(model.replay_buffer, "sample",
                                              lambda *a, **k: sb3_samples(batch)))  # fmt: skip
        probe_ours(stack, agent, ours)
        probe_sb3(stack, algo, model, theirs, sb3_loss_scale)
        agent.update(batch)
        model.train(gradient_steps=1, batch_size=cfg.batch_size)
    logged = dict(model.logger.name_to_value)
    alpha_after = float(agent.temperature.alpha())

    # Ours samples a' ~ pi(s') (the target) before a ~ pi(s) (the actor); SB3 the reverse.
    (o_next_a, o_next_lp), (o_a, o_lp) = ours.tensors["samples"]
    (s_a, s_lp), (s_next_a, s_next_lp) = theirs.tensors["samples"]
    current, target = theirs.first("loss_inputs")
    target = target.reshape(len(batch.rewards), -1)  # B x K (TQC) or B x 1 (SAC)
    d = {
        "a ~ pi(s)": max_diff(o_a, s_a),
        "log pi(a|s)": max_diff(o_lp, s_lp),
        "a' ~ pi(s')": max_diff(o_next_a, s_next_a),
        "log pi(a'|s')": max_diff(o_next_lp, s_next_lp),
    }
    o_next, s_next = ours.first("next_critic_out"), theirs.first("next_critic_out")
    if algo == "tqc":  # ours N x B x M, SB3's B x N x M
        d["target critics' atoms at (s', a')"] = max_diff(o_next.permute(1, 0, 2), s_next)
        d["critics' atoms at (s, a)"] = max_diff(ours.first("critic_out").permute(1, 0, 2), current)
        kept = s_next.reshape(len(batch.rewards), -1).sort(dim=1).values
        kept = kept[:, : kept.shape[1] - cfg.drop_per_net * cfg.n_critics]
    else:  # ours E x B x 1, SB3's a tuple of B x 1 per critic
        d["target critics' Q at (s', a')"] = max_diff(o_next.squeeze(-1).T, torch.cat(s_next, 1))
        o_current = ours.first("critic_out").squeeze(-1).T
        d["critics' Q at (s, a)"] = max_diff(o_current, torch.cat(theirs.first("critic_out"), 1))
        kept = torch.cat(s_next, 1).min(dim=1, keepdim=True).values
    d["target (incl. - alpha log pi(a'|s'))"] = max_diff(
        ours.first("target").reshape(target.shape), target
    )

    # Which alpha SB3's target holds: rebuilt from SB3's own atoms and log pi with each one.
    def rebuilt(alpha: float) -> torch.Tensor:
        not_done = cfg.gamma * (1.0 - batch.terminated[:, None])
        return batch.rewards[:, None] + not_done * (kept - alpha * s_next_lp.reshape(-1, 1))

    d["SB3 target rebuilt with alpha before the temperature step"] = max_diff(
        target, rebuilt(alpha_before)
    )
    d["SB3 target rebuilt with alpha after the temperature step"] = max_diff(
        target, rebuilt(alpha_after)
    )
    # SB3's SAC critic loss is 0.5 * (MSE_1 + MSE_2), ours MSE_1 + MSE_2 (TQC: both the mean).
    scale = (2.0 if algo == "sac" else 1.0) / sb3_loss_scale
    d[f"critic loss (ours vs {scale:g} x SB3)"] = abs(
        float(ours.first("critic_loss")) - scale * logged["train/critic_loss"]
    )
    d["actor loss"] = abs(float(ours.first("actor_loss")) - logged["train/actor_loss"])
    d["temperature loss"] = abs(
        float(ours.first("temperature_loss")) - logged["train/ent_coef_loss"]
    )
    d["alpha in target and actor loss (ours vs SB3's logged)"] = max(
        abs(float(a) - logged["train/ent_coef"]) for a in ours.tensors["alpha"][:2]
    )

    def our_grad(p):
        return ours.grads.get(id(p))

    def sb3_grad(p):
        return (
            None
            if id(p) not in theirs.grads
            else theirs.grads[id(p)] * (scale if p in set(model.critic.parameters()) else 1.0)
        )

    grads = parameter_diffs(agent, model, our_grad, sb3_grad)
    weights = parameter_diffs(agent, model)
    d[f"critic gradients (ours vs {scale:g} x SB3)"] = max_group(grads, "critic.")
    d["actor gradients"] = max_group(grads, "actor.")
    d["log alpha gradient"] = grads["log_alpha"]
    for group in ("actor.", "critic.", "critic_target."):
        d[f"{group[:-1]} weights after the update"] = max_group(weights, group)
    d["log alpha after the update"] = weights["log_alpha"]
    return {
        "diffs": d,
        "order": {"ours": ours.events, "sb3": theirs.events},
        "alpha": {
            "before": alpha_before,
            "after": alpha_after,
            "ours_used": [float(a) for a in ours.tensors["alpha"][:2]],
            "sb3_used": logged["train/ent_coef"],
        },  # fmt: skip
        "sb3_log_prob_epsilon": model.actor.action_dist.epsilon,
    }


def max_group(diffs: dict[str, float], prefix: str) -> float:
    return max(v for k, v in diffs.items() if k.startswith(prefix))


def several_updates(algo: str, updates: int, extra: list[str] | None, seed: int = 0) -> dict:
    """`updates` updates in a row, a fresh batch and fresh noise each; the max abs difference
    of the weights after the last one (how far float rounding and the known differences drift)."""
    agent, model, cfg = build_pair(algo, seed, extra=extra)
    data = transitions()
    worst: dict[str, float] = {}
    for k in range(updates):
        batch = make_batch(data, cfg.batch_size, cfg.gamma, seed=1000 + k)
        diffs = one_update(algo, agent, model, cfg, batch, 1000 + k)["diffs"]
        for name, value in diffs.items():
            worst[name] = max(worst.get(name, 0.0), value)
    weights = parameter_diffs(agent, model)
    return {
        "worst": worst,
        "weights": {g: max_group(weights, g) for g in ("actor.", "critic.", "critic_target.")}
        | {"log_alpha": weights["log_alpha"]},
    }


# ---- outside the update -------------------------------------------------------------------
@torch.no_grad()
def acting(algo: str, seed: int = 0) -> dict:
    """Acting with identical weights: evaluation (ours deterministic = tanh(mean); SB3's
    predict(deterministic=True)), exploration with the same noise, and log sigma where it
    leaves the bounds (head biases pushed to +-30)."""
    agent, model, cfg = build_pair(algo, seed)
    obs = transitions(300)["obs"]
    out = {
        "evaluation action (deterministic)": max_diff(
            agent.act(obs.numpy(), deterministic=True),
            model.predict(obs.numpy(), deterministic=True)[0],
        )
    }
    noise = SharedNoise(seed)
    noise.register(obs, agent.action_dim)
    with noise.installed(agent, model):
        ours = agent.act(obs.numpy(), deterministic=False)
        theirs = model.predict(obs.numpy(), deterministic=False)[0]
    out["exploration action (same noise)"] = max_diff(ours, theirs)
    a = agent.action_dim
    push = torch.tensor([30.0, -30.0] * (a // 2) + [30.0] * (a % 2))
    linears(agent.actor.net)[-1].bias[a:] += push
    model.actor.log_std.bias += push
    our_log_std = agent.actor(obs)[1]
    sb3_log_std = model.actor.get_action_dist_params(obs)[1]
    out["log sigma beyond the bounds (clamped)"] = max_diff(our_log_std, sb3_log_std)
    out["log sigma range (ours)"] = (float(our_log_std.min()), float(our_log_std.max()))
    return out


@torch.no_grad()
def default_sac_log_std(seed: int = 0) -> dict:
    """Our SAC's mlp default (log sigma = -5 + 3.5 (tanh(raw) + 1)) against SB3's clamp, with
    identical weights: log sigma and sigma of the untrained actor on HalfCheetah states."""
    agent, model, _ = build_pair("sac", seed, sb3_log_std=False)
    obs = transitions(300)["obs"]
    ours, theirs = agent.actor(obs)[1], model.actor.get_action_dist_params(obs)[1]
    return {
        "log sigma max abs diff": max_diff(ours, theirs),
        "mean sigma ours": float(ours.exp().mean()),
        "mean sigma SB3": float(theirs.exp().mean()),
    }


def log_prob_table(us=(0.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 15.0)) -> list[dict]:
    """Per action dimension, log pi(tanh(u)) with mean = u and sigma = 1 (the Gaussian part
    fixed), float32: ours (exact form) and SB3's (+1e-6 inside the log, from SB3's own
    SquashedDiagGaussianDistribution), each minus the float64 exact value."""
    from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution

    rows = []
    for u in us:
        u32 = torch.tensor([[u]])
        mean, log_std = u32.clone(), torch.zeros(1, 1)
        ours = float(sac.tanh_log_prob(u32, mean, log_std))
        dist = SquashedDiagGaussianDistribution(1).proba_distribution(mean, log_std)
        theirs = float(dist.log_prob(torch.tanh(u32), u32))
        u64 = torch.tensor(u, dtype=torch.float64)
        exact = -0.5 * math.log(2 * math.pi) - float(torch.log1p(-(torch.tanh(u64) ** 2)))
        if not math.isfinite(exact):  # float64's tanh rounds to 1 too: the asymptotic form
            exact = -0.5 * math.log(2 * math.pi) + 2 * (u - math.log(2.0))
        rows.append({"u": u, "exact": exact, "ours": ours - exact, "sb3": theirs - exact})
    return rows


def optimizer_settings(algo: str) -> dict:
    """Each optimizer's class and hyperparameters on both sides."""
    agent, model, _ = build_pair(algo)
    keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "fused")

    def describe(opt) -> dict:
        group = opt.param_groups[0]
        return {"class": type(opt).__name__, **{k: group.get(k) for k in keys}}

    return {
        name: {"ours": describe(o), "sb3": describe(s)}
        for name, o, s in (
            ("actor", agent.actor_opt, model.actor.optimizer),
            ("critic", agent.critic_opt, model.critic.optimizer),
            ("temperature", agent.temperature_opt, model.ent_coef_optimizer),
        )
    }


@torch.no_grad()
def initialisation(algo: str, seed: int = 0) -> dict:
    """Fresh (not copied) weights: per side, the largest |w| * sqrt(fan_in) (U(-b, b) with
    b = 1/sqrt(fan_in) gives <= 1) and std * sqrt(3 fan_in) (gives ~1), over every layer."""
    _, cfg = our_config(algo)
    env = make_env(ENV)
    torch.manual_seed(seed)
    agent = get_agent_module(algo).Agent(cfg, env.observation_space, env.action_space)
    model = sb3_class(algo)("MlpPolicy", env, **sb3_kwargs(algo, cfg, agent.action_dim, seed))
    ours = [t for lin in linears(agent.actor.net) for t in (lin.weight.T, lin.bias)]
    ours += [t[m] for layer in agent.critic.layers for m in range(cfg.n_critics)
             for t in (layer.weight, layer.bias[:, 0])]  # fmt: skip
    theirs = [t for lin in linears(model.actor) for t in (lin.weight.T, lin.bias)]
    theirs += [t for lin in linears(model.critic) for t in (lin.weight.T, lin.bias)]

    def stats(tensors, fan_in_of) -> dict:
        bound = [float(t.abs().max()) * math.sqrt(fan_in_of(t)) for t in tensors]
        spread = [float(t.std()) * math.sqrt(3 * fan_in_of(t)) for t in tensors if t.numel() > 1]
        return {"max |w| sqrt(fan_in)": max(bound),
                "std sqrt(3 fan_in)": (min(spread), max(spread))}  # fmt: skip

    # A weight (in x out, shown transposed) has fan_in rows; a bias inherits its weight's.
    def fan_ins(tensors):
        fans, last = {}, None
        for t in tensors:
            last = t.shape[0] if t.dim() == 2 else last
            fans[id(t)] = last
        return lambda t: fans[id(t)]

    return {"ours": stats(ours, fan_ins(ours)), "sb3": stats(theirs, fan_ins(theirs))}


def warmup_schedule(algo: str, steps: int, our_extra: list[str] | None = None) -> dict:
    """Who acts and when updates run, from each side's own training loop: ours train.py's
    Trainer (its agent's act/update wrapped), SB3's learn() (its predict/train wrapped)."""
    run_cfg, cfg = our_config(algo, extra=[*(our_extra or []), "--total-steps", str(steps),
                                            "--eval-episodes", "1", "--device", "cpu"])  # fmt: skip
    ours = {"policy": [], "updates": []}
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(None):
        trainer = training.OffPolicyTrainer(run_cfg, cfg, Path(tmp), "off")
        c = trainer.counters

        def act(obs, deterministic):
            if not deterministic:  # exploration, not the final evaluation
                ours["policy"].append(c["env_steps"])
            return type(trainer.agent).act(trainer.agent, obs, deterministic)

        def update(batch):
            ours["updates"].append(c["env_steps"])
            return type(trainer.agent).update(trainer.agent, batch)

        trainer.agent.act, trainer.agent.update = act, update
        trainer.train()
    env = make_env(ENV)
    kwargs = sb3_kwargs(algo, cfg, int(np.prod(env.action_space.shape)), run_cfg.seed)
    model = sb3_class(algo)("MlpPolicy", env, **kwargs)
    theirs = {"policy": [], "updates": []}
    predict, train_ = model.predict, model.train

    def sb3_predict(*args, **kwargs):
        theirs["policy"].append(model.num_timesteps)
        return predict(*args, **kwargs)

    def sb3_train(gradient_steps, batch_size):
        theirs["updates"] += [model.num_timesteps] * gradient_steps
        return train_(gradient_steps, batch_size)

    model.predict, model.train = sb3_predict, sb3_train
    model.learn(steps)

    def summary(log: dict) -> dict:
        return {
            "random-action steps": steps - len(log["policy"]),
            "first policy action at step": log["policy"][0] if log["policy"] else None,
            "first update after transitions": log["updates"][0] if log["updates"] else None,
            "updates": len(log["updates"]),
        }

    return {"ours": summary(ours), "sb3": summary(theirs)}


def time_limits(seed: int = 0) -> dict:
    """One HalfCheetah episode (1000 steps, same seed and actions) through each side's vector
    env into each side's replay buffer: both store the true final observation and keep the
    time-limit cut out of the bootstrap mask."""
    from stable_baselines3.common.buffers import ReplayBuffer as SB3Buffer
    from stable_baselines3.common.vec_env import DummyVecEnv

    from envs import VecEnv

    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1.0, 1.0, (1000, 1, 6)).astype(np.float32)
    ours_env = VecEnv(ENV, 1, seed)
    theirs_env = DummyVecEnv([lambda: make_env(ENV)])
    theirs_env.seed(seed)
    space = ours_env.observation_space
    ours_buf = ReplayBuffer(1000, space.shape, (6,), num_envs=1, seed=seed)
    theirs_buf = SB3Buffer(1000, space, ours_env.action_space, device="cpu")
    obs, sb3_obs = ours_env.reset(seed), theirs_env.reset()
    for action in actions:
        step = ours_env.step(action)
        ours_buf.add(obs, action, step.rewards, step.next_obs, step.terminated, step.truncated)
        new_obs, reward, done, infos = theirs_env.step(action)
        final = np.stack([i["terminal_observation"] if d else o
                          for o, d, i in zip(new_obs, done, infos)])  # fmt: skip
        theirs_buf.add(sb3_obs, final, action, reward, done, infos)
        obs, sb3_obs = step.obs, new_obs
    ours_rows = ours_buf.transitions(np.arange(1000))
    theirs_rows = theirs_buf._get_samples(np.arange(1000))
    return {
        "observations": max_diff(ours_rows.obs, theirs_rows.observations.float()),
        "next observations (incl. the final one)": max_diff(
            ours_rows.next_obs, theirs_rows.next_observations.float()
        ),
        "rewards": max_diff(ours_rows.rewards, theirs_rows.rewards.squeeze(1)),
        "ours: last step truncated / terminated": (
            float(ours_rows.truncated[-1]), float(ours_rows.terminated[-1])
        ),
        "SB3: last step done / timeout / bootstrap mask done": (
            float(theirs_buf.dones[999, 0]), float(theirs_buf.timeouts[999, 0]),
            float(theirs_rows.dones[-1, 0]),
        ),
    }  # fmt: skip


# ---- the report ---------------------------------------------------------------------------
def fmt(value) -> str:
    if isinstance(value, float):
        return "0" if value == 0 else f"{value:.3g}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(fmt(v) for v in value) + ")"
    return str(value)


def table(title: str, rows: dict, head=("piece", "max abs diff")) -> str:
    lines = [f"**{title}**", "", f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for name, value in rows.items():
        cells = value if isinstance(value, (list, tuple)) and len(head) > 2 else [value]
        lines.append(f"| {name} | " + " | ".join(fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def report(algos: list[str], updates: int, after_warmup: int) -> str:
    data = transitions()
    parts = []
    for algo in algos:
        name = {"tqc": "TQC vs sb3-contrib TQC", "sac": "SAC (mlp) vs SB3 SAC"}[algo]
        parts.append(f"### {name}\n")
        runs = {}
        for same in (False, True):
            agent, model, cfg = build_pair(algo, extra=SB3_LOG_PROB if same else None)
            batch = make_batch(data, cfg.batch_size, cfg.gamma, seed=0)
            runs[same] = one_update(algo, agent, model, cfg, batch, 0)
        rows = {k: (runs[False]["diffs"][k], runs[True]["diffs"][k]) for k in runs[False]["diffs"]}
        if algo == "sac":  # the halved critic loss, through Adam's eps
            agent, model, cfg = build_pair(algo, extra=SB3_LOG_PROB)
            batch = make_batch(data, cfg.batch_size, cfg.gamma, seed=0)
            doubled = one_update(algo, agent, model, cfg, batch, 0, sb3_loss_scale=2.0)["diffs"]
            key = "critic weights after the update"
            rows[f"{key}, SB3's critic loss doubled"] = ("", doubled[key])
        parts.append(table("One update, same weights, batch and noise", rows,
                           ("piece", "as is", "ours with log_prob_epsilon=1e-6")))  # fmt: skip
        r = runs[False]
        parts.append(
            f"Step order: ours {' -> '.join(r['order']['ours'])}; "
            f"SB3 {' -> '.join(r['order']['sb3'])}. alpha before / after the temperature step "
            f"{r['alpha']['before']:.7f} / {r['alpha']['after']:.7f}; ours used "
            f"{fmt(r['alpha']['ours_used'])} in the target and actor loss, SB3 logged "
            f"{float(r['alpha']['sb3_used']):.7f}.\n"
        )
        drift = {same: several_updates(algo, updates, SB3_LOG_PROB if same else None)
                 for same in (False, True)}  # fmt: skip
        rows = {k: (drift[False]["weights"][k], drift[True]["weights"][k])
                for k in drift[False]["weights"]}  # fmt: skip
        parts.append(table(f"Weights after {updates} updates (fresh batch and noise each)", rows,
                           ("weights", "as is", "ours with log_prob_epsilon=1e-6")))  # fmt: skip
        parts.append(table("Acting with the same weights", acting(algo)))
        opts = optimizer_settings(algo)
        rows = {f"{k} ({side})": v[side] for k, v in opts.items() for side in ("ours", "sb3")}
        parts.append(table("Optimizers", rows, ("optimizer", "settings")))
        parts.append(table("Initialisation (fresh weights)", initialisation(algo),
                           ("side", "statistics")))  # fmt: skip
        variants = {"as configured": []}
        if algo == "tqc":
            variants["with --set random_steps=256"] = ["--set", "random_steps=256"]
        warmup_steps = cfg.learning_starts + after_warmup
        for label, extra in variants.items():
            sched = warmup_schedule(algo, warmup_steps, extra)
            rows = {k: (sched["ours"][k], sched["sb3"][k]) for k in sched["ours"]}
            parts.append(table(f"Warm-up over {warmup_steps} env steps, ours {label}", rows,
                               ("", "ours", "SB3")))  # fmt: skip
    if "sac" in algos:
        title = "Our SAC's mlp default log-sigma bound (tanh into [-5, 2]) vs SB3's clamp"
        parts.append(table(title, default_sac_log_std(), ("", "value")))
    rows = {fmt(r["u"]): (r["exact"], r["ours"], r["sb3"]) for r in log_prob_table()}
    title = "log pi per action dimension (mean = u, sigma = 1): float32 error vs float64 exact"
    parts.append(table(title, rows, ("u", "exact", "ours - exact", "SB3 - exact")))
    parts.append(table("One time-limited episode through each side's env and buffer",
                       time_limits(), ("", "value")))  # fmt: skip
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["tqc", "sac", "both"], default="both")
    parser.add_argument("--updates", type=int, default=20, help="updates of the drift check")
    parser.add_argument(
        "--after-warmup",
        type=int,
        default=300,
        help="env steps the warm-up check runs on past learning_starts",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    algos = ["tqc", "sac"] if args.algo == "both" else [args.algo]
    print(report(algos, args.updates, args.after_warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
