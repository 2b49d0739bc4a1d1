"""Is a value-based Procgen run's evaluated policy the policy it trained with? (docs/procgen.md,
"The value-based agent": REValueD's training episodes on coinrun returned about 6 in 133 steps,
its evaluations about 2 in 858.) And what does a Procgen policy do (its actions)?

    python bench/procgen_frozen_policy.py RUN --epsilons 0.1 0.2 --episodes 24 --frames 12000
    python bench/procgen_frozen_policy.py RUN/checkpoints/best.pt --frames 12000   # PPO

Loads RUN's checkpoint (evaluate.py's rules: final.pt, else latest.pt, or the .pt named) and
1. for every epsilon in --epsilons: the generalization report (training and held-out levels,
   --episodes a side, seed --seed) with the greedy action replaced by a random one with that
   probability (harness.evaluation.EpsilonGreedy), as the run's evaluations do at its
   `eval_epsilon`;
2. --frames frames in --num-envs of the run's training envs, acting as the training loop acts
   (agent.act with exploration, epsilon at its final value) and then as the evaluation acts
   (EpsilonGreedy at that epsilon), the network frozen: finished episodes, their mean return
   and length, the fraction of each action taken, and the same means level by level.
A run of an agent without epsilon (PPO) gets step 2's training mode only (its sampled actions,
as its training and its evaluations act). It prints one JSON line per measurement (and writes
them all with --json F). Cost: about 10 min for the first command on one busy core.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import evaluate  # noqa: E402
from core import config as cfglib  # noqa: E402
from harness.evaluation import EpsilonGreedy  # noqa: E402
from training.procgen import procgen_envs, procgen_report  # noqa: E402

REPORT_KEYS = ("train_return_mean", "train_length_mean", "test_return_mean",
               "test_length_mean", "gap")  # fmt: skip


def play(actor, envs, frames: int) -> dict:
    """Step `envs` for `frames` frames in all with `actor`'s exploring actions; the episodes
    that finished, their mean return and length, and the fraction of steps that took each
    action (index i: action i; as many entries as the largest action taken + 1). Envs that
    name the level of each finished episode (`finished_levels`, ProcgenVecEnv) add `levels`:
    per level, its finished episodes and their mean return and length, by level seed."""
    obs = envs.reset()
    finished: list[tuple[float, int]] = []
    levels: list[int] = []
    taken: list[np.ndarray] = []
    for _ in range(max(1, frames // envs.num_envs)):
        actions = actor.act(obs, deterministic=False)
        taken.append(np.asarray(actions, dtype=np.int64).reshape(-1))
        step = envs.step(actions)
        obs = step.obs
        finished.extend(step.finished)
        levels.extend(getattr(envs, "finished_levels", []))
    returns = [r for r, _ in finished]
    lengths = [n for _, n in finished]
    counts = np.bincount(np.concatenate(taken))
    result = {"episodes": len(finished),
              "return_mean": float(np.mean(returns)) if finished else None,
              "length_mean": float(np.mean(lengths)) if finished else None,
              "action_fractions": [round(float(c), 4) for c in counts / counts.sum()]}  # fmt: skip
    if hasattr(envs, "finished_levels"):
        by_level: dict[int, list[int]] = {}  # level -> indices of its finished episodes
        for i, level in enumerate(levels):
            by_level.setdefault(level, []).append(i)
        result["levels"] = [
            {"level": level, "episodes": len(mine),
             "return_mean": float(np.mean([returns[i] for i in mine])),
             "length_mean": float(np.mean([lengths[i] for i in mine]))}
            for level, mine in sorted(by_level.items())
        ]  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a Procgen run folder or checkpoint of a discrete agent")
    parser.add_argument("--epsilons", type=float, nargs="*", default=None,
                        help="epsilon-greedy agents only (default 0.1 0.2)")  # fmt: skip
    parser.add_argument("--episodes", type=int, default=24, help="per side and epsilon")
    parser.add_argument("--frames", type=int, default=12_000, help="per playing mode")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        if args.episodes < 1 or args.frames < 1 or args.num_envs < 1:
            raise evaluate.UserError("--episodes, --frames and --num-envs must be >= 1")
        if args.json:
            evaluate.check_output(Path(args.json))  # before any work
        agent, env, source, ckpt = evaluate.load_agent(args.run, None)
    except evaluate.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    greedy = hasattr(agent, "epsilon")
    if env is not None or (args.epsilons and not greedy):
        what = "an epsilon-greedy agent (--epsilons)" if env is None else "an agent"
        print(f"error: {source} is not a Procgen run of {what}", file=sys.stderr)
        return 2
    if args.epsilons is None:
        args.epsilons = [0.1, 0.2] if greedy else []
    run_cfg = cfglib.apply_overrides(cfglib.RunConfig(), ckpt["run_config"], "run config")
    out = []
    for eps in args.epsilons:
        run_cfg.eval_epsilon = eps
        report = procgen_report(agent, run_cfg, args.episodes, args.seed)
        out.append({"measure": "report", "epsilon": eps, **{k: report[k] for k in REPORT_KEYS}})
        print(json.dumps(out[-1]), flush=True)
    modes = [("training", agent)]
    final = None
    if greedy:
        agent.acting_steps = max(agent.acting_steps, agent.cfg.epsilon_decay_steps)
        final = agent.epsilon()
        modes.append(("evaluation", EpsilonGreedy(agent, final, agent.bins)))
    torch.manual_seed(args.seed)
    for mode, actor in modes:
        envs = procgen_envs(run_cfg, False, args.num_envs, args.seed)
        try:
            result = play(actor, envs, args.frames)
        finally:
            envs.close()
        out.append({"measure": f"play as {mode}", "epsilon": final, "frames": args.frames,
                    **result})  # fmt: skip
        print(json.dumps(out[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"run": str(source),
                                               "env_steps": ckpt["counters"]["env_steps"],
                                               "measurements": out}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
