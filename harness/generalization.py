"""Generalization: the same policy on its training levels and on held-out levels.

Protocol (Cobbe et al. 2020, "Leveraging Procedural Generation to Benchmark Reinforcement
Learning"; github.com/openai/train-procgen): train on a finite set of levels, then compare the
policy's return there with its return on levels it never saw. The report runs K episodes on
each side with the agent's deterministic action (or, `deterministic=False`, its sampled
actions under a seeded RNG: harness/evaluation.py) and gives both means, their std, the levels the
episodes were played on and the gap (train - test).

Which K episodes. A vector env of N envs finishes short episodes first, so "the first K to
finish" over-represents short ones (in Procgen: early deaths) whenever K is not much larger
than N. Here env i counts its own first q_i episodes, q_i = K // N, plus one for the first
K % N envs, and every later episode (and any still running when the quotas are met) is
ignored: which episodes count is fixed before any is played, never by how long they last. Each
env's episodes are read from the vector env's step results: `StepResult.finished` lists the
(return, length) of the envs that ended at that step in index order, the same order as
`np.flatnonzero(terminated | truncated)` (envs.VecEnv and envs.ProcgenVecEnv both do this);
a vector env with `finished_levels` (ProcgenVecEnv) gives the level of each in the same order.

Normalized scores (Procgen only): normalized = (R - R_min) / (R_max - R_min), with the per-game
ranges of train-procgen's `train_procgen/constants.py` (EASY_GAME_RANGES, HARD_GAME_RANGES; its
`graph.py` normalizes the committed logs with them, and REFERENCES.md's anchors, train 0.60 /
test 0.355 at 25M steps, are those logs). Checked here against the file itself: its two
versions (e3b20ae, which added it with the logs, and 3bdf2da, unchanged up to the repository's
head) hold the same values, easy and hard. The paper's own table gives jumper [3, 10] and
leaper [3, 10] in easy mode; the released file has jumper [1, 10] and leaper [1.5, 10] (its
hard values). We use the released file's, so that our normalized scores are comparable with
the reference logs, which were normalized with it.
Procgen's other distribution modes (exploration, memory, extreme) have no ranges: asking for
one is a ValueError, as is an unknown game.

The gap is train normalized - test normalized when the game is known (`gap_of` "normalized"),
else train return - test return (`gap_of` "return").

The harness knows no agent: it needs `act(obs, deterministic)` batched over the envs, and a
vector env with `num_envs`, `reset(seed)`, `step(actions) -> StepResult` and `close()`;
optionally `finished_levels` (the level of each finished episode) and `split` (the level range,
`envs.LevelSplit`: its `num_levels`, `low`, `high`, `contains`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.evaluation import quotas, run_side, side_summary

__all__ = ["generalization_report", "normalized_score", "quotas", "run_side", "score_range"]

# train-procgen constants.py: [R_min, R_max] per game and distribution mode (module doc)
GAME_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "easy": {
        "coinrun": (5.0, 10.0),
        "starpilot": (2.5, 64.0),
        "caveflyer": (3.5, 12.0),
        "dodgeball": (1.5, 19.0),
        "fruitbot": (-1.5, 32.4),
        "chaser": (0.5, 13.0),
        "miner": (1.5, 13.0),
        "jumper": (1.0, 10.0),  # the paper's table: 3, 10 (module doc)
        "leaper": (1.5, 10.0),  # the paper's table: 3, 10 (module doc)
        "maze": (5.0, 10.0),
        "bigfish": (1.0, 40.0),
        "heist": (3.5, 10.0),
        "climber": (2.0, 12.6),
        "plunder": (4.5, 30.0),
        "ninja": (3.5, 10.0),
        "bossfight": (0.5, 13.0),
    },
    "hard": {
        "coinrun": (5.0, 10.0),
        "starpilot": (1.5, 35.0),
        "caveflyer": (2.0, 13.4),
        "dodgeball": (1.5, 19.0),
        "fruitbot": (-0.5, 27.2),
        "chaser": (0.5, 14.2),
        "miner": (1.5, 20.0),
        "jumper": (1.0, 10.0),
        "leaper": (1.5, 10.0),
        "maze": (4.0, 10.0),
        "bigfish": (0.0, 40.0),
        "heist": (2.0, 10.0),
        "climber": (1.0, 12.6),
        "plunder": (3.0, 30.0),
        "ninja": (2.0, 10.0),
        "bossfight": (0.5, 13.0),
    },
}


def score_range(game: str, mode: str = "easy") -> tuple[float, float]:
    """[R_min, R_max] of a Procgen game ('coinrun' or 'procgen:coinrun') in `mode`."""
    if mode not in GAME_RANGES:
        raise ValueError(
            f"no Procgen normalization ranges for mode {mode!r}: train-procgen publishes them "
            f"for {' and '.join(GAME_RANGES)} only"
        )
    name = game.removeprefix("procgen:")
    if name not in GAME_RANGES[mode]:
        raise ValueError(
            f"no Procgen normalization range for game {game!r}: one of "
            f"{', '.join(sorted(GAME_RANGES[mode]))}"
        )
    return GAME_RANGES[mode][name]


def normalized_score(returns, game: str, mode: str = "easy"):
    """(R - R_min) / (R_max - R_min) for a return or an array of returns (not clipped: a policy
    below R_min scores below 0)."""
    low, high = score_range(game, mode)
    values = (np.asarray(returns, dtype=np.float64) - low) / (high - low)
    return float(values) if values.ndim == 0 else values


def _split(env) -> list[int] | None:
    split = getattr(env, "split", None)
    return None if split is None else [int(split.low), int(split.high)]


def _check_matches(env, attribute: str, value: str, side: str) -> None:
    """The explicit game / mode must be the env's own where the env says what it plays."""
    own = getattr(env, attribute, None)
    if own is not None and own != value:
        raise ValueError(f"{attribute} {value!r} given, but the {side} env plays {own!r}")


