"""Update cost of PRDC against TD3+BC on one dataset, in one process, one torch thread.

    python bench/offline_speed.py --dataset hopper-random-v5 --rounds 5 --updates 500
    python bench/offline_speed.py --dataset hopper-medium-v5 --train-first 20000   # trained actors

Both agents are fitted to the whole dataset (PRDC builds its k-d tree over every transition)
and then timed on the same replay sampling, alternating rounds so that background load hits
both alike; reported: updates/s per round, the medians, and PRDC's cost relative to TD3+BC's
(time per update ratio). One update = one critic step, with an actor step every
policy_delay (2) updates, as in training. PRDC's k-d tree search costs more the farther pi(s)
is from the data, so an untrained actor (the default) is its slow case; --train-first N
times both agents after N updates each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents import get_agent_module  # noqa: E402
from envs import make_env  # noqa: E402
from envs.datasets.loading import dataset_env_id, load_dataset  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-random-v5")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=500, help="timed updates per round")
    parser.add_argument("--train-first", type=int, default=20, help="untimed updates first")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, source = load_dataset(args.dataset, make_missing=False)
    env = make_env(dataset_env_id(data, args.dataset))
    buffer = data.to_buffer(seed=0)
    agents, fit_s = {}, {}
    for name in ("td3_bc", "prdc"):
        module = get_agent_module(name)
        torch.manual_seed(0)
        agent = module.Agent(module.Config(), env.observation_space, env.action_space)
        start = time.perf_counter()
        agent.fit_dataset(data.observations, data.actions)
        fit_s[name] = time.perf_counter() - start
        for _ in range(args.train_first):
            agent.update(buffer.sample(256))
        agents[name] = agent
    print(f"{source}: {len(data):,} transitions; fit_dataset s: "
          + ", ".join(f"{k} {v:.2f}" for k, v in fit_s.items()))  # fmt: skip
    speeds: dict[str, list[float]] = {name: [] for name in agents}
    for r in range(args.rounds):
        for name, agent in agents.items():
            start = time.perf_counter()
            for _ in range(args.updates):
                agent.update(buffer.sample(256))
            speeds[name].append(args.updates / (time.perf_counter() - start))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.1f} upd/s" for k, v in speeds.items()),
              flush=True)  # fmt: skip
    median = {k: statistics.median(v) for k, v in speeds.items()}
    print(f"median updates/s: td3_bc {median['td3_bc']:.1f}, prdc {median['prdc']:.1f}; "
          f"PRDC's update costs {median['td3_bc'] / median['prdc']:.2f}x TD3+BC's")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
