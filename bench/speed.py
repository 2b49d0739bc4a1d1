"""Update throughput, ours vs Stable-Baselines3, in one process on the same data.

    python bench/speed.py --algo td3 --env Hopper-v5 --updates 1000 --rounds 5

Both sides: the same network sizes, batch 256, one gradient update per call of the inner loop
(replay sampling included), one torch thread, on a replay buffer filled with the same
transitions. Rounds alternate ours/SB3 so that background load hits both alike; the median
round is reported. Install the peers with `pip install -e .[bench]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import get_agent_module  # noqa: E402
from agents.buffer import ReplayBuffer  # noqa: E402
from envs import make_env, random_actions  # noqa: E402

BATCH = 256


def collect(env_id: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """n random-policy transitions (the same for both libraries)."""
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    data = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")}
    for _ in range(n):
        action = random_actions(env.action_space, rng, 1)[0]
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(data, (obs, action, reward, next_obs, terminated, truncated)):
            data[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return {k: np.asarray(v) for k, v in data.items()}


def ours_td3(env_id: str, data: dict):
    module = get_agent_module("td3")
    env = make_env(env_id)
    cfg = module.Config(batch_size=BATCH, actor_hidden=[256, 256], critic_hidden=[256, 256])
    agent = module.Agent(cfg, env.observation_space, env.action_space, "cpu")
    buffer = ReplayBuffer.from_arrays(
        data["obs"],
        data["actions"],
        data["rewards"],
        data["next_obs"],
        data["terminated"],
        data["truncated"],
    )

    def run(updates: int) -> None:
        for _ in range(updates):
            agent.update(buffer.sample(BATCH, gamma=cfg.gamma))

    return run


def sb3_td3(env_id: str, data: dict):
    from stable_baselines3 import TD3

    env = make_env(env_id)
    model = TD3(
        "MlpPolicy",
        env,
        learning_rate=3e-4,
        buffer_size=len(data["obs"]) + 1,
        batch_size=BATCH,
        learning_starts=0,
        policy_kwargs={"net_arch": [256, 256]},
        device="cpu",
        seed=0,
    )
    rb = model.replay_buffer
    for i in range(len(data["obs"])):
        # SB3 stores time-limit truncations via the TimeLimit.truncated info key.
        done = bool(data["terminated"][i] or data["truncated"][i])
        info = [{"TimeLimit.truncated": bool(data["truncated"][i] and not data["terminated"][i])}]
        rb.add(
            data["obs"][i][None],
            data["next_obs"][i][None],
            data["actions"][i][None],
            np.array([data["rewards"][i]]),
            np.array([done]),
            info,
        )
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(None, [""]))

    def run(updates: int) -> None:
        model.train(gradient_steps=updates, batch_size=BATCH)

    return run


ALGOS = {"td3": (ours_td3, sb3_td3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(ALGOS), default="td3")
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--updates", type=int, default=1000, help="updates per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--transitions", type=int, default=20_000)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = collect(args.env, args.transitions, seed=0)
    runners = {
        "ogzoo": ALGOS[args.algo][0](args.env, data),
        "sb3": ALGOS[args.algo][1](args.env, data),
    }
    for run in runners.values():
        run(100)  # warm-up: allocator, optimizer state
    speeds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run(args.updates)
            speeds[name].append(args.updates / (time.perf_counter() - start))
    ours, theirs = statistics.median(speeds["ogzoo"]), statistics.median(speeds["sb3"])
    print(
        f"{args.algo} on {args.env}, batch {BATCH}, 256-256 nets, 1 thread, torch "
        f"{torch.__version__}, median of {args.rounds} rounds x {args.updates} updates"
    )
    for name in runners:
        rounds = ", ".join(f"{s:.0f}" for s in speeds[name])
        print(f"  {name:6s} {statistics.median(speeds[name]):7.1f} updates/s  (rounds: {rounds})")
    print(f"  ratio ogzoo/sb3: {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
