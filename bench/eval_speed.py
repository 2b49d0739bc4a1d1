"""Issue 23, item 4: what an evaluation costs, one env at a time vs a vector env.

    python bench/eval_speed.py --env HalfCheetah-v5 --episodes 10 --repeats 3

A TD3 agent at the paper's size (256-256, untrained: the cost per step does not depend on the
weights) plays `episodes` deterministic episodes of HalfCheetah-v5 (which never terminates, so
every episode is 1000 steps and both protocols play exactly as many steps) the old way,
harness.evaluation.evaluate_policy (one env, one policy call per step), and the new way,
evaluate_vector (up to 10 envs, one policy batch per step). Then it times `updates` TD3 updates
on random batches, to put an evaluation against the training it interrupts: TD3 evaluates
every 5,000 env steps, each with one update, so the share of a run spent evaluating is
eval / (eval + 5000 x (update + env step)). One process, one torch thread; the best of
`repeats` is reported (the machine is shared).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents import get_agent_module  # noqa: E402
from envs import VecEnv, make_env  # noqa: E402
from harness.evaluation import EVAL_ENVS, evaluate_policy, evaluate_vector  # noqa: E402

EVAL_EVERY = 5000  # TD3's env steps between evaluations


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--updates", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env = make_env(args.env)
    module = get_agent_module("td3")
    agent = module.Agent(module.Config(), env.observation_space, env.action_space,
                         torch.device("cpu"))  # fmt: skip
    vec = VecEnv(args.env, min(args.episodes, EVAL_ENVS), 0)
    steps = {}

    def one_env():
        steps["one"] = sum(evaluate_policy(agent, env, args.episodes, 100_000)["lengths"])

    def vector():
        steps["vector"] = sum(evaluate_vector(agent, vec, args.episodes, 100_000)["lengths"])

    old = best_of(args.repeats, one_env)
    new = best_of(args.repeats, vector)
    # the training an evaluation interrupts: updates on random batches, and env steps
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    batch_size = module.Config().batch_size
    rng = np.random.default_rng(0)

    def batch():
        from agents.buffer import Batch

        def t(*shape):
            return torch.as_tensor(rng.standard_normal(shape), dtype=torch.float32)

        zeros = torch.zeros(batch_size)
        return Batch(obs=t(batch_size, obs_dim), actions=t(batch_size, act_dim).clamp(-1, 1),
                     rewards=t(batch_size), next_obs=t(batch_size, obs_dim), terminated=zeros,
                     truncated=zeros, discounts=torch.full((batch_size,), 0.99), extras={},
                     indices=torch.arange(batch_size))  # fmt: skip

    batches = [batch() for _ in range(args.updates)]
    update = best_of(1, lambda: [agent.update(b) for b in batches]) / args.updates
    env.reset(seed=0)
    actions = rng.uniform(-1, 1, (1000, act_dim)).astype(np.float32)
    step = best_of(1, lambda: [env.step(a) for a in actions]) / len(actions)
    train = EVAL_EVERY * (update + step)
    print(
        f"{args.env}, TD3 256-256 actor, {args.episodes} episodes ({steps['one']:,} and "
        f"{steps['vector']:,} env steps), best of {args.repeats}:"
    )
    print(f"  one env at a time (evaluate_policy):  {old:7.2f} s")
    print(f"  vector env of {vec.num_envs} (evaluate_vector):  {new:7.2f} s   ({old / new:.2f}x)")
    print(
        f"  training between evaluations: {EVAL_EVERY:,} x ({1000 * update:.2f} ms update + "
        f"{1000 * step:.3f} ms env step) = {train:.1f} s"
    )
    print(
        f"  evaluation share of a run: {100 * old / (old + train):.1f}% -> "
        f"{100 * new / (new + train):.1f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
