"""Overestimation bias: each critic's estimate against the Monte-Carlo truth.

Method (TD3 paper, Fujimoto et al. 2018; soft agents as REDQ, Chen et al. 2021, measures them,
github.com/watchernyu/REDQ `redq/utils/bias_utils.py`):
1. Take K states s_i with their observations, from the replay buffer (or a dataset) where the
   simulator state was stored with each transition (MuJoCo: qpos, qvel), or from episodes the
   deterministic policy plays (`states_from_policy`: held-out levels have no replay states).
   A state with a level (envs/levels.py) is restored in that level's physics.
2. Restore each in its own copies of the environment and roll the policy out until termination
   or a horizon H with gamma^H <= `tol` (gamma 0.99, tol 1e-3 -> H = 688).
   - `bias_target = "reward"` (deterministic agents: TD3, REValueD, the offline TD3 family):
     a_i = pi(s_i), then pi again; G = sum_t gamma^t r_t, the plain discounted reward, is
     Q^pi(s_i, a_i) up to gamma^H. A deterministic policy in MuJoCo's deterministic dynamics
     makes the same trajectory every time, so this takes one rollout per state.
   - `bias_target = "soft"` (agents with a stochastic policy and an entropy temperature: SAC,
     TQC): their critics learn Q(s,a) = r + gamma E[Q(s',a') - alpha log pi(a'|s')], the soft
     value of the stochastic policy. Each of `rollouts` rollouts samples its own a ~ pi(s_i)
     and follows the sampled policy; every later step adds -alpha log pi(a_t|s_t), discounted:
       G = sum_{t>=0} gamma^t r_t - alpha sum_{t>=1} gamma^t log pi(a_t|s_t)
     (the first action's own log-probability is not part of Q(s, a)). alpha is the agent's
     temperature at the time of measurement, the one its critic's target uses (REDQ's
     bias_utils is passed the constructor's fixed alpha instead, 0.2, even where the
     temperature is tuned). The draws use a torch RNG forked from
     the states' seed, so measuring never moves the training run's random streams.
3. Bias_i = mean over rollouts of Q(s_i, a_i^r) - G_i^r, Q the estimate the agent's policy
   maximises (`q_value`). Three normalizations, all reported:
   - ours: Bias_i / |mean_i G_i| (`bias_normalized_*`), one scale for the whole batch;
   - per state, REDQ's floor: Bias_i / max(|mean_r G_i^r|, 10) (`bias_normalized_redq_*`),
     the rollouts of a state averaged first; the floor of 10 reward units keeps states with
     returns near zero from dominating;
   - REDQ's own formula, per sample: (Q(s_i, a_i^r) - G_i^r) / max(|G_i^r|, 10), averaged over
     every (state, rollout) (`bias_normalized_redq_sample_*`; REDQ makes one rollout per
     sampled state). It equals the per-state one where a state's rollouts agree; where they
     part (one of a state's rollouts falls), a small |G| makes its sample large.
   States come from the replay buffer (or the policy's episodes), not from REDQ's fresh
   episodes of the current policy, and SAC's Q is the minimum of its two critics (REDQ averages
   its ensemble): neither normalization compares with REDQ's published curves as is.
   Report mean and std of each, mean Q and mean G, and the same for every variant in
   `q_estimates` (TD3's min, TQC's truncated mean).
Soft agents also get the deterministic measurement, labelled `bias_target = "reward"`, under
`deterministic`: the mean action's reward-only return, which is what the TD3 family measures
and what this harness reported for SAC and TQC before (issue 18). It mixes two quantities for
a soft critic: its Q includes future entropy bonuses, that return has none.

Where the environment's state cannot be restored, the states are fresh episode starts
(env.reset(seed + i)) and the result says so: `restored_states` is false.

The harness knows no agent: it needs `act(obs, deterministic)`, `q_value(obs, actions)`,
optionally `q_estimates(obs, actions)`, and for the soft measurement
`act_with_log_prob(obs) -> (actions, log pi)` and `entropy_alpha() -> float`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from core import stop
from envs import set_sim_state
from harness.evaluation import sampling_rng


@dataclass
class States:
    """Where to measure: observations, with simulator states when they can be restored."""

    obs: np.ndarray  # K x obs_dim (or K x H x W x C uint8 frames)
    sim_states: np.ndarray | None  # K x state_dim, or K opaque byte states (object array);
    # None = fresh episode starts
    reset_seeds: np.ndarray  # K: seed of the reset before restoring (or of the start state)
    indices: np.ndarray | None = None  # K: buffer/dataset indices the states came from
    levels: np.ndarray | None = None  # K: the level of each state (envs/levels.py), if any


def horizon_for(gamma: float, tol: float = 1e-3) -> int:
    """Smallest H with gamma^H <= tol: rewards past H change the return by at most tol/(1-g)
    times the reward scale."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"Monte-Carlo truth needs gamma in [0, 1), got {gamma}")
    if gamma == 0.0:
        return 1
    return max(1, math.ceil(math.log(tol) / math.log(gamma)))


