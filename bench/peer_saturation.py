"""Issue 18, item 6: does the one numeric difference between our TQC/SAC update and SB3's (the
form of log pi, docs/peer-parity.md) act in the learning runs? It can only where the actor's
pre-tanh actions saturate (|u| beyond about 5), so measure how saturated the trained actors are.

    python bench/peer_saturation.py /root/runs/peer/ours-tqc-s2 /root/runs/peer/sb3-tqc-s2

Each argument is one of our runs (folder or checkpoint, evaluate.py's rules) or an SB3 run
(folder holding model.zip, or the .zip; `--sb3-algo` says TQC or SAC). On the states of
`--episodes` deterministic HalfCheetah-v5 episodes of that policy (episode k from
reset(seed + k)) it gives: the episodes' returns, the fraction of each episode's steps spent
upside down (torso pitch past +-90 degrees), alpha, the pre-tanh mean |mu| (its average
and the fractions above 3 and 7), sigma, and for one sampled u ~ N(mu, sigma) per state and
dimension the fraction with |u| > 7 and -log pi in our exact form and in SB3's
(log(1 - tanh(u)^2 + 1e-6)). One JSON line per policy.

    python bench/peer_saturation.py RUN --replay REPLAY_FILE

measures instead on every state of a replay buffer (ours: RUN/checkpoints/replay-N.pt; SB3's:
replay.pkl), the states the update's log pi is evaluated on: no returns, the saturation
statistics only.

    python bench/peer_saturation.py --sigma-table

prints, for one action dimension with mean 0, the entropy -E[log pi] of the squashed Gaussian
in both forms against sigma (200,000 samples, seed 0): where an entropy bonus alone would take
sigma, and from which sigma on the two forms part.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agents.sac import tanh_log_prob  # noqa: E402

ENV = "HalfCheetah-v5"
SB3_EPSILON = 1e-6


def saturation(mean: torch.Tensor, log_std: torch.Tensor, u: torch.Tensor) -> dict:
    """Statistics of a batch of pre-tanh Gaussians (mean, log_std: B x A) and one sample u of
    each (B x A): how far into tanh's flat tails they sit, and the mean of -log pi(tanh(u)) in
    the exact form and in SB3's."""
    a = mean.abs()
    return {
        "mu_abs_mean": float(a.mean()),
        "mu_abs_above_3": float((a > 3).double().mean()),
        "mu_abs_above_7": float((a > 7).double().mean()),
        "sigma_mean": float(log_std.exp().mean()),
        "u_abs_above_7": float((u.abs() > 7).double().mean()),
        "neg_log_pi_exact": float(-tanh_log_prob(u, mean, log_std).mean()),
        "neg_log_pi_sb3": float(-tanh_log_prob(u, mean, log_std, SB3_EPSILON).mean()),
    }


def entropy_by_sigma(sigmas: list[float], samples: int = 200_000, seed: int = 0) -> list[dict]:
    """-E[log pi] of tanh(u), u ~ N(0, sigma^2), one dimension, in both forms, per sigma."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for sigma in sigmas:
        mean = torch.zeros(samples, 1, dtype=torch.float64)
        u = sigma * torch.randn(samples, 1, generator=gen, dtype=torch.float64)
        log_std = torch.full_like(mean, float(np.log(sigma)))
        rows.append({"sigma": sigma, **saturation(mean, log_std, u)})
    return rows


def upside_down(pitch: float) -> bool:
    """HalfCheetah's torso pitch (qpos[2], radians, any number of turns) is past +-90 degrees."""
    return abs((pitch + np.pi) % (2 * np.pi) - np.pi) > np.pi / 2


def load_policy(path: str, sb3_algo: str):
    """(obs tensor -> (mean, log_std), alpha) of our run or SB3's."""
    p = Path(path)
    zip_path = p / "model.zip" if p.is_dir() and (p / "model.zip").is_file() else p
    if zip_path.suffix == ".zip":
        import peer_update_check as check

        model = check.sb3_class(sb3_algo).load(str(zip_path), device="cpu")
        alpha = float(torch.exp(model.log_ent_coef.detach()))

        def params(obs):
            mean, log_std, _ = model.actor.get_action_dist_params(obs)
            return mean, log_std

        return params, alpha
    import evaluate

    agent, _, _, ckpt = evaluate.load_agent(path, None)
    if ckpt["env"] != ENV or not hasattr(agent, "temperature"):
        raise evaluate.UserError(f"{path} is not a SAC or TQC run on {ENV}")
    return agent.actor, float(agent.temperature.alpha())


