"""Behaviour policies for dataset generation: small actor-only files shipped with ogzoo.

A policy file (`datagen/policies/<task>-<level>.pt`, e.g. `hopper-expert.pt`) holds the
agent name and config, the actor's weights (and SimBa's observation statistics), and metadata:
the run it came from (its resolved config and env step), and its mean return over
`REFERENCE_EPISODES` episodes acting as it acts when collecting data (stochastically: SAC/TQC
sample their policy, TD3 adds its exploration noise). That mean is the expert's reference
score for normalization. Files load with `torch.load(weights_only=True)`.

    python -m datagen export-policy runs/tqc-hopper-s0/checkpoints/best.pt hopper-expert
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import envs
from agents import get_agent_module
from core import config as cfglib
from core.errors import UserError
from core.runs import atomic_torch_save, find_checkpoint, load_checkpoint, torch_load
from harness.evaluation import evaluate_policy

POLICY_FORMAT = "ogzoo-policy-1"
REFERENCE_EPISODES = 100
LEVELS = ("medium", "expert")


def policy_dir() -> Path:
    """$OGZOO_POLICIES, else the policies shipped in the package."""
    return Path(os.environ.get("OGZOO_POLICIES", Path(__file__).parent / "policies"))


def policy_path(task: str, level: str, root: Path | None = None) -> Path:
    return (root or policy_dir()) / f"{task}-{level}.pt"


def _agent_from(record: dict, env) -> object:
    module = get_agent_module(record["agent"])
    cfg = cfglib.apply_overrides(module.Config(), record["agent_config"], "agent config")
    return module.Agent(cfg, env.observation_space, env.action_space, "cpu")


def acting_function(agent) -> Callable[[np.ndarray], np.ndarray]:
    """obs -> action with the agent's own exploration (draws from torch's global RNG: seed it,
    inside `torch.random.fork_rng()`, for reproducible data)."""
    return lambda obs: agent.act(obs[None], deterministic=False)[0]


def export_policy(
    checkpoint: str | Path, name: str, root: Path | None = None,
    episodes: int = REFERENCE_EPISODES, seed: int = 2_000_000,
) -> Path:  # fmt: skip
    """Write the actor of a run's checkpoint as policy `name` (<task>-<level>) with its
    measured return; returns the file written."""
    task, _, level = name.rpartition("-")
    if level not in LEVELS or not task:
        raise UserError(f"policy names are <task>-<level> with level in {LEVELS}, got '{name}'")
    source = find_checkpoint(checkpoint)
    ckpt = load_checkpoint(source)
    env = envs.make_env(ckpt["env"])
    agent = _agent_from(ckpt, env)
    agent.load_state_dict(ckpt["agent_state"])
    state = ckpt["agent_state"]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        env = envs.make_env(ckpt["env"])
        returns = np.asarray(evaluate_policy(agent, env, episodes, seed, False)["returns"])
    record = {
        "format": POLICY_FORMAT,
        "agent": ckpt["agent"],
        "env": ckpt["env"],
        "agent_config": ckpt["agent_config"],
        "actor": state["actor"],
        "obs_norm": state.get("obs_norm"),
        "metadata": {
            "source_checkpoint": str(source),
            "source_env_steps": int(ckpt["counters"]["env_steps"]),
            "run_config": ckpt["run_config"],
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "return_episodes": episodes,
            "return_seed": seed,
        },
    }
    out = policy_path(task, level, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(record, out)
    return out


def load_policy(task: str, level: str, root: Path | None = None) -> tuple[object, dict]:
    """(agent with the shipped actor loaded, the file's record without weights)."""
    path = policy_path(task, level, root)
    if not path.is_file():
        raise UserError(f"no {level} policy for {task}: {path} is missing")
    record = torch_load(path, "policy")
    if not isinstance(record, dict) or record.get("format") != POLICY_FORMAT:
        raise UserError(f"not an ogzoo policy file: {path}")
    agent = _agent_from(record, envs.make_env(record["env"]))
    agent.actor.load_state_dict(record["actor"])
    if record.get("obs_norm") is not None:
        agent.obs_norm.load_state_dict(record["obs_norm"])
    info = {k: v for k, v in record.items() if k not in ("actor", "obs_norm")}
    return agent, info
