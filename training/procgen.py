"""Procgen runs' level splits for the loops: the training envs, the evaluations (the training
side alone, or with the held-out side every `gen_every` steps: `ProcgenEvaluation`), the
generalization report (harness/generalization.py) and the critic's bias (harness/bias.py) on
the run config's levels, used by every loop's evaluation and by evaluate.py."""

from __future__ import annotations

from envs.procgen import ProcgenVecEnv, held_out_levels, procgen_game
from harness.bias import measure_restored_vector, states_from_policy
from harness.evaluation import EpsilonGreedy, evaluation_actor, run_side, side_summary
from harness.generalization import generalization_report, normalized_score

EVAL_ENVS = 8  # envs stepped together when a Procgen evaluation plays its episodes
SIDES = {"train": False, "test": True}  # the two sides of the bias, as levels_bias names them


def procgen_envs(cfg, held_out: bool, num_envs: int, seed: int,
                 which: str = "above") -> ProcgenVecEnv:  # fmt: skip
    """A run config's Procgen training levels, or held-out levels: by default every level
    above them; `which` as envs.procgen.held_out_levels reads it ('stream', 'START:COUNT')."""
    levels = cfg.train_levels or None  # None: the mode's 200 / 500
    if held_out:
        return ProcgenVecEnv.held_out(cfg.env, num_envs, seed, cfg.distribution_mode, levels,
                                      cfg.start_level, num_threads=cfg.env_threads,
                                      **held_out_levels(which))  # fmt: skip
    return ProcgenVecEnv(cfg.env, num_envs, seed, cfg.distribution_mode, levels,
                         cfg.start_level, num_threads=cfg.env_threads)  # fmt: skip


def procgen_report(agent, cfg, episodes: int, seed: int, held_out: str = "above") -> dict:
    """harness.generalization's report for `agent` on a run config's Procgen level split:
    `episodes` on training levels and as many on held-out levels (`held_out`: procgen_envs'
    `which`, kept in the report), played with the agent's deterministic, sampled or
    epsilon-greedy actions (harness.evaluation.evaluation_actor; `eval_epsilon` in the
    report)."""
    n = min(episodes, EVAL_ENVS)
    actor, deterministic = evaluation_actor(agent, cfg.eval_epsilon)
    report = generalization_report(
        actor, lambda: procgen_envs(cfg, False, n, seed),
        lambda: procgen_envs(cfg, True, n, seed, held_out), episodes, seed,
        game=procgen_game(cfg.env), deterministic=deterministic,
    )  # fmt: skip
    report["eval_epsilon"] = cfg.eval_epsilon
    report["held_out"] = held_out
    return report


class ProcgenEvaluation:
    """A Procgen run's evaluations, as training.levels.LevelEvaluation gives a level run's:
    `train_side` (the training levels only, with their normalized score) and `report` (the
    generalization report). Envs are built per evaluation and closed after it, as the report
    always built them; `entry_keys` are the report's numbers an evaluation entry keeps."""

    entry_keys = ("train_normalized", "test_return_mean", "test_return_std", "test_normalized",
                  "gap")  # fmt: skip

    def __init__(self, cfg, episodes: int):
        self.cfg, self.episodes = cfg, episodes

    def train_side(self, agent, seed: int) -> dict:
        """{'return_mean', 'return_std', 'length_mean', 'train_normalized'}: the report's
        training side alone (the same envs, seed and actions, so the same episodes)."""
        actor, deterministic = evaluation_actor(agent, self.cfg.eval_epsilon)
        env = procgen_envs(self.cfg, False, min(self.episodes, EVAL_ENVS), seed)
        try:
            out = run_side(actor, env, self.episodes, seed, deterministic=deterministic)
        finally:
            env.close()
        side = side_summary(out)
        game, mode = procgen_game(self.cfg.env), self.cfg.distribution_mode
        return {**side, "train_normalized": normalized_score(side["return_mean"], game, mode)}

    def report(self, agent, seed: int) -> dict:
        return procgen_report(agent, self.cfg, self.episodes, seed)

    def close(self) -> None:
        """Nothing kept between evaluations."""


def procgen_bias(agent, cfg, k: int, seed: int, gamma: float, held_out: str = "above",
                 epsilon: float = 0.0, rollouts: int = 1) -> dict:  # fmt: skip
    """The critic's bias on each side, {"train": ..., "test": ...}: K states drawn from the
    greedy policy's episodes on EVAL_ENVS training levels, and on as many held-out levels
    (harness.bias.states_from_policy: no replay buffer keeps Procgen's 37 KB states), each
    restored in a vector env of K envs and rolled out there by the greedy policy
    (measure_restored_vector). With `epsilon` > 0 the same states are rolled out `rollouts`
    times each by the epsilon-greedy policy instead (harness.evaluation.EpsilonGreedy, the
    evaluation's actor): the return of the policy that is evaluated, where the greedy one can
    stall. `held_out`: which held-out levels (procgen_envs' `which`)."""
    actor = EpsilonGreedy(agent, epsilon, agent.bins) if epsilon > 0 else None
    m = rollouts if actor is not None else 1
    out = {}
    for side, is_held_out in SIDES.items():
        players = procgen_envs(cfg, is_held_out, EVAL_ENVS, seed, held_out)
        try:
            states = states_from_policy(agent, players, k, seed)
        finally:
            players.close()
        restorer = procgen_envs(cfg, is_held_out, len(states.obs) * m, seed, held_out)
        try:
            out[side] = measure_restored_vector(agent, restorer, states, gamma, actor=actor,
                                                rollouts=m, seed=seed)  # fmt: skip
        finally:
            restorer.close()
    return out
