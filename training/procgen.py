"""Procgen runs' level splits for the loops: the training envs and the generalization report
(harness/generalization.py) on the run config's levels, used by every loop's evaluation and by
evaluate.py."""

from __future__ import annotations

from envs.procgen import ProcgenVecEnv, procgen_game
from harness.generalization import generalization_report

EVAL_ENVS = 8  # envs stepped together when a Procgen evaluation plays its episodes


def procgen_envs(cfg, held_out: bool, num_envs: int, seed: int) -> ProcgenVecEnv:
    """A run config's Procgen training levels, or the levels above them (held out)."""
    levels = cfg.train_levels or None  # None: the mode's 200 / 500
    if held_out:
        return ProcgenVecEnv.held_out(cfg.env, num_envs, seed, cfg.distribution_mode, levels,
                                      cfg.start_level, num_threads=1)  # fmt: skip
    return ProcgenVecEnv(cfg.env, num_envs, seed, cfg.distribution_mode, levels,
                         cfg.start_level, num_threads=1)  # fmt: skip


def procgen_report(agent, cfg, episodes: int, seed: int) -> dict:
    """harness.generalization's report for `agent` on a run config's Procgen level split:
    `episodes` on training levels and as many on the levels above them."""
    n = min(episodes, EVAL_ENVS)
    return generalization_report(
        agent, lambda: procgen_envs(cfg, False, n, seed), lambda: procgen_envs(cfg, True, n, seed),
        episodes, seed, game=procgen_game(cfg.env),
    )  # fmt: skip