def states_from_buffer(buffer, k: int, seed: int) -> States:
    """K transitions drawn uniformly (own RNG) from a buffer that stores `sim_state`."""
    if len(buffer) == 0:
        raise ValueError("the replay buffer is empty: no states to measure the bias on")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(buffer), size=min(k, len(buffer)), replace=False))
    batch = buffer.transitions(idx)
    if "sim_state" not in batch.extras:
        raise ValueError("the buffer stores no simulator states to restore")
    return States(
        obs=batch.obs.numpy(),
        sim_states=batch.extras["sim_state"].numpy(),
        reset_seeds=seed + np.arange(len(idx)),
        indices=idx,
        levels=batch.extras["level"].numpy() if "level" in batch.extras else None,
    )


def states_from_policy(agent, env, k: int, seed: int) -> States:
    """K states the deterministic policy reaches: every env of the vector env `env` (reset
    with `seed`; with levels, env i plays the first level of its schedule) plays one episode,
    and K of all the states they pass through are drawn uniformly (own RNG). How the bias on
    held-out levels is measured: there is no replay buffer of states on levels never trained
    on, so the policy's own visits stand in for it, and the training levels are measured the
    same way to compare like with like."""
    obs = env.reset(seed)
    seen_obs, seen_states, seen_levels = [], [], []
    live = np.ones(env.num_envs, dtype=bool)
    while live.any():
        stop.check()
        sims, levels = env.sim_states(), env.current_levels()
        if sims is None:
            raise ValueError("the env's states cannot be restored: no policy states to measure")
        for i in np.flatnonzero(live):
            seen_obs.append(obs[i])
            seen_states.append(sims[i])
            seen_levels.append(-1 if levels is None else levels[i])
        step = env.step(np.asarray(agent.act(obs, deterministic=True)))
        obs = step.obs
        live &= ~(step.terminated | step.truncated)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(seen_obs), size=min(k, len(seen_obs)), replace=False))
    levels = np.asarray(seen_levels, dtype=np.int64)[idx]
    obs = np.stack(seen_obs)[idx]
    if isinstance(seen_states[0], bytes):  # opaque states (Procgen): kept whole, as objects
        sim_states = np.empty(len(seen_states), dtype=object)
        sim_states[:] = seen_states
    else:
        sim_states = np.stack(seen_states)
    return States(
        obs=obs if obs.dtype == np.uint8 else obs.astype(np.float32),  # frames stay uint8
        sim_states=sim_states[idx],
        reset_seeds=seed + np.arange(len(idx)),
        indices=idx,
        levels=None if (levels < 0).any() else levels,
    )


def start_states(env: gym.Env, k: int, seed: int) -> States:
    """Fallback for envs without restorable states: the first observation of K episodes."""
    obs = np.stack([env.reset(seed=seed + i)[0] for i in range(k)])
    return States(obs=obs, sim_states=None, reset_seeds=seed + np.arange(k))


