"""Issue 23: the update alone, K seeds stacked (training/seeds.py) against K single updates.

    python bench/seeds_update_speed.py --agents td3 sac --seeds 5 --threads 1 2
    python bench/seeds_update_speed.py --agents td3 sac --seeds 16 --device cuda   # the GPU bar

K agents of the paper's size (TD3: 256-256; SAC: classic, 256-256) on Hopper's shapes (11-dim
observations, 3-dim actions), batch 256 of random transitions: `sequential` updates each agent
in turn, `stacked` runs one update of the seed-stacked template (torch.func.vmap). Reported:
seed-updates/s of each, median of `--rounds` rounds of `--updates` updates, after a warm-up
(on CUDA timed with synchronize). Nothing else should run beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents import get_agent_module  # noqa: E402
from agents.buffer import Batch  # noqa: E402
from training.seeds import RngStreams, SeedStack, stack_batches  # noqa: E402

OBS, ACT, BATCH = 11, 3, 256
SIZES = {"td3": {}, "sac": {"arch": "mlp", "actor_hidden": [256, 256],
                            "critic_hidden": [256, 256]}}  # fmt: skip


def batch(device: torch.device) -> Batch:
    return Batch(obs=torch.randn(BATCH, OBS, device=device),
                 actions=torch.rand(BATCH, ACT, device=device) * 2 - 1,
                 rewards=torch.randn(BATCH, device=device),
                 next_obs=torch.randn(BATCH, OBS, device=device),
                 terminated=torch.zeros(BATCH, device=device),
                 truncated=torch.zeros(BATCH, device=device),
                 discounts=torch.full((BATCH,), 0.99, device=device), extras={},
                 indices=torch.zeros(BATCH, dtype=torch.long, device=device))  # fmt: skip


def rate(fn, updates: int, rounds: int, device: torch.device, per_call: int) -> float:
    """Median seed-updates/s of `rounds` rounds of `updates` calls (each `per_call` seeds)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(5):
        fn()
    results = []
    for _ in range(rounds):
        sync()
        start = time.perf_counter()
        for _ in range(updates):
            fn()
        sync()
        results.append(per_call * updates / (time.perf_counter() - start))
    return statistics.median(results)


def measure(agent: str, seeds: int, device: torch.device, updates: int, rounds: int) -> dict:
    module = get_agent_module(agent)
    cfg = module.Config(**SIZES[agent])
    spaces = gym.spaces.Box(-1, 1, (OBS,)), gym.spaces.Box(-1, 1, (ACT,))
    streams, agents = RngStreams(), []
    for k in range(seeds):
        torch.manual_seed(k)
        agents.append(module.Agent(cfg, *spaces, device))
        streams.capture()
    batches = [batch(device) for _ in range(seeds)]

    def sequential():
        for one, data in zip(agents, batches):
            one.update(data)

    single = rate(sequential, max(1, updates // seeds), rounds, device, seeds)
    with torch.random.fork_rng(devices=[]):
        template = module.Agent(cfg, *spaces, device)
    SeedStack(template, agents, streams, module.SEED_AXIS)
    stacked_batch = stack_batches(batches)
    stacked = rate(lambda: template.update(stacked_batch), max(1, updates // seeds), rounds,
                   device, seeds)  # fmt: skip
    return {"sequential_seed_updates_per_s": round(single, 1),
            "stacked_seed_updates_per_s": round(stacked, 1),
            "stacked_vs_sequential": round(stacked / single, 2)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=["td3", "sac"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--updates", type=int, default=200, help="seed-updates per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    results = {}
    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for agent in args.agents:
            key = f"{agent} K={args.seeds} {device.type} threads={threads}"
            results[key] = measure(agent, args.seeds, device, args.updates, args.rounds)
            print(key, results[key], flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
