"""Allowed values: of config fields, checked before a run writes anything, and of a run's
state (no NaN or infinity in weights, which train.py checks before saving and evaluate.py
before acting).

Types are checked where configs are built (core/config.py); this checks domains: a discount
in [0, 1), a positive learning rate, a batch of at least one transition, layer widths of at
least one unit, and no NaN or infinity in any float (only `stop_at_return` may be +inf).
Rules go by field name, so a field that means the same thing in several agents (gamma, tau,
batch_size, *_lr, *_hidden) is checked the same way everywhere, and a new agent's fields are
covered as soon as they use the shared vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from core.errors import UserError

SEED_LIMIT = 2**31  # numpy's legacy seeding takes < 2^32; evaluation adds offsets to the seed

Rule = tuple[Callable[[Any], bool], str]
AT_LEAST_1: Rule = (lambda v: v >= 1, ">= 1")
AT_LEAST_0: Rule = (lambda v: v >= 0, ">= 0")
POSITIVE: Rule = (lambda v: v > 0, "> 0")
PROBABILITY: Rule = (lambda v: 0 <= v <= 1, "in [0, 1]")

RULES: dict[str, Rule] = {
    "gamma": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "tau": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "lr": POSITIVE,
    "seed": (lambda v: 0 <= v < SEED_LIMIT, f"in [0, 2^31 = {SEED_LIMIT})"),
    "actor_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "epsilon_start": PROBABILITY,
    "epsilon_end": PROBABILITY,
    "eval_epsilon": PROBABILITY,
    "initial_temperature": POSITIVE,
    "huber_delta": POSITIVE,
    "grad_clip": POSITIVE,
    "utd": POSITIVE,
    "sampler_temperature": POSITIVE,
    "stop_at_return": (lambda v: not math.isnan(v), "a number or inf"),
    "checkpoint_seconds": AT_LEAST_0,
    **dict.fromkeys(
        (
            "batch_size",
            "buffer_size",
            "n_critics",
            "n_members",
            "n_quantiles",
            "n_step",
            "policy_delay",
            "vae_hidden",
            "vae_latent_scale",
            "total_steps",
            "num_envs",
            "eval_every",
            "eval_episodes",
            "checkpoint_every",
            "log_every",
            "threads",
            "bias_states",
            "bias_rollouts",
            "gen_every",
            "stop_window",
        ),
        AT_LEAST_1,
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "learning_starts",
            "random_steps",
            "epsilon_decay_steps",
            "vae_steps",
            "drop_per_net",
            "exploration_noise",
            "policy_noise",
            "noise_clip",
            "weight_decay",
            "alpha",
            "beta",
            "spot_lambda",
            "reg_weight",
            "vae_kl_weight",
            "log_prob_epsilon",
            "train_levels",
            "start_level",
            "bias_every",
            "env_threads",
        ),
        AT_LEAST_0,
    ),  # fmt: skip
}
SUFFIX_RULES: dict[str, Rule] = {"_lr": POSITIVE}
FINITE_EXCEPT = {"stop_at_return"}  # floats allowed to be infinite


def rule_for(name: str) -> Rule | None:
    if name in RULES:
        return RULES[name]
    return next((rule for suffix, rule in SUFFIX_RULES.items() if name.endswith(suffix)), None)


def check_domains(cfg: Any, what: str) -> None:
    """UserError naming the first field of dataclass `cfg` outside its domain."""
    for field in dataclasses.fields(cfg):
        name, value = field.name, getattr(cfg, field.name)
        if isinstance(value, list) and (name == "hidden" or name.endswith("_hidden")):
            if any(not isinstance(w, int) or w < 1 for w in value):
                raise UserError(f"{what}: {name} must list widths >= 1, got {value}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value) and name not in FINITE_EXCEPT:
            raise UserError(f"{what}: {name} must be a finite number, got {value}")
        rule = rule_for(name)
        if rule is not None and not rule[0](value):
            raise UserError(f"{what}: {name} must be {rule[1]}, got {value}")


def first_nonfinite(state: Any, name: str = "") -> str | None:
    """The dotted name of the first floating tensor holding NaN or inf in a (nested) state
    dict, or None."""
    if isinstance(state, torch.Tensor):
        finite = not state.is_floating_point() or bool(torch.isfinite(state).all())
        return None if finite else name or "a tensor"
    items = state.items() if isinstance(state, dict) else (
        enumerate(state) if isinstance(state, (list, tuple)) else ())  # fmt: skip
    for key, value in items:
        bad = first_nonfinite(value, f"{name}.{key}" if name else str(key))
        if bad is not None:
            return bad
    return None
