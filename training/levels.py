"""Runs with MuJoCo levels (envs/levels.py): their evaluations and generalization reports.

Every evaluation of a level run plays `eval_episodes` episodes on the training levels (episode
k on training level start_level + k mod train_levels, the same levels at every evaluation);
the evaluation due every `gen_every` steps (and the last) is the generalization report of
harness/generalization.py, adding as many episodes on held-out interpolation levels (the
report's test side) and on extrapolation levels. The episodes of a side run together in up to
EVAL_ENVS envs (one policy batch per step), env i playing the side's levels i, i + n, ...;
the envs are built once and kept for the run. The episodes are played as every evaluation plays
them (harness.evaluation.evaluation_actor: the agent's own action, sampled for PPO, or
epsilon-greedy with the run's `eval_epsilon`).

Bias off the training distribution (`levels_bias`): the states the deterministic policy
reaches on each side's levels, restored in their level, measured by the run's BiasMeter.
"""

from __future__ import annotations

from envs import VecEnv, make_env
from envs.levels import LevelSpec
from harness.bias import BiasMeter, states_from_policy
from harness.evaluation import EVAL_ENVS, evaluation_actor, run_side, side_summary
from harness.generalization import generalization_report

SIDES = {"train": "train", "test": "interpolation", "extrapolation": "extrapolation"}


def level_envs(env_id: str, bins: int, spec: LevelSpec, side: str, episodes: int) -> VecEnv:
    """A vector env that plays `episodes` episodes of one side ('train', 'interpolation' or
    'extrapolation'): env i the side's levels i, i + n, ... (n = min(episodes, EVAL_ENVS))."""
    ids = spec.levels(side, episodes)
    n = min(episodes, EVAL_ENVS)
    env = VecEnv(env_id, n, 0, bins, levels=spec, schedules=[ids[i::n] for i in range(n)])
    if side == "train":
        env.split = spec  # the report counts held-out episodes played on training levels
    return env


class LevelEvaluation:
    """The evaluation envs of one level run, per report side, made when first needed, and who
    plays them (`epsilon`: the run's eval_epsilon). `entry_keys`: the report's numbers an
    evaluation entry keeps."""

    entry_keys = ("test_return_mean", "test_return_std", "extrapolation_return_mean",
                  "extrapolation_return_std", "gap", "gap_extrapolation")  # fmt: skip

    def __init__(self, env_id: str, bins: int, spec: LevelSpec, episodes: int,
                 epsilon: float = 0.0):  # fmt: skip
        self.env_id, self.bins, self.spec, self.episodes = env_id, bins, spec, episodes
        self.epsilon = float(epsilon)
        self.envs: dict[str, VecEnv] = {}

    def env(self, side: str) -> VecEnv:
        if side not in self.envs:
            self.envs[side] = level_envs(self.env_id, self.bins, self.spec, SIDES[side],
                                         self.episodes)  # fmt: skip
        return self.envs[side]

    def train_side(self, agent, seed: int) -> dict:
        """{'return_mean', 'return_std', 'length_mean'} on the training levels."""
        actor, deterministic = evaluation_actor(agent, self.epsilon)
        out = run_side(actor, self.env("train"), self.episodes, seed, deterministic=deterministic)
        return side_summary(out)

    def report(self, agent, seed: int) -> dict:
        """harness.generalization's report: training, interpolation (test), extrapolation; with
        `eval_epsilon`."""
        actor, deterministic = evaluation_actor(agent, self.epsilon)
        report = generalization_report(
            actor, lambda: self.env("train"), lambda: self.env("test"), self.episodes, seed,
            extra_sides={"extrapolation": lambda: self.env("extrapolation")}, close=False,
            deterministic=deterministic,
        )  # fmt: skip
        report["eval_epsilon"] = self.epsilon
        return report

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs = {}


def level_bias_meter(env_id: str, bins: int, spec: LevelSpec | None, gamma: float,
                     rollouts: int) -> BiasMeter:  # fmt: skip
    """A BiasMeter whose env copies restore states in their own level (spec None: plain
    copies of the env)."""
    return BiasMeter(
        lambda limit: make_env(env_id, max_episode_steps=limit, bins=bins, levels=spec),
        gamma, rollouts=rollouts,
    )  # fmt: skip


def levels_bias(agent, evaluation: LevelEvaluation, meter: BiasMeter, k: int, seed: int) -> dict:
    """{side: the bias result} on K policy states of each side (module doc)."""
    out = {}
    for side in SIDES:
        states = states_from_policy(agent, evaluation.env(side), k, seed)
        out[side] = meter.measure(agent, states)
    return out
