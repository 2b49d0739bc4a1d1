"""Update cost of PRDC against TD3+BC on one dataset, in one process, one torch thread.

    python bench/offline_speed.py --dataset hopper-random-v5 --rounds 5 --updates 500
    python bench/offline_speed.py --dataset hopper-medium-v5 --train-first 20000   # trained actors
    python bench/offline_speed.py --dataset hopper-medium-v5 \
        --init-from td3_bc=bench/out/offline/td3_bc-hopper-medium-v5-s0 \
        --init-from prdc=bench/out/offline/prdc-hopper-medium-v5-s0   # actors of real runs

Both agents are fitted to the whole dataset (PRDC builds its k-d tree over every transition)
and then timed on the same replay sampling, alternating rounds so that background load hits
all alike. PRDC is timed twice: with its tree search in place (`prdc-inplace`) and overlapped
with the critic step in a worker thread (`prdc`, the default; it uses a second core when there
is one). Reported per round: updates/s; then the medians, PRDC's cost relative to TD3+BC's
(wall time per update) and each one's CPU time per update (all threads), so that a speed-up
bought with a second core shows as such. One update = one critic step, with an actor step
every policy_delay (2) updates, as in training. PRDC's search costs more the farther pi(s) is
from the data, so an untrained actor (the default) is its slow case; --train-first N times the
agents after N updates each, and --init-from AGENT=RUN starts an agent from a run's checkpoint.
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
from agents.buffer import ReplayBuffer  # noqa: E402
from core.runs import find_checkpoint, load_checkpoint  # noqa: E402
from envs import make_env  # noqa: E402
from envs.datasets.loading import dataset_env_id, load_dataset  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="hopper-random-v5")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=500, help="timed updates per round")
    parser.add_argument("--train-first", type=int, default=20, help="untimed updates first")
    parser.add_argument(
        "--init-from",
        action="append",
        default=[],
        metavar="AGENT=RUN",
        help="start td3_bc or prdc from this run's checkpoint (repeatable)",
    )
    args = parser.parse_args()
    init = {agent: load_checkpoint(find_checkpoint(run))  # read once: two PRDCs share it
            for agent, run in (item.split("=", 1) for item in args.init_from)}  # fmt: skip
    torch.set_num_threads(1)
    data, source = load_dataset(args.dataset)  # reads only
    env = make_env(dataset_env_id(data, args.dataset))
    buffer = ReplayBuffer.from_dataset(data, seed=0)
    agents, fit_s = {}, {}
    for name in ("td3_bc", "prdc-inplace", "prdc"):
        agent_name = name.removesuffix("-inplace")
        module = get_agent_module(agent_name)
        torch.manual_seed(0)
        cfg = module.Config()
        if agent_name == "prdc":
            cfg.overlap_search = name == "prdc"
        agent = module.Agent(cfg, env.observation_space, env.action_space)
        if agent_name in init:
            agent.load_state_dict(init[agent_name]["agent_state"])
        start = time.perf_counter()
        agent.fit_dataset(data.observations, data.actions)
        fit_s[name] = time.perf_counter() - start
        for _ in range(args.train_first):
            agent.update(buffer.sample(256))
        agents[name] = agent
    print(f"{source}: {len(data):,} transitions; fit_dataset s: "
          + ", ".join(f"{k} {v:.2f}" for k, v in fit_s.items()))  # fmt: skip
    speeds: dict[str, list[float]] = {name: [] for name in agents}
    cpu_ms: dict[str, list[float]] = {name: [] for name in agents}
    for r in range(args.rounds):
        for name, agent in agents.items():
            cpu_start = time.process_time()
            start = time.perf_counter()
            for _ in range(args.updates):
                agent.update(buffer.sample(256))
            speeds[name].append(args.updates / (time.perf_counter() - start))
            cpu_ms[name].append((time.process_time() - cpu_start) / args.updates * 1000)
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.1f} upd/s" for k, v in speeds.items()),
              flush=True)  # fmt: skip
    median = {k: statistics.median(v) for k, v in speeds.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_ms.items()}
    for name in agents:
        print(f"{name}: median {median[name]:.1f} updates/s, CPU {cpu[name]:.2f} ms per update"
              + ("" if name == "td3_bc" else f"; wall cost {median['td3_bc'] / median[name]:.2f}x "
                 f"TD3+BC's, CPU cost {cpu[name] / cpu['td3_bc']:.2f}x"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
