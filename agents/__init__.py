"""The agents of the zoo. One file per agent; this registry maps CLI names to those files.

Every agent module defines `Config` (a dataclass of hyperparameters with the paper's defaults)
and `Agent(cfg, observation_space, action_space, device)` with act / update / q_value /
state_dict / load_state_dict (see ../shared/DESIGN.md, "The agent contract"), and optionally
`observe(obs)`, which the training loop calls with every observation the training envs return
(running observation statistics are updated there, never from replayed batches).

Randomness and optimizer steps inside `update` go through agents/nets.py: every random number
of a loss from `normal_like`, every step through `optimize`, so that several seeds in one
process (training/seeds.py) can give each seed its own stream. A module that also lists
`SEED_AXIS` (the methods `update` calls for its tensor maths, e.g. TD3's `prepare`,
`_critic_loss`, `_actor_loss`) can be updated for K seeds at once under torch.func.vmap: those
methods must be pure functions of the agent's modules and their arguments, and the rest of
`update` may only step optimizers, Polyak-average, and combine their outputs elementwise.

Offline agents set `OFFLINE = True` (train.py then requires --dataset) and may define
`fit_dataset(observations, actions, cache_dir)`, called once with the whole dataset before
training (cache_dir: a folder beside the dataset for models fitted to it, e.g. SPOT's VAE).
On-policy agents (PPO) set `ON_POLICY = True`: training/on_policy.py collects their rollouts
(`policy_step`, `value`, `scale_rewards`, the module's `compute_gae`) and calls `update` on
each; they have no `q_value`, so the bias harness does not apply to them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

AGENTS: dict[str, str] = {
    "td3": "agents.td3",
    "sac": "agents.sac",
    "tqc": "agents.tqc",
    "td3_bc": "agents.td3_bc",
    "prdc": "agents.prdc",
    "spot": "agents.spot",
    "revalued": "agents.revalued",
    "ppo": "agents.ppo",
}


def get_agent_module(name: str) -> ModuleType:
    """The module implementing agent `name`; ValueError naming the known agents otherwise."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent '{name}' (known: {', '.join(sorted(AGENTS))})")
    return importlib.import_module(AGENTS[name])