def is_soft(agent) -> bool:
    """Whether the agent's critic learns a soft value (a stochastic policy with a temperature)."""
    return hasattr(agent, "act_with_log_prob") and hasattr(agent, "entropy_alpha")


@dataclass
class Rollouts:
    """Discounted sums of one rollout per env, and what the policy did first."""

    rewards: np.ndarray  # N: sum_t gamma^t r_t
    entropy: np.ndarray  # N: -alpha sum_{t>=1} gamma^t log pi(a_t|s_t) (zeros when not soft)
    first_actions: np.ndarray  # N x action dims
    time_limit_cuts: int  # rollouts a time limit ended before termination or the horizon


def rollout_returns(
    agent, envs: list[gym.Env], first_obs: np.ndarray, gamma: float, horizon: int,
    alpha: float | None = None,
) -> Rollouts:  # fmt: skip
    """Roll every env (already in its start state) out together, one policy batch per step.

    alpha None: the deterministic policy and the reward alone. A float: the sampled policy, and
    each step after the first adds -alpha log pi(a_t|s_t), discounted (the soft return).
    """

    def policy(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if alpha is None:
            return agent.act(obs, deterministic=True), None
        return agent.act_with_log_prob(obs)

    n = len(envs)
    obs = np.array(first_obs, dtype=np.float32, copy=True)
    rewards, entropy, discount = np.zeros(n), np.zeros(n), np.ones(n)
    alive = np.ones(n, dtype=bool)
    cut = 0
    first_actions, _ = policy(obs)
    actions = first_actions
    for t in range(horizon):
        stop.check()  # up to `horizon` batched steps: Ctrl-C is heard between them
        live = np.flatnonzero(alive)
        if live.size == 0:
            break
        if t > 0:
            actions = np.zeros_like(first_actions)
            actions[live], log_prob = policy(obs[live])
            if log_prob is not None:  # discount[live] = gamma^t here
                entropy[live] -= discount[live] * alpha * np.asarray(log_prob, np.float64)
        for i in live:
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[i])
            rewards[i] += discount[i] * float(reward)
            discount[i] *= gamma
            obs[i] = next_obs
            if terminated or truncated:
                alive[i] = False
                cut += int(truncated and not terminated)
    return Rollouts(rewards, entropy, first_actions, cut)


REDQ_FLOOR = 10.0  # REDQ divides by max(|G|, 10): per sample, and here per state too


def _stats(q: np.ndarray, g: np.ndarray, bias: np.ndarray,
           samples: np.ndarray | None = None) -> dict[str, float]:  # fmt: skip
    """Per-state estimates q, truths g and biases (each K; bias = mean over rollouts of Q - G);
    `samples`, where given, REDQ's per-sample normalized biases (Q - G) / max(|G|, 10), one per
    (state, rollout)."""
    scale = abs(float(g.mean()))
    normalized = bias / scale if scale > 0 else np.full_like(bias, np.nan)
    redq = bias / np.maximum(np.abs(g), REDQ_FLOOR)
    extra = {}
    if samples is not None:
        extra = {"bias_normalized_redq_sample_mean": float(samples.mean()),
                 "bias_normalized_redq_sample_std": float(samples.std())}  # fmt: skip
    return {
        "q_mean": float(q.mean()),
        "bias_mean": float(bias.mean()),
        "bias_std": float(bias.std()),
        "bias_normalized_mean": float(normalized.mean()),
        "bias_normalized_std": float(normalized.std()),
        "bias_normalized_redq_mean": float(redq.mean()),
        "bias_normalized_redq_std": float(redq.std()),
        **extra,
    }