@torch.no_grad()
def policy_saturation(params, states: np.ndarray, seed: int) -> dict:
    """saturation() of the policy `params` (obs -> (mean, log_std)) on `states`, one u per state
    and dimension drawn under torch seed `seed`."""
    mean, log_std = params(torch.as_tensor(states, dtype=torch.float32))
    torch.manual_seed(seed)
    u = mean + log_std.exp() * torch.randn_like(mean)
    return saturation(mean.double(), log_std.double(), u.double())


def measure(path: str, sb3_algo: str, episodes: int, seed: int) -> dict:
    import gymnasium as gym

    params, alpha = load_policy(path, sb3_algo)
    env = gym.make(ENV)
    states, returns, upside = [], [], []
    with torch.no_grad():
        for k in range(episodes):
            obs, _ = env.reset(seed=seed + k)
            done, total, flipped, steps = False, 0.0, 0, 0
            while not done:
                states.append(obs)
                mean, _ = params(torch.as_tensor(obs[None], dtype=torch.float32))
                obs, reward, terminated, truncated, _ = env.step(torch.tanh(mean)[0].numpy())
                total += float(reward)
                flipped += upside_down(float(env.unwrapped.data.qpos[2]))
                steps += 1
                done = terminated or truncated
            returns.append(round(total, 1))
            upside.append(round(flipped / steps, 3))
    stats = policy_saturation(params, np.array(states), seed)
    return {"policy": path, "returns": returns, "upside_down": upside, "alpha": alpha,
            "states": len(states), **stats}  # fmt: skip


def replay_states(path: str) -> np.ndarray:
    """Every stored observation of a replay buffer file: ours (agents.buffer's replay-N.pt) or
    SB3's (its pickled ReplayBuffer, replay.pkl)."""
    if path.endswith(".pkl"):
        import pickle

        with open(path, "rb") as f:
            buf = pickle.load(f)
        rows = buf.buffer_size if buf.full else buf.pos
        return buf.observations[:rows].reshape(rows * buf.n_envs, -1)
    from agents.buffer import ReplayBuffer

    buf = ReplayBuffer.load(path)
    return buf.transitions(np.arange(len(buf))).obs.numpy()


def measure_replay(path: str, replay: str, sb3_algo: str, seed: int) -> dict:
    """saturation() of the policy on every state of the replay buffer `replay`."""
    params, alpha = load_policy(path, sb3_algo)
    states = replay_states(replay)
    stats = policy_saturation(params, states, seed)
    return {"policy": path, "replay": replay, "alpha": alpha, "states": len(states), **stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policies", nargs="*", help="our run or checkpoint; SB3 run or .zip")
    parser.add_argument("--sigma-table", action="store_true")
    parser.add_argument("--sb3-algo", choices=["tqc", "sac"], default="tqc")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--replay", help="measure on this replay buffer's states (one policy)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        print("error: --episodes must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    if args.sigma_table:
        print("| sigma | entropy, exact | entropy, SB3's form | P(abs(u) > 7) |")
        print("|---|---|---|---|")
        for r in entropy_by_sigma([0.37, 0.61, 1.0, 1.65, 2.72, 4.48, 7.39]):
            print(f"| {r['sigma']:.2f} | {r['neg_log_pi_exact']:.3f} | {r['neg_log_pi_sb3']:.3f} "
                  f"| {r['u_abs_above_7']:.4f} |")  # fmt: skip
    if not args.policies and not args.sigma_table:
        parser.error("give policies, --sigma-table or both")
    if args.replay and len(args.policies) != 1:
        parser.error("--replay measures one policy")
    import evaluate

    for path in args.policies:
        try:
            if args.replay:
                result = measure_replay(path, args.replay, args.sb3_algo, args.seed)
            else:
                result = measure(path, args.sb3_algo, args.episodes, args.seed)
            print(json.dumps(result), flush=True)
        except (evaluate.UserError, FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