def generalization_report(
    agent,
    train_env_fn: Callable[[], Any],
    test_env_fn: Callable[[], Any],
    episodes: int,
    seed: int,
    game: str | None = None,
    mode: str | None = None,
    max_steps: int | None = None,
    extra_sides: dict[str, Callable[[], Any]] | None = None,
    close: bool = True,
    deterministic: bool = True,
) -> dict[str, Any]:
    """K = `episodes` episodes on the training levels (`train_env_fn()`) and K on held-out
    levels (`test_env_fn()`), both vector envs reset with `seed` (the same seed on both sides,
    so two identical sides give a gap of exactly 0), and closed afterwards.

    `game` (a Procgen game, 'coinrun' or 'procgen:coinrun') turns on normalized scores; None
    reports returns only. `mode` defaults to the train env's own `mode` attribute, else easy.
    Where an env says which game or mode it plays, a different explicit one is a ValueError.
    `max_steps` (vector steps per side) turns an env whose episodes never end into an error.
    `extra_sides` {name: env_fn}: more held-out sides, each played like the test side and
    reported with the same per-side keys under its name, and its gap as `gap_<name>` (MuJoCo
    levels: test = interpolation, plus `extrapolation`). `close=False` leaves the envs open
    (envs a training loop keeps between evaluations).

    Keys: per side S in (train, test): S_return_mean, S_return_std, S_returns, S_length_mean,
    S_levels (the level of each counted episode, or None), S_levels_seen (sorted distinct),
    S_split ([low, high) of the env's level range, or None), S_steps, S_seconds (wall time of
    the side), and with a game
    S_normalized, S_normalized_std. Then n_episodes (K per side), n_train_levels (the training
    split's size; None when the env has no split), test_levels_in_train (held-out episodes
    played on a training level: 0 unless the held-out env draws from the full stream), gap,
    gap_of, game, mode, seed, deterministic.
    """
    if game is not None:
        score_range(game, mode or "easy")  # bad names fail before any env is built
    makers = {"train": train_env_fn, "test": test_env_fn, **(extra_sides or {})}
    envs: dict[str, Any] = {}
    try:
        for side, make in makers.items():
            envs[side] = make()
        train_env, test_env = envs["train"], envs["test"]
        if mode is None:
            mode = getattr(train_env, "mode", None) or "easy"
        if game is not None:
            game = game.removeprefix("procgen:")
            score_range(game, mode)
            for side, env in (("train", train_env), ("test", test_env)):
                _check_matches(env, "game", game, side)
                _check_matches(env, "mode", mode, side)
        sides = {side: run_side(agent, env, episodes, seed, max_steps, deterministic)
                 for side, env in envs.items()}  # fmt: skip
    finally:
        if close:
            for env in envs.values():
                env.close()

    report: dict[str, Any] = {}
    for side, out in sides.items():
        env = envs[side]
        summary = side_summary(out)
        report.update({f"{side}_{key}": value for key, value in summary.items()})
        report[f"{side}_returns"] = out["returns"]
        report[f"{side}_levels"] = out["levels"]
        seen = None if out["levels"] is None else sorted(set(out["levels"]))
        report[f"{side}_levels_seen"] = seen
        report[f"{side}_split"] = _split(env)
        report[f"{side}_steps"] = out["steps"]
        report[f"{side}_seconds"] = out["seconds"]
        if game is not None:
            low, high = score_range(game, mode)
            report[f"{side}_normalized"] = normalized_score(summary["return_mean"], game, mode)
            report[f"{side}_normalized_std"] = summary["return_std"] / (high - low)

    train_split = getattr(train_env, "split", None)

    def in_train(side: str) -> int | None:
        if train_split is None or sides[side]["levels"] is None:
            return None
        return int(np.sum(train_split.contains(np.asarray(sides[side]["levels"]))))

    gap_of = "normalized" if game is not None else "return"
    key = "normalized" if game is not None else "return_mean"
    report.update(
        n_episodes=episodes,
        n_train_levels=None if train_split is None else int(train_split.num_levels),
        test_levels_in_train=in_train("test"),
        **{f"{side}_levels_in_train": in_train(side) for side in extra_sides or {}},
        gap=report[f"train_{key}"] - report[f"test_{key}"],
        **{
            f"gap_{side}": report[f"train_{key}"] - report[f"{side}_{key}"]
            for side in extra_sides or {}
        },
        gap_of=gap_of,
        game=game,
        mode=mode,
        seed=seed,
        deterministic=deterministic,
    )
    return report