class BiasMeter:
    """Holds the environment copies for repeated measurements (e.g. every N training steps)."""

    def __init__(
        self,
        env_fn: Callable[[int], gym.Env],
        gamma: float,
        rollouts: int = 1,
        tol: float = 1e-3,
    ):
        """`env_fn(max_episode_steps)` makes one environment copy whose time limit does not cut
        rollouts short of the horizon. `rollouts` per state for a stochastic (soft) policy; a
        deterministic policy gets one (module doc)."""
        if rollouts < 1:
            raise ValueError(f"rollouts must be >= 1, got {rollouts}")
        self.gamma, self.rollouts = gamma, rollouts
        self.horizon = horizon_for(gamma, tol)
        self.env_fn = env_fn
        self.envs: list[gym.Env] = []

    def _copies(self, n: int) -> list[gym.Env]:
        while len(self.envs) < n:
            self.envs.append(self.env_fn(self.horizon + 1))
        return self.envs[:n]

    @torch.no_grad()
    def measure(self, agent, states: States) -> dict:
        """The bias numbers for `agent` on `states` (module doc): the soft measurement for a
        soft agent, with the deterministic one under `deterministic`; else the reward one."""
        if not is_soft(agent):
            return self._measure(agent, states, soft=False)
        devices = [agent.device] if agent.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(states.reset_seeds[0]))
            result = self._measure(agent, states, soft=True)
        result["deterministic"] = self._measure(agent, states, soft=False)
        return result

    def _measure(self, agent, states: States, soft: bool) -> dict:
        k, m = len(states.obs), self.rollouts if soft else 1
        envs = self._copies(k * m)
        first_obs = np.repeat(states.obs, m, axis=0)
        for j, env in enumerate(envs):
            i, r = divmod(j, m)
            if states.sim_states is not None:  # rollout r gets its own env RNG stream
                # in the state's own level, where it has one (envs/levels.py)
                options = None if states.levels is None else {"level": int(states.levels[i])}
                env.reset(seed=int(states.reset_seeds[i]) + 1_000_003 * r, options=options)
                first_obs[j] = set_sim_state(env, states.sim_states[i])
            else:  # the start state is the reset seed's, the same for every rollout
                first_obs[j] = env.reset(seed=int(states.reset_seeds[i]))[0]
        alpha = float(agent.entropy_alpha()) if soft else None
        out = rollout_returns(agent, envs, first_obs, self.gamma, self.horizon, alpha)
        g_runs = (out.rewards + out.entropy).reshape(k, m)  # K x rollouts
        obs_t = torch.as_tensor(first_obs, dtype=torch.float32, device=agent.device)
        act_t = torch.as_tensor(out.first_actions, dtype=torch.float32, device=agent.device)
        soft_fields = {}
        if soft:
            soft_fields = {"alpha": alpha, "mc_reward_mean": float(out.rewards.mean()),
                           "mc_entropy_mean": float(out.entropy.mean())}  # fmt: skip
        return _result(agent, obs_t, act_t, g_runs, "soft" if soft else "reward", self.horizon,
                       self.gamma, states.sim_states is not None, out.time_limit_cuts,
                       soft_fields)  # fmt: skip


def _result(
    agent, obs_t: torch.Tensor, act_t: torch.Tensor, g_runs: np.ndarray, target: str,
    horizon: int, gamma: float, restored: bool, cuts: int, extra: dict,
) -> dict:  # fmt: skip
    """The measurement's numbers: Q of every estimate at (obs_t, act_t) (K x rollouts rows,
    state-major) against the truths g_runs (K x rollouts)."""
    k, m = g_runs.shape
    g = g_runs.mean(axis=1)

    def stats(q_runs: torch.Tensor) -> dict[str, float]:
        """Per state: mean Q over rollouts, and the mean over rollouts of Q - G."""
        q_runs = q_runs.double().cpu().numpy().reshape(k, m)
        samples = (q_runs - g_runs) / np.maximum(np.abs(g_runs), REDQ_FLOOR)
        return _stats(q_runs.mean(axis=1), g, (q_runs - g_runs).mean(axis=1), samples)

    result = {
        **stats(agent.q_value(obs_t, act_t)),
        "bias_target": target,
        "mc_return_mean": float(g.mean()),
        "n_states": k,
        "rollouts": m,
        "horizon": horizon,
        "gamma": gamma,
        "restored_states": restored,
        "time_limit_cuts": cuts,
        **extra,
    }
    if hasattr(agent, "q_estimates"):
        estimates = agent.q_estimates(obs_t, act_t)
        result["estimates"] = {name: stats(v) for name, v in estimates.items()}
    return result


