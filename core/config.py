"""Typed configs: dataclass defaults < YAML preset < command-line overrides.

A run has two configs: `RunConfig` (what to train on and for how long; the loop's settings)
and the agent's own `Config` dataclass (hyperparameters with the paper's defaults). A preset
file holds deltas only:

    agent: td3
    env: Hopper-v5
    total_steps: 1000000
    agent_config:
      learning_starts: 25000

Every value is checked against the dataclass field's type; unknown keys and wrong types are
`UserError`s that name the key.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.errors import UserError, clip, quote


@dataclass
class RunConfig:
    agent: str = "td3"
    """Agent name (see agents/__init__.py)."""
    env: str = "Pendulum-v1"
    """Gymnasium environment id, e.g. Pendulum-v1 or Hopper-v5."""
    seed: int = 0
    """Seed of networks, replay sampling and training envs (evaluation uses seed + 100000)."""
    total_steps: int = 20_000
    """Environment steps to train for (summed over vector envs)."""
    utd: float = 1.0
    """Gradient updates per environment step (fractional and > 1 allowed)."""
    bins: int = 0
    """Discretise a Box action space into this many evenly spread values per dimension (a
    MultiDiscrete space, for discrete agents such as REValueD); 0 = keep it continuous."""
    distribution_mode: str = "easy"
    """Procgen (--env procgen:GAME): easy or hard."""
    train_levels: int = 0
    """Training levels from start_level. Procgen: 0 = the protocol's 200 (easy) / 500 (hard);
    MuJoCo levels (--context): 0 = a new level every episode."""
    start_level: int = 0
    """The first training level (Procgen's held-out evaluation uses the levels above the range;
    MuJoCo levels' held-out ids are blocks of their own, envs/levels.py)."""
    context: str = ""
    """MuJoCo levels: the physical parameters each level scales, comma-separated, from mass,
    friction, gravity, damping, actuator ("" = no levels; envs/levels.py)."""
    context_range: str = ""
    """MuJoCo levels: the training range of the scales, LOW:HIGH for every parameter or
    per parameter as mass=0.5:2,friction=0.8:1.25 ("" = 0.5:2; drawn log-uniformly)."""
    gen_every: int = 25_000
    """Runs with levels (Procgen, MuJoCo levels): environment steps between generalization
    reports, the evaluations that also play held-out levels (MuJoCo: interpolation and
    extrapolation) and log gen/*; the first evaluation past each multiple, and the last."""
    num_envs: int = 1
    """Training environments stepped together."""
    eval_every: int = 5_000
    """Environment steps between evaluations."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic actions; PPO samples, see its eval_sampled)."""
    eval_epsilon: float = 0.0
    """Evaluate an agent that acts greedily over discrete actions (revalued) epsilon-greedy:
    at each step each env's action is uniformly random with this probability, as DQN-family
    agents are evaluated (EDE's Procgen DQN: 0.05); 0 = greedy."""
    checkpoint_every: int = 50_000
    """Environment steps between checkpoints (with the replay buffer)."""
    checkpoint_seconds: float = 120.0
    """Also checkpoint when this much wall time passed since the last one (0 = steps only),
    so a short or slow run killed early loses at most a few minutes."""
    log_every: int = 1_000
    """Environment steps between TensorBoard writes of losses and speeds."""
    bias_every: int = 0
    """Environment steps between overestimation-bias measurements (0 = never)."""
    bias_states: int = 100
    """Replay states per bias measurement, each rolled out to the discount horizon."""
    bias_rollouts: int = 4
    """Monte-Carlo rollouts per state for a stochastic policy (SAC, TQC: the soft return); a
    deterministic policy makes the same trajectory each time, so it gets one."""
    stop_at_return: float = math.inf
    """End training at the first evaluation with mean return >= this (inf = never); how
    ogzoo makes 'medium' behaviour policies, reproducibly."""
    stop_window: int = 1
    """stop_at_return compares the mean of the last this-many evaluations (1 = the latest
    alone), so one lucky evaluation of a noisy task does not stop the run."""
    dataset: str = ""
    """Offline: train from this dataset (ogzoo name, D4RL/Minari name, or path) with no env
    interaction; total_steps and the *_every intervals then count gradient updates, and the
    env (for evaluation) comes from the dataset unless --env is given. "" = online."""
    d4rl_compat: bool = False
    """Offline: read D4RL files as the reference qlearning_dataset does (next_obs = obs[i+1],
    timeout transitions dropped) to match published baselines."""
    sampler: str = "uniform"
    """Offline: which transitions are sampled: uniform, rw (return-weighted trajectories) or
    aw (advantage-weighted trajectories); see envs/datasets/weighting.py."""
    sampler_temperature: float = 0.1
    """Offline: softmax temperature of the rw/aw samplers (the paper's 0.1)."""
    device: str = "auto"
    """cpu, cuda or auto (cuda when available)."""
    threads: int = 1
    """torch CPU threads; 1 is fastest on a busy 2-core machine for these network sizes. With
    several seeds in one process (train.py --seeds) and the threads engine: worker threads."""
    env_threads: int = 1
    """Procgen: native threads stepping its envs (procgen's num_threads; 0 = the calling
    thread). The frames are the same for any count, only the speed differs (on a busy 2-core
    CPU, coinrun: 16 envs fastest with 0, 64 envs faster with 4 than 1; docs/procgen.md)."""
    seed_engine: str = "auto"
    """Several seeds in one process (train.py --seeds): stacked (one update of networks stacked
    along a seed axis, under torch.func.vmap; TD3, SAC, TQC, REValueD), threads (each seed's
    own update, the seeds spread over --threads worker threads; CPU, any online off-policy
    agent), or auto: stacked where the agent supports it, else threads."""
    precision: str = "fp32"
    """fp32, bf16 (updates run their matmuls in bfloat16 autocast; weights, optimizer state and
    Q-value outputs stay fp32; not the papers'), or auto: bf16 where the device has native
    bfloat16 kernels (CUDA with bf16; a CPU with AVX-512 BF16 or AMX), else fp32, resolved when
    the run starts and kept in its config.yaml. On a CPU without them bf16 is several times
    slower than fp32."""
    cuda_graph: bool = False
    """Capture the update as CUDA graphs, replayed with one launch per update (TD3, TD3+BC,
    SPOT, SAC, TQC, REValueD; agents/graphs.py). Same mathematics, another random stream. On a
    CPU it says so and the update runs eagerly."""


def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each dataclass field (for --show-config); a subclass's
    docstring wins over its parent's for a redeclared field."""
    docs: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """`value` converted to the field type `hint`, or UserError naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0])
    if origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(hint)[:1] or (Any,)
            return [_coerce(key, v, item) for v in value]
        raise UserError(f"config key '{key}' expects a list, got {quote(value)}")
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise UserError(f"config key '{key}' expects true/false, got {quote(value)}")
    if hint is int:
        if isinstance(value, bool):
            raise UserError(f"config key '{key}' expects an integer, got {quote(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise UserError(f"config key '{key}' expects an integer, got {quote(value)}")
    if hint is float:
        if isinstance(value, bool):
            raise UserError(f"config key '{key}' expects a number, got {quote(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"config key '{key}' expects a number, got {quote(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise UserError(f"config key '{key}' expects a string, got {quote(value)}")
    raise TypeError(f"unsupported config field type {hint} for '{key}'")


def apply_overrides(cfg: Any, overrides: dict[str, Any], what: str) -> Any:
    """A copy of dataclass `cfg` with `overrides` applied and type-checked."""
    hints = type_hints(type(cfg))
    known = {f.name for f in dataclasses.fields(cfg)}
    values = {}
    for key, value in overrides.items():
        if key not in known:
            raise UserError(f"unknown {what} key {quote(key)} (known: {', '.join(sorted(known))})")
        values[key] = _coerce(key, value, hints[key])
    return dataclasses.replace(cfg, **values)


class AliasError(yaml.YAMLError):
    """A YAML alias (*name) in a preset or --set value: refused, see NoAliasLoader."""

    def __init__(self, mark: yaml.Mark):
        super().__init__(f"YAML aliases (*name) are not allowed in configs (line {mark.line + 1})")


class NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases. An alias makes the loader share one object among many
    places, so a few hundred bytes of nested aliases ('billion laughs') stand for billions of
    values once anything walks them; a config never needs one, so they are refused when met.
    Without aliases, what is loaded is no larger than the text."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise AliasError(self.peek_event().start_mark)
        return super().compose_node(parent, index)


def safe_yaml(text: str) -> Any:
    """yaml.safe_load without aliases (NoAliasLoader)."""
    return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader


def parse_set(items: list[str]) -> dict[str, Any]:
    """['lr=1e-3', 'hidden=[64,64]'] -> {'lr': '1e-3'-parsed, 'hidden': [64, 64]} (YAML values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {quote(item)}")
        key = key.strip()
        try:
            out[key] = safe_yaml(raw)
        except AliasError as exc:
            raise UserError(f"--set {clip(key)}: {exc}") from None
        except yaml.YAMLError:
            raise UserError(f"--set {clip(key)}: cannot parse value {quote(raw)}") from None
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = safe_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except AliasError as exc:
        raise UserError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise UserError(f"{path}: invalid YAML ({clip(first)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys at the top level")
    return data


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def describe(cfg: Any) -> str:
    """Human-readable table of a config: name, type, value (the default), docstring."""
    docs = field_docs(type(cfg))
    hints = type_hints(type(cfg))
    defaults = to_dict(cfg)
    lines = []
    for name, default in defaults.items():
        hint = getattr(hints[name], "__name__", str(hints[name]))
        doc = textwrap.indent(docs.get(name, ""), " " * 6)
        lines.append(f"  {name} ({hint}, default {default!r})\n{doc}")
    return "\n".join(lines)
