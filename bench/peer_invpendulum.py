"""Is TD3's slow start on InvertedPendulum-v5 the task's or the zoo's? Stable-Baselines3's TD3
with the zoo's settings (256-256, 1,000 random warm-up steps, Gaussian exploration 0.1 of the
action range, seed 0), evaluated on 5 deterministic episodes every 1,000 env steps:

    python bench/peer_invpendulum.py --steps 15000

Compare with `train.py --agent td3 --env InvertedPendulum-v5 --set learning_starts=1000
--eval-every 1000 --eval-episodes 5` (docs/utd.md, "Pilots").
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import TD3
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

ENV = "InvertedPendulum-v5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    env, eval_env = gym.make(ENV), gym.make(ENV)
    width = env.action_space.high - env.action_space.low  # noise 0.1 of [-1, 1] = 0.05 x width
    noise = NormalActionNoise(np.zeros_like(width), 0.05 * width)
    model = TD3("MlpPolicy", env, learning_starts=1000, action_noise=noise, seed=args.seed,
                policy_kwargs={"net_arch": [256, 256]})  # fmt: skip
    for step in range(1000, args.steps + 1, 1000):
        model.learn(1000, reset_num_timesteps=False)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=5)
        print(f"{step} {mean:.1f}", flush=True)


if __name__ == "__main__":
    main()
