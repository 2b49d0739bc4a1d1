"""MuJoCo "levels": seeded draws of physical parameters, applied to the model at reset.

Procgen gives pixel agents levels; this gives the continuous-control tasks (Gymnasium MuJoCo
v5: Hopper, HalfCheetah, Walker2d, and any env whose unwrapped env has a MuJoCo `model`) the
same split. A level is an integer id; its physical parameters are a function of the id and of
the run's `LevelSpec` (which parameters vary, over which range) alone, so any process can
rebuild level 17 exactly.

Parameters (`--context`, any of), each a scale of the model's nominal fields:
- `mass`: every body's mass and rotational inertia (`body_mass`, `body_inertia`): a uniform
  change of density, so the bodies keep their shape;
- `friction`: every geom's friction coefficients (`geom_friction`, all three columns);
- `gravity`: `opt.gravity`;
- `damping`: every joint's damping (`dof_damping`; Hopper's and Walker2d's are 1 on the
  actuated joints);
- `actuator`: every actuator's gear (`actuator_gear`), i.e. the torque per unit of action.

Draws. Level L seeds numpy's PCG64 with (SALT, L) and draws, for all five parameters in the
order above (whether they vary or not, so a level's mass is the same whatever else varies),
a position u and a side v in [0, 1). With the training range [lo, hi] of a varied parameter:
- training and interpolation ids: scale = exp(log lo + u (log hi - log lo)), log-uniform,
  so 0.5 and 2 are equally far from 1;
- extrapolation ids: outside the range, up to `extrapolation_factor` f beyond it in scale:
  [lo / f, lo) when v < 1/2, else (hi, hi f], log-uniform in the band. Every varied parameter
  of an extrapolation level lies outside its training range.
A parameter that does not vary keeps scale 1.

Ids. Training levels are [start_level, start_level + train_levels) (`train_levels = 0`: a new
level every episode, the whole training stream [start_level, 1,000,000)); held-out levels are
fixed blocks every run shares, so runs with 1 and with 20 training levels are tested on the
same levels: interpolation ids 1,000,000 + k (same ranges, never a training id), extrapolation
ids 2,000,000 + k (the wider bands).

`LevelEnv` wraps one env: each reset applies a level (an explicit `options={"level": L}`, else
the next of its `schedule`, else a training level drawn from its own RNG, which a seeded reset
re-seeds) and exposes `level`. A seeded reset also restarts the schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from core.errors import quote

PARAMETERS = ("mass", "friction", "gravity", "damping", "actuator")  # the draw order
SALT = 0x6C65_7665  # seeds level L's generator with (SALT, L): no collision with run seeds
TRAIN_ID_LIMIT = 1_000_000  # training ids lie below this
INTERPOLATION_BASE = 1_000_000  # held-out ids, same ranges
EXTRAPOLATION_BASE = 2_000_000  # held-out ids, outside the ranges
ID_LIMIT = 3_000_000
DEFAULT_RANGE = (0.5, 2.0)
DEFAULT_EXTRAPOLATION = 1.5
HELD_OUT_KINDS = ("interpolation", "extrapolation")


def parse_range(text: str, what: str) -> tuple[float, float]:
    """'LOW:HIGH' -> (low, high) with 0 < low < high, both finite; ValueError otherwise."""
    low_text, sep, high_text = text.partition(":")
    try:
        if not sep:
            raise ValueError
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise ValueError(f"{what} must be LOW:HIGH (scales, e.g. 0.5:2), got {quote(text)}") \
            from None  # fmt: skip
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise ValueError(f"{what} {quote(text)} is empty or not positive: it needs 0 < LOW < HIGH")
    return low, high


@dataclass(frozen=True)
class LevelSpec:
    """Which physical parameters vary, over which training ranges, and the training ids."""

    context: tuple[str, ...]  # varied parameters, in PARAMETERS order
    ranges: tuple[tuple[float, float], ...]  # training range of each varied parameter
    train_levels: int = 0  # 0: a new level every episode (module doc)
    start_level: int = 0
    extrapolation_factor: float = DEFAULT_EXTRAPOLATION

    @classmethod
    def parse(
        cls, context: str, context_range: str = "", train_levels: int = 0, start_level: int = 0,
        extrapolation_factor: float = DEFAULT_EXTRAPOLATION,
    ) -> LevelSpec:  # fmt: skip
        """From the flags: context 'mass,friction'; context_range '' (0.5:2 for every
        parameter), 'LOW:HIGH' for every parameter, or 'mass=0.5:2,friction=0.8:1.25'
        (unnamed parameters keep 0.5:2). One-line ValueError on bad input."""
        names = [name.strip() for name in context.split(",") if name.strip()]
        if not names:
            raise ValueError(f"--context needs parameters from {', '.join(PARAMETERS)}")
        for name in names:
            if name not in PARAMETERS:
                raise ValueError(f"unknown context parameter {quote(name)} (known: "
                                 f"{', '.join(PARAMETERS)})")  # fmt: skip
        chosen = tuple(p for p in PARAMETERS if p in names)
        ranges = dict.fromkeys(chosen, DEFAULT_RANGE)
        text = context_range.strip()
        if text and "=" not in text:
            ranges = dict.fromkeys(chosen, parse_range(text, "--context-range"))
        elif text:
            for item in text.split(","):
                name, _, value = item.partition("=")
                name = name.strip()
                if name not in chosen:
                    raise ValueError(f"--context-range names {quote(name)}, which --context "
                                     f"does not vary ({', '.join(chosen)})")  # fmt: skip
                ranges[name] = parse_range(value.strip(), f"--context-range {name}")
        for name, value in (("train_levels", train_levels), ("start_level", start_level)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {quote(value)}")
        if start_level + max(train_levels, 1) > TRAIN_ID_LIMIT:
            raise ValueError(f"training levels [{start_level}, {start_level + train_levels}) "
                             f"pass {TRAIN_ID_LIMIT:,}, where the held-out ids begin")  # fmt: skip
        if not (math.isfinite(extrapolation_factor) and extrapolation_factor > 1):
            raise ValueError(f"the extrapolation factor must be > 1, got {extrapolation_factor}")
        return cls(chosen, tuple(ranges[p] for p in chosen), int(train_levels), int(start_level),
                   float(extrapolation_factor))  # fmt: skip

    # ---- ids --------------------------------------------------------------------------------
    @property
    def low(self) -> int:
        return self.start_level

    @property
    def high(self) -> int:
        return self.start_level + self.train_levels if self.train_levels else TRAIN_ID_LIMIT

    @property
    def num_levels(self) -> int:
        return self.high - self.low

    def contains(self, levels) -> np.ndarray:
        """Which ids are training levels (the generalization report's split interface)."""
        levels = np.asarray(levels, dtype=np.int64)
        return (levels >= self.low) & (levels < self.high)

    def levels(self, side: str, count: int) -> list[int]:
        """`count` ids for one side of a report: 'train' cycles through the training levels
        from the first; 'interpolation' and 'extrapolation' are the first ids of their block."""
        if side == "train":
            return [self.low + k % self.num_levels for k in range(count)]
        base = {"interpolation": INTERPOLATION_BASE, "extrapolation": EXTRAPOLATION_BASE}
        if side not in base:
            raise ValueError(f"unknown level side {quote(side)}")
        return [base[side] + k for k in range(count)]

    # ---- parameters -------------------------------------------------------------------------
    def scales(self, level: int) -> dict[str, float]:
        """The scale of every parameter (1.0 where it does not vary) of level `level`."""
        level = int(level)
        if not 0 <= level < ID_LIMIT:
            raise ValueError(f"level ids are in [0, {ID_LIMIT:,}), got {level}")
        draws = np.random.default_rng([SALT, level]).random((len(PARAMETERS), 2))
        extrapolate = level >= EXTRAPOLATION_BASE
        out = dict.fromkeys(PARAMETERS, 1.0)
        for name, (low, high) in zip(self.context, self.ranges):
            u, v = draws[PARAMETERS.index(name)]
            if not extrapolate:
                log_low, log_high = math.log(low), math.log(high)
            elif v < 0.5:
                log_low, log_high = math.log(low / self.extrapolation_factor), math.log(low)
            else:
                log_low, log_high = math.log(high), math.log(high * self.extrapolation_factor)
            out[name] = math.exp(log_low + u * (log_high - log_low))
        return out

    def to_dict(self) -> dict:
        """Plain values (dataset metadata, reports)."""
        return {"context": list(self.context), "ranges": [list(r) for r in self.ranges],
                "train_levels": self.train_levels, "start_level": self.start_level,
                "extrapolation_factor": self.extrapolation_factor}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> LevelSpec:
        ranges = range_text(data["context"], data["ranges"])
        return cls.parse(",".join(data["context"]), ranges, int(data["train_levels"]),
                         int(data["start_level"]), float(data["extrapolation_factor"]))  # fmt: skip


def range_text(context, ranges) -> str:
    """The --context-range text naming every parameter's range: 'mass=0.5:2.0,friction=...'."""
    return ",".join(f"{name}={low}:{high}" for name, (low, high) in zip(context, ranges))


def spec_of(run_cfg) -> LevelSpec | None:
    """The level spec a run config asks for (--context ...), or None for plain runs."""
    if not getattr(run_cfg, "context", ""):
        return None
    return LevelSpec.parse(run_cfg.context, run_cfg.context_range, run_cfg.train_levels,
                           run_cfg.start_level)  # fmt: skip


class PhysicalParameters:
    """A MuJoCo model's nominal fields, and `apply(scales)` setting them to nominal x scale."""

    def __init__(self, model):
        self.model = model
        self.nominal = {
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "geom_friction": model.geom_friction.copy(),
            "gravity": model.opt.gravity.copy(),
            "dof_damping": model.dof_damping.copy(),
            "actuator_gear": model.actuator_gear.copy(),
        }

    def apply(self, scales: dict[str, float]) -> None:
        m, nominal = self.model, self.nominal
        m.body_mass[:] = nominal["body_mass"] * scales["mass"]
        m.body_inertia[:] = nominal["body_inertia"] * scales["mass"]
        m.geom_friction[:] = nominal["geom_friction"] * scales["friction"]
        m.opt.gravity[:] = nominal["gravity"] * scales["gravity"]
        m.dof_damping[:] = nominal["dof_damping"] * scales["damping"]
        m.actuator_gear[:] = nominal["actuator_gear"] * scales["actuator"]


class LevelEnv(gym.Wrapper):
    """An env whose every episode plays a level (module doc)."""

    def __init__(self, env: gym.Env, spec: LevelSpec, schedule: Sequence[int] | None = None):
        super().__init__(env)
        model = getattr(env.unwrapped, "model", None)
        if model is None or not hasattr(model, "body_mass"):
            raise ValueError(f"{env.spec.id if env.spec else env}: levels of physical "
                             "parameters need a MuJoCo env")  # fmt: skip
        self.spec_levels = spec
        self.parameters = PhysicalParameters(model)
        self.schedule = None if schedule is None else [int(x) for x in schedule]
        if self.schedule is not None and not self.schedule:
            raise ValueError("a level schedule needs at least one level")
        self.position = 0
        self.rng = np.random.default_rng([SALT, 0])
        self.level = -1  # before the first reset

    def next_level(self) -> int:
        if self.schedule is not None:
            level = self.schedule[self.position % len(self.schedule)]
            self.position += 1
            return level
        return int(self.rng.integers(self.spec_levels.low, self.spec_levels.high))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        if seed is not None:
            self.rng = np.random.default_rng([SALT, seed])
            self.position = 0
        level = options.pop("level", None)
        self.level = self.next_level() if level is None else int(level)
        self.parameters.apply(self.spec_levels.scales(self.level))
        obs, info = self.env.reset(seed=seed, options=options or None)
        info["level"] = self.level
        return obs, info
