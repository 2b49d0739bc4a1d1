"""Evaluate a trained agent from its run folder or a checkpoint file.

    python evaluate.py runs/hopper-s0 --episodes 10
    python evaluate.py runs/hopper-s0/checkpoints/latest.pt --env Hopper-v5 --seed 3 --json out.json
    python evaluate.py runs/hopper-s0 --bias --json bias.json   # + overestimation bias

Runs deterministic episodes (PPO: sampled; a run with `eval_epsilon`: epsilon-greedy; both
seeded), up to 10 at a time in a vector env (episode k starts from reset(seed + k);
harness.evaluation.evaluate_vector), prints a table and, with
--json, writes {return_mean, return_std, returns, lengths, ...}. A run folder uses
checkpoints/final.pt when training finished, else checkpoints/latest.pt.

--bias also measures the critic's bias against Monte-Carlo returns (harness/bias.py) on
--bias-states states drawn from the checkpoint's replay buffer and restored in the simulator;
without a buffer or restorable states it uses fresh episode starts and says so
(`restored_states: false`). `bias_target` in the JSON says what the truth G was: `soft` (SAC,
TQC: the soft return of the sampled policy, entropy bonuses included; the deterministic
measurement follows under `deterministic`) or `reward` (the discounted reward of the
deterministic policy: TD3, REValueD, the offline TD3 family). On a run with levels (Procgen,
or MuJoCo levels) the report is train vs held-out levels, and --bias measures on states the
greedy policy reaches on each side, restored there, under `bias` ({train, test, ...}).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from agents import get_agent_module
from agents.buffer import ReplayBuffer
from agents.nets import resolve_device
from core import config as cfglib
from core.domains import SEED_LIMIT, first_nonfinite
from core.errors import UserError
from core.runs import check_output as check_writable
from core.runs import check_spaces, find_checkpoint, load_checkpoint, space_signature, write_json
from envs import VecEnv, make_env
from envs.datasets.loading import load_dataset
from envs.levels import spec_of
from envs.procgen import held_out_levels, is_procgen_id, procgen_game, procgen_spaces
from harness.bias import BiasMeter, States, start_states, states_from_buffer
from harness.evaluation import EVAL_ENVS, evaluate_vector, evaluation_actor
from training.levels import LevelEvaluation, level_bias_meter, levels_bias
from training.procgen import procgen_bias, procgen_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate an ogzoo checkpoint.")
    parser.add_argument("path", help="run folder or checkpoint file")
    parser.add_argument("--episodes", type=int, default=10, help="episodes (default: 10)")
    parser.add_argument(
        "--env", default=None, help="environment id (default: the one it was trained on)"
    )
    parser.add_argument(
        "--other-env",
        action="store_true",
        help="allow --env to differ from the checkpoint's env (spaces must still match; "
        "default: off, a different env is an error)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of episode 0 (default: 0)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write results as JSON")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument(
        "--bias", action="store_true", help="also measure the overestimation bias (default: off)"
    )
    parser.add_argument(
        "--generalization",
        action="store_true",
        help="return on training levels vs held-out levels (--episodes each; envs with levels, "
        "procgen:GAME, always report it; default: off)",
    )
    parser.add_argument(
        "--held-out",
        default=None,
        metavar="WHICH",
        help="Procgen: the held-out side's levels: above (every level above the training "
        "range, the default), stream (the protocol's num_levels=0 stream, which may draw a "
        "training level; the report counts them) or START:COUNT (a finite range disjoint "
        "from the training levels)",
    )
    parser.add_argument(
        "--bias-states", type=int, default=100, help="states for --bias (default: 100)"
    )
    parser.add_argument(
        "--rollouts",
        type=int,
        default=4,
        help="Monte-Carlo rollouts per state for a stochastic (soft or epsilon-greedy) policy; "
        "a deterministic one gets one (default: 4)",
    )
    parser.add_argument(
        "--bias-epsilon",
        type=float,
        default=None,
        metavar="E",
        help="Procgen, with --bias, agents acting greedily (revalued): also the bias against "
        "the return of the epsilon-greedy policy at E (the evaluation's, e.g. 0.05), --rollouts "
        "rollouts from each of the same states (bias_epsilon in the report), since a greedy "
        "policy can stall where its epsilon-greedy evaluation does not",
    )
    return parser


def bias_states(source: Path, ckpt: dict, env_id: str, env, k: int, seed: int) -> States:
    """States the agent trained on, when they can be restored: the checkpoint's replay buffer,
    or, for an offline run, its dataset; else fresh episode starts."""
    if env_id == ckpt["env"]:
        dataset = ckpt["run_config"].get("dataset")
        replay = source.parent / str(ckpt.get("replay_file", ""))
        try:
            if dataset:
                data, _ = load_dataset(dataset, compat=ckpt["run_config"].get("d4rl_compat"))
                return states_from_buffer(ReplayBuffer.from_dataset(data, seed), k, seed)
            if replay.is_file():
                return states_from_buffer(ReplayBuffer.load(replay), k, seed)
        except ValueError:
            pass  # no simulator states stored (non-MuJoCo env): fall back below
    return start_states(env, k, seed)


def level_report(agent, run_cfg, spec, args) -> dict:
    """The generalization report of a run with MuJoCo levels (training/levels.py), with --bias
    the bias on the policy's states of each side under `bias` ({train, test, extrapolation})."""
    evaluation = LevelEvaluation(run_cfg.env, run_cfg.bins, spec, args.episodes,
                                 run_cfg.eval_epsilon)  # fmt: skip
    try:
        report = evaluation.report(agent, args.seed)
        if args.bias:
            meter = level_bias_meter(run_cfg.env, run_cfg.bins, spec, agent.cfg.gamma,
                                     args.rollouts)  # fmt: skip
            report["bias"] = levels_bias(agent, evaluation, meter, args.bias_states, args.seed)
    finally:
        evaluation.close()
    report["levels"] = spec.to_dict()
    return report