def vector_rollouts(agent, env, first_obs: np.ndarray, gamma: float, horizon: int,
                    deterministic: bool = True) -> Rollouts:  # fmt: skip
    """rollout_returns for the deterministic policy (or, `deterministic` False, the actor's
    own random one, e.g. harness.evaluation.EpsilonGreedy) on a vector env already in its start
    states (Procgen: one native call steps every env). An env whose episode has ended keeps
    stepping (vector envs reset themselves) but is masked out and acts 0."""
    n = env.num_envs
    rewards, discount = np.zeros(n), np.ones(n)
    alive = np.ones(n, dtype=bool)
    cut = 0
    obs = first_obs
    first_actions = np.asarray(agent.act(obs, deterministic=deterministic))
    actions = first_actions
    for t in range(horizon):
        stop.check()
        if not alive.any():
            break
        if t > 0:
            actions = np.zeros_like(first_actions)
            actions[alive] = agent.act(obs[alive], deterministic=deterministic)
        step = env.step(actions)
        rewards[alive] += discount[alive] * step.rewards[alive]
        discount *= gamma
        ended = alive & (step.terminated | step.truncated)
        cut += int((ended & step.truncated & ~step.terminated).sum())
        alive &= ~ended
        obs = step.obs
    return Rollouts(rewards, np.zeros(n), first_actions, cut)


@torch.no_grad()
def measure_restored_vector(agent, env, states: States, gamma: float, tol: float = 1e-3,
                            actor=None, rollouts: int = 1, seed: int = 0) -> dict:  # fmt: skip
    """The reward-truth measurement (module doc, step 2) for a deterministic agent on a vector
    env that restores all its states at once (`env.set_sim_states`: Procgen, whose states are
    opaque bytes), the same keys as BiasMeter.measure. The observations keep their dtype
    (uint8 frames: the encoder scales them).

    By default the agent's own deterministic policy plays one rollout per state (env of K
    envs). With `actor` (e.g. harness.evaluation.EpsilonGreedy over the agent) that policy
    plays instead, `rollouts` R times from each state (env of K x R envs, state-major), its
    random draws from torch's RNG seeded with `seed` (the caller's restored after); Q is the
    agent's at each rollout's first action, so the bias is Q(s, a) - G against the return of
    the policy that played (`rollout_policy`: "greedy" or "epsilon-greedy E")."""
    if is_soft(agent):
        raise ValueError("the vector-env measurement is the deterministic one; a soft agent "
                         "needs BiasMeter's sampled rollouts")  # fmt: skip
    k = 0 if states.sim_states is None else len(states.sim_states)
    if rollouts < 1 or (actor is None and rollouts != 1):
        raise ValueError(f"rollouts: 1 for the deterministic policy, >= 1 with an actor; "
                         f"got {rollouts}")  # fmt: skip
    if k == 0 or k * rollouts != env.num_envs:
        raise ValueError(f"expected {env.num_envs // rollouts} restorable states for "
                         f"{env.num_envs} envs, {rollouts} rollouts a state; got {k}")  # fmt: skip
    horizon = horizon_for(gamma, tol)
    first_obs = env.set_sim_states([s for s in states.sim_states for _ in range(rollouts)])
    if actor is None:
        out = vector_rollouts(agent, env, first_obs, gamma, horizon)
        policy = "greedy"
    else:
        with sampling_rng(seed, deterministic=False):
            out = vector_rollouts(actor, env, first_obs, gamma, horizon, deterministic=False)
        policy = f"epsilon-greedy {actor.epsilon:g}" if hasattr(actor, "epsilon") else "actor"
    obs_t = torch.as_tensor(first_obs, device=agent.device)
    act_t = torch.as_tensor(out.first_actions, device=agent.device)
    return _result(agent, obs_t, act_t, out.rewards.reshape(k, rollouts), "reward", horizon,
                   gamma, True, out.time_limit_cuts, {"rollout_policy": policy})  # fmt: skip