RUN_FILES = ("config.yaml", "summary.json")  # a run folder's own files besides checkpoints/


def check_output(path: Path, source: Path | None = None) -> None:
    """UserError, before any work, unless `path` can be written as a file that is neither the
    checkpoint `source` nor a file of its run (anything in checkpoints/, config.yaml,
    summary.json); a new file beside them in the run folder is fine."""
    check_writable(path, "--json")
    if source is None:
        return
    target, checkpoint = path.resolve(), source.resolve()
    folder = checkpoint.parent
    if target == checkpoint:
        raise UserError(f"--json {path} is the checkpoint being evaluated; give another file name")
    if folder.name == "checkpoints" and (
        target.parent == folder or (target.parent == folder.parent and target.name in RUN_FILES)
    ):
        owned = ", ".join(("checkpoints/", *RUN_FILES))
        raise UserError(f"--json {path} would overwrite the files of run {folder.parent} "
                        f"({owned}); give another file name")  # fmt: skip


def bins_of(ckpt: dict) -> int:
    """The action discretisation the run trained with (train.py --bins; 0 = continuous)."""
    return int(ckpt["run_config"].get("bins", 0))


def load_agent(path: str | Path, env_id: str | None, device: str = "cpu", other_env: bool = False):
    """(agent, env, checkpoint path, checkpoint) ready to act; UserError on any mismatch: an
    env other than the checkpoint's unless `other_env`, spaces, non-finite weights."""
    source = find_checkpoint(path)
    ckpt = load_checkpoint(source)
    if env_id and env_id != ckpt["env"] and not other_env:
        raise UserError(f"checkpoint {source} was trained on {ckpt['env']}, not {env_id} "
                        "(add --other-env to evaluate it there on purpose)")  # fmt: skip
    env_id = env_id or ckpt["env"]
    try:
        if is_procgen_id(env_id):  # its envs are built per report (training/on_policy.py)
            procgen_game(env_id)
            env, spaces = None, procgen_spaces()
        else:
            env = make_env(env_id, bins=bins_of(ckpt))
            spaces = env.observation_space, env.action_space
        module = get_agent_module(ckpt["agent"])
        dev = resolve_device(device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    check_spaces(ckpt, space_signature(*spaces), env_id, source)
    agent_cfg = cfglib.apply_overrides(module.Config(), ckpt["agent_config"], "agent config")
    try:
        agent = module.Agent(agent_cfg, *spaces, dev)
    except ValueError as exc:
        raise UserError(f"checkpoint {source}: {exc}") from None
    try:
        agent.load_state_dict(ckpt["agent_state"])
    except (KeyError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        raise UserError(f"checkpoint {source} does not fit its agent: {reason}") from None
    bad = first_nonfinite(ckpt["agent_state"])
    if bad is not None:
        raise UserError(f"checkpoint {source} holds non-finite weights ({bad} is NaN or "
                        "infinite): the run diverged; nothing to evaluate")  # fmt: skip
    return agent, env, source, ckpt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    try:
        if args.episodes < 1:
            raise UserError(f"--episodes must be >= 1, got {args.episodes}")
        if args.bias_states < 1 or args.rollouts < 1:
            raise UserError("--bias-states and --rollouts must be >= 1")
        if args.bias_epsilon is not None and not 0 < args.bias_epsilon <= 1:
            raise UserError(f"--bias-epsilon must be in (0, 1], got {args.bias_epsilon}")
        if not 0 <= args.seed < SEED_LIMIT:
            raise UserError(f"--seed must be in [0, {SEED_LIMIT}), got {args.seed}")
        if args.json:
            check_output(Path(args.json), find_checkpoint(args.path))
        agent, env, source, ckpt = load_agent(args.path, args.env, args.device, args.other_env)
        env_id = args.env or ckpt["env"]
        if args.bias and not hasattr(agent, "q_value"):
            raise UserError(f"{ckpt['agent']} has no critic Q: --bias does not apply")
        run_cfg = cfglib.apply_overrides(cfglib.RunConfig(), ckpt["run_config"], "run config")
        run_cfg.env = env_id
        if args.held_out is not None and env is not None:
            raise UserError(f"--held-out chooses Procgen levels; {env_id} is not procgen:GAME")
        if args.bias_epsilon is not None and (
            env is not None
            or not getattr(get_agent_module(ckpt["agent"]), "GREEDY_DISCRETE", False)
        ):
            raise UserError(f"--bias-epsilon measures an agent acting greedily (revalued) on "
                            f"Procgen, not {ckpt['agent']} on {env_id}")  # fmt: skip
        if env is None:  # Procgen: the generalization report, with --bias on each side
            held_out = args.held_out or "above"
            try:
                held_out_levels(held_out)  # a bad choice fails before any episode
                report = procgen_report(agent, run_cfg, args.episodes, args.seed, held_out)
            except ValueError as exc:  # e.g. START:COUNT overlapping the training levels
                raise UserError(str(exc)) from None
            if args.bias:
                report["bias"] = procgen_bias(agent, run_cfg, args.bias_states, args.seed,
                                              agent.cfg.gamma, held_out)  # fmt: skip
            if args.bias_epsilon is not None:
                report["bias_epsilon"] = procgen_bias(
                    agent, run_cfg, args.bias_states, args.seed, agent.cfg.gamma, held_out,
                    args.bias_epsilon, args.rollouts,
                )  # fmt: skip
            return finish_generalization(args, ckpt, source, env_id, report)
        spec = spec_of(run_cfg)
        if spec is not None:  # MuJoCo levels: the report, and the bias on each side's levels
            report = level_report(agent, run_cfg, spec, args)
            return finish_generalization(args, ckpt, source, env_id, report)
        if args.generalization:
            raise UserError(f"--generalization needs an env with levels (procgen:GAME, or a run "
                            f"trained with --context), not {env_id}")  # fmt: skip
        episodes = VecEnv(env_id, min(args.episodes, EVAL_ENVS), 0, bins_of(ckpt))
        try:
            actor, deterministic = evaluation_actor(agent, run_cfg.eval_epsilon)
            result = evaluate_vector(actor, episodes, args.episodes, args.seed, deterministic)
        finally:
            episodes.close()
        bias = None
        if args.bias:
            states = bias_states(source, ckpt, env_id, env, args.bias_states, args.seed)
            meter = BiasMeter(
                lambda limit: make_env(env_id, max_episode_steps=limit, bins=bins_of(ckpt)),
                agent.cfg.gamma,
                rollouts=args.rollouts,
            )
            bias = meter.measure(agent, states)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"{ckpt['agent']} on {env_id} from {source} (env step {ckpt['counters']['env_steps']})")
    print(f"{'episode':>7}  {'return':>10}  {'length':>6}")
    for k, (ret, length) in enumerate(zip(result["returns"], result["lengths"])):
        print(f"{k:>7}  {ret:>10.2f}  {length:>6}")
    print(f"{'mean':>7}  {result['return_mean']:>10.2f}  +- {result['return_std']:.2f}")
    if bias is not None:
        print_bias(bias)
    if args.json:
        out = {
            **result,
            **(bias or {}),
            "agent": ckpt["agent"],
            "env": env_id,
            "checkpoint": str(source),
            "env_steps": ckpt["counters"]["env_steps"],
            "seed": args.seed,
            "episodes": args.episodes,
        }
        return write_output(Path(args.json), out)
    return 0


def write_output(path: Path, out: dict) -> int:
    """--json's file: 0, or 2 with one line when it cannot be written."""
    try:
        write_json(path, out)
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def finish_generalization(args, ckpt: dict, source: Path, env_id: str, report: dict) -> int:
    """Print the generalization report (training vs held-out levels) and write its JSON."""
    print(f"{ckpt['agent']} on {env_id} from {source} (env step {ckpt['counters']['env_steps']})")
    print(f"{'levels':>13}  {'episodes':>8}  {'return':>16}  {'normalized':>10}  levels seen")
    names = {"train": "training", "test": "held out", "extrapolation": "extrapolation"}
    for side in [side for side in names if f"{side}_return_mean" in report]:
        seen = report[f"{side}_levels_seen"]
        normalized = report.get(f"{side}_normalized")
        normalized = "-" if normalized is None else f"{normalized:.3f}"
        print(f"{names[side]:>13}  {report['n_episodes']:>8}  "
              f"{report[f'{side}_return_mean']:>7.2f} +- {report[f'{side}_return_std']:<5.2f}  "
              f"{normalized:>10}  {clip_list(seen)}")  # fmt: skip
    print(f"gap ({report['gap_of']}): {report['gap']:+.3f} over {report['n_train_levels']} "
          "training levels")  # fmt: skip
    if "gap_extrapolation" in report:
        print(f"gap to extrapolation levels: {report['gap_extrapolation']:+.3f}")
    for side, bias in report.get("bias", {}).items():
        print(f"bias on the policy's states, {names[side]} levels:")
        print_bias(bias)
    for side, bias in report.get("bias_epsilon", {}).items():
        print(f"bias on the same states against the {bias['rollout_policy']} policy's return, "
              f"{names[side]} levels:")  # fmt: skip
        print_bias(bias)
    if args.json:
        out = {**report, "agent": ckpt["agent"], "env": env_id, "checkpoint": str(source),
               "env_steps": ckpt["counters"]["env_steps"]}  # fmt: skip
        return write_output(Path(args.json), out)
    return 0


def clip_list(values: list | None, keep: int = 8) -> str:
    """A level list for the terminal: the first `keep` and how many more."""
    if values is None or len(values) <= keep:
        return str(values)
    return f"{values[:keep]} and {len(values) - keep} more"


def print_bias(bias: dict) -> None:
    """The soft measurement (SAC, TQC) and then the deterministic one, or the latter alone."""
    for part in (bias, bias.get("deterministic")):
        if part is None:
            continue
        where = "restored states" if part["restored_states"] else "fresh episode starts"
        truth = {
            "soft": "soft return of the sampled policy (rewards - alpha log pi, "
            f"alpha {part.get('alpha', 0):.4g})",
            "reward": "discounted reward of the "
            + (
                "deterministic"
                if part.get("rollout_policy", "greedy") == "greedy"
                else part["rollout_policy"]
            )
            + " policy",
        }[part["bias_target"]]
        print(
            f"bias against the {truth}, on {part['n_states']} {where}, {part['rollouts']} "
            f"rollout(s) each, horizon {part['horizon']} (gamma {part['gamma']}):"
        )
        print(f"{'estimate':>10}  {'mean Q':>9}  {'bias':>18}  {'normalized bias':>18}  "
              f"{'REDQ-normalized':>18}")  # fmt: skip
        for name, row in {"q_value": part, **part.get("estimates", {})}.items():
            cells = [
                f"{row[f'{key}_mean']:>+9.{digits}f} +- {row[f'{key}_std']:<6.{digits}f}"
                for key, digits in (
                    ("bias", 2), ("bias_normalized", 3), ("bias_normalized_redq", 3)
                )
            ]  # fmt: skip
            print(f"{name:>10}  {row['q_mean']:>9.2f}  {'  '.join(cells)}")
        print(f"{'MC return':>10}  {part['mc_return_mean']:>9.2f}")


if __name__ == "__main__":
    sys.exit(main())
