"""From a parsed train.py command line to a run ready to train: the run's life cycle up to
`train()`.

- `resolve_config`: dataclass defaults < the architecture's defaults < the agent's Procgen
  defaults (on procgen:GAME) < --config preset < flags and --set, each value checked
  (`validate`, core/domains.py);
- `launch`: a new run (its folder created and its config.yaml written only once everything
  was checked), several seeds in one process (a group folder of RUN_DIR/s<S> runs,
  training/seeds.py), or --resume of either (from the latest checkpoint; a folder killed
  before its first checkpoint is trained again from step 0).

Every bad request is a UserError (core/errors.py) raised before any file is touched; train.py
prints it as one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path
from typing import Any

from agents import AGENTS, get_agent_module
from agents.nets import resolve_device, resolve_precision
from core import config as cfglib
from core.domains import SEED_LIMIT, check_domains
from core.errors import UserError, clip
from core.runs import FIRST_SAVE_PENDING, load_checkpoint, write_yaml
from envs import can_terminate, check_env_id
from envs.datasets.weighting import SAMPLERS
from envs.levels import spec_of
from envs.procgen import check_split, is_procgen_id, procgen_game, procgen_saves_states
from training import Trainer, trainer_class
from training.seeds import ENGINES, RngStreams, SeedGroup, SeedMember

RUN_FLAGS = [f.name for f in dataclasses.fields(cfglib.RunConfig)]  # train.py's flags


class Finished(Exception):
    """--resume of a run that already finished, with no larger budget: nothing to do."""


def resolve_config(args: argparse.Namespace) -> tuple[cfglib.RunConfig, Any]:
    """(RunConfig, agent Config) from defaults < architecture defaults < Procgen defaults <
    preset < flags.

    Touches no files but the preset."""
    preset = cfglib.load_yaml(args.config) if args.config else {}
    agent_overrides = preset.pop("agent_config", None) or {}
    if not isinstance(agent_overrides, dict):
        raise UserError(f"{args.config}: 'agent_config' must be a mapping")
    agent_overrides = {**agent_overrides, **cfglib.parse_set(args.set)}
    if args.arch is not None:
        agent_overrides["arch"] = args.arch
    flags = {k: getattr(args, k) for k in RUN_FLAGS if getattr(args, k) is not None}

    def run_config(base: dict) -> cfglib.RunConfig:  # base < preset < flags, each checked
        run_cfg = cfglib.apply_overrides(cfglib.RunConfig(), base, "run config")
        run_cfg = cfglib.apply_overrides(run_cfg, preset, "run config")
        return cfglib.apply_overrides(run_cfg, flags, "run config")

    plain = run_config({})
    module = agent_module(plain.agent)
    base_run, base_agent = arch_defaults(module, agent_overrides, plain.env)
    if is_procgen_id(plain.env):  # the agent's pixel settings (its PROCGEN_DEFAULTS)
        procgen = getattr(module, "PROCGEN_DEFAULTS", {})
        base_run = {**base_run, **procgen.get("run", {})}
        base_agent = {**base_agent, **procgen.get("agent", {})}
    run_cfg = run_config(base_run)
    if run_cfg.dataset and "env" not in flags and "env" not in preset:
        run_cfg.env = ""  # the dataset's own env, filled in when the dataset is read
    what = f"{run_cfg.agent} config"
    agent_cfg = cfglib.apply_overrides(module.Config(), base_agent, what)
    agent_cfg = cfglib.apply_overrides(agent_cfg, agent_overrides, what)
    validate(run_cfg)
    # auto is resolved here, so config.yaml (and any resume) keeps what the run used
    run_cfg.precision = resolve_precision(run_cfg.precision, resolve_device(run_cfg.device))
    check_domains(agent_cfg, what)
    check_rollout(run_cfg, agent_cfg)
    if getattr(module, "OFFLINE", False) and not run_cfg.dataset:
        raise UserError(f"{run_cfg.agent} learns from a dataset: give --dataset NAME_OR_PATH")
    return run_cfg, agent_cfg


def check_rollout(run_cfg: cfglib.RunConfig, agent_cfg: Any) -> None:
    """An on-policy update splits its rollout (num_steps x num_envs transitions) into
    `minibatches` parts, unevenly where they do not divide (agents/ppo.py): each needs one."""
    minibatches = getattr(agent_cfg, "minibatches", None)
    if minibatches is None or getattr(agent_cfg, "num_steps", None) is None:
        return
    size = agent_cfg.num_steps * run_cfg.num_envs
    if size < minibatches:
        raise UserError(f"a rollout of num_steps x num_envs = {agent_cfg.num_steps} x "
                        f"{run_cfg.num_envs} = {size} transitions cannot fill minibatches = "
                        f"{minibatches}: lower minibatches or raise num_steps or "
                        "--num-envs")  # fmt: skip


def arch_defaults(module, agent_overrides: dict, env_id: str) -> tuple[dict, dict]:
    """(run, agent) defaults the agent pairs with the chosen architecture (its ARCH_DEFAULTS;
    e.g. SAC: SimBa's UTD 2, or classic SAC's sizes and learning rates for mlp), with the
    entry's `non_episodic` agent settings on a task that cannot terminate (SimBa: one critic)."""
    table = getattr(module, "ARCH_DEFAULTS", {})
    arch = agent_overrides.get("arch", getattr(module.Config(), "arch", None))
    entry = table.get(arch, {}) if isinstance(arch, str) else {}
    agent = dict(entry.get("agent", {}))
    if env_id and not can_terminate(env_id):
        agent.update(entry.get("non_episodic", {}))
    return entry.get("run", {}), agent


def agent_module(name: str):
    try:
        return get_agent_module(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def write_run_config(run_dir: Path, run_cfg: cfglib.RunConfig, agent_cfg: Any) -> None:
    config = {**cfglib.to_dict(run_cfg), "agent_config": cfglib.to_dict(agent_cfg)}
    write_yaml(run_dir / "config.yaml", config)


def validate(run_cfg: cfglib.RunConfig) -> None:
    check_domains(run_cfg, "run config")
    try:
        if is_procgen_id(run_cfg.env):
            procgen_game(run_cfg.env)
            check_split(run_cfg.distribution_mode, run_cfg.start_level, run_cfg.train_levels)
            if run_cfg.bins or run_cfg.dataset:
                raise ValueError(f"{run_cfg.env} has discrete actions and no datasets: "
                                 "--bins and --dataset do not apply")  # fmt: skip
            if run_cfg.bias_every and not procgen_saves_states():  # refused before training
                raise ValueError("--bias-every restores Procgen states, and this procgen build "
                                 "cannot save them (no get_state): install procgen2 0.10.7 "
                                 "(make test)")  # fmt: skip
        elif run_cfg.env or not run_cfg.dataset:  # offline, "" = the dataset's env
            check_env_id(run_cfg.env)
        check_levels(run_cfg)
        resolve_device(run_cfg.device)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    agent = agent_module(run_cfg.agent)
    if run_cfg.bias_every and not hasattr(agent.Agent, "q_value"):
        raise UserError(f"{run_cfg.agent} has no critic Q to measure: --bias-every does not "
                        "apply")  # fmt: skip
    if run_cfg.eval_epsilon > 0 and not getattr(agent, "GREEDY_DISCRETE", False):
        raise UserError(f"eval_epsilon applies to agents acting greedily over discrete actions "
                        f"(revalued), not {run_cfg.agent}")  # fmt: skip
    if run_cfg.seed_engine not in ENGINES:
        raise UserError(f"seed_engine must be one of {', '.join(ENGINES)}, got "
                        f"'{run_cfg.seed_engine}'")  # fmt: skip
    if run_cfg.precision not in ("fp32", "bf16", "auto"):
        raise UserError(f"precision must be fp32, bf16 or auto, got '{run_cfg.precision}'")
    if run_cfg.bins < 0 or run_cfg.bins == 1:
        raise UserError(f"bins must be 0 (continuous) or >= 2, got {run_cfg.bins}")
    if run_cfg.sampler not in SAMPLERS:
        raise UserError(f"unknown sampler '{run_cfg.sampler}' (known: {', '.join(SAMPLERS)})")
    if run_cfg.d4rl_compat and not run_cfg.dataset:
        raise UserError("--d4rl-compat reads a D4RL dataset's files: it needs --dataset")
    if run_cfg.sampler != "uniform" and not run_cfg.dataset:
        raise UserError(f"--sampler {run_cfg.sampler} weights a dataset's trajectories: "
                        "it needs --dataset")  # fmt: skip


def check_levels(run_cfg: cfglib.RunConfig) -> None:
    """ValueError for level flags that do not fit the env (envs/levels.py, envs/procgen.py)."""
    if is_procgen_id(run_cfg.env):
        if run_cfg.context or run_cfg.context_range:
            raise ValueError("--context varies MuJoCo physics; Procgen's levels are its own")
        return
    if run_cfg.distribution_mode != cfglib.RunConfig.distribution_mode:  # the default: unset
        raise ValueError(f"--distribution-mode is Procgen's (--env procgen:GAME); "
                         f"{run_cfg.env or 'an offline dataset'} has none")  # fmt: skip
    if run_cfg.context:
        spec_of(run_cfg)  # parses, or one line on what is wrong
    elif run_cfg.context_range or run_cfg.train_levels or run_cfg.start_level:
        raise ValueError("--train-levels, --start-level and --context-range need levels: "
                         "--context PARAMS (MuJoCo) or --env procgen:GAME")  # fmt: skip


# ---- new runs, seed groups, resumes -------------------------------------------------------
def prepare_new_run(args: argparse.Namespace) -> Trainer:
    run_cfg, agent_cfg = resolve_config(args)
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{run_cfg.agent}-{run_cfg.env}-s{run_cfg.seed}-{stamp}"
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(
            f"run folder {run_dir} already exists; continue it with --resume {run_dir} "
            "or choose another --run-dir"
        )
    trainer = trainer_class(run_cfg)(run_cfg, agent_cfg, run_dir, args.progress)  # may raise
    make_run_dir(run_dir)  # the first write
    write_run_config(run_dir, run_cfg, agent_cfg)
    print(f"run folder: {run_dir}", flush=True)
    warn_if_nothing_learns(run_cfg, agent_cfg)
    trainer.fit()  # SPOT's VAE pretraining can take a while: the folder is announced first
    return trainer


GROUP_FILE = "seeds.json"  # in a group's folder: the seeds whose runs are its s<S> folders


def seeds_of(args: argparse.Namespace) -> list[int] | None:
    """The seeds of --seeds / --num-seeds, checked; None for an ordinary run."""
    if args.seeds is None and args.num_seeds is None:
        return None
    if args.seeds is not None and (args.num_seeds is not None or args.seed is not None):
        raise UserError("give the seeds one way: --seeds S1 S2 .., or --num-seeds K with "
                        "--seed S")  # fmt: skip
    if args.resume:
        raise UserError("--resume takes the seeds from the group folder; drop --seeds / "
                        "--num-seeds")  # fmt: skip
    if args.num_seeds is not None:
        if args.num_seeds < 1:
            raise UserError(f"--num-seeds must be >= 1, got {args.num_seeds}")
        first = args.seed or 0
        if first + args.num_seeds > SEED_LIMIT:  # before a list of that length is made
            raise UserError(f"--seed {first} --num-seeds {args.num_seeds} reaches past the "
                            f"seeds' limit 2^31 = {SEED_LIMIT}")  # fmt: skip
        seeds = list(range(first, first + args.num_seeds))
    else:
        seeds = list(args.seeds)
    if len(set(seeds)) != len(seeds) or not all(0 <= s < SEED_LIMIT for s in seeds):
        raise UserError(f"the seeds must be distinct and in [0, 2^31 = {SEED_LIMIT}), got "
                        f"{clip(str(seeds), 200)}")  # fmt: skip
    return seeds


def show_config(args: argparse.Namespace) -> tuple[cfglib.RunConfig, Any]:
    """The config a new run of `args` would train with, refused as its launch would refuse
    it (a seed group's checks too), with nothing written: train.py --show-config, which a
    sweep runs on each grid point before any of them starts."""
    seeds = seeds_of(args)
    run_cfg, agent_cfg = resolve_config(args)
    if seeds is not None and len(seeds) > 1:
        check_group(run_cfg)
        check_group_agent(agent_cfg)
    return run_cfg, agent_cfg


def check_group(run_cfg: cfglib.RunConfig) -> Any:
    """The agent module, if its runs can share one process; UserError naming why not."""
    module = agent_module(run_cfg.agent)
    if run_cfg.dataset or getattr(module, "ON_POLICY", False) or is_procgen_id(run_cfg.env):
        raise UserError(
            "several seeds in one process: online off-policy agents on Gymnasium "
            f"envs (not {run_cfg.agent} on {run_cfg.dataset or run_cfg.env})"
        )
    on_cpu = resolve_device(run_cfg.device).type == "cpu"
    stacked = run_cfg.seed_engine == "stacked" or (run_cfg.seed_engine == "auto" and not on_cpu)
    if not stacked and not on_cpu:  # auto on CUDA is stacked: the threads engine is the CPU's
        raise UserError("--seed-engine threads: the threads engine runs on the CPU; on CUDA use "
                        "stacked")  # fmt: skip
    if stacked and not getattr(module, "SEED_AXIS", None):
        able = sorted(name for name in AGENTS if getattr(agent_module(name), "SEED_AXIS", None))
        raise UserError(f"--seed-engine stacked: {', '.join(able)} (not {run_cfg.agent}); "
                        "--seed-engine threads runs any online off-policy agent")  # fmt: skip
    if run_cfg.cuda_graph:
        raise UserError("several seeds in one process update uncaptured: drop --cuda-graph "
                        "(or train the seeds one process each)")  # fmt: skip
    if run_cfg.stop_at_return != float("inf"):
        raise UserError("--stop-at-return would stop the seeds apart; the seeds of one "
                        "process run to --total-steps")  # fmt: skip
    return module


def check_group_agent(agent_cfg: Any) -> None:
    if getattr(agent_cfg, "compile", False):
        raise UserError("several seeds in one process update uncompiled: drop --set "
                        "compile=true (or train the seeds one process each)")  # fmt: skip


def prepare_new_group(args: argparse.Namespace, seeds: list[int]) -> SeedGroup:
    """K new runs of one config, RUN_DIR/s<S> each, trained in lockstep."""
    run_cfg, agent_cfg = resolve_config(args)
    module = check_group(run_cfg)
    check_group_agent(agent_cfg)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{run_cfg.agent}-{run_cfg.env}-seeds{seeds[0]}-{seeds[-1]}-{stamp}"
    root = Path(args.run_dir) if args.run_dir else Path("runs") / name
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"run folder {root} already exists; continue it with --resume {root} "
                        "or choose another --run-dir")  # fmt: skip
    streams, members = RngStreams(), []
    for seed in seeds:  # each built as its own process would build it
        cfg = dataclasses.replace(run_cfg, seed=seed)
        members.append(SeedMember(cfg, agent_cfg, root / f"s{seed}", "off"))
        streams.capture()
    make_run_dir(root)
    (root / GROUP_FILE).write_text(json.dumps({"seeds": seeds}) + "\n")
    for member in members:
        make_run_dir(member.run_dir)
        write_run_config(member.run_dir, member.run_cfg, agent_cfg)
    print(f"run folders: {root}/s{{{','.join(map(str, seeds))}}}", flush=True)
    warn_if_nothing_learns(run_cfg, agent_cfg)
    return group_of(members, streams, module)


def group_of(members: list[SeedMember], streams: RngStreams, module) -> SeedGroup:
    try:
        return SeedGroup(members, streams, module)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def prepare_group_resume(root: Path, args: argparse.Namespace) -> SeedGroup:
    """A group folder's runs, resumed together from checkpoints of one step (or all trained
    again from step 0 when none was written yet). A kill between two seeds' saves leaves them
    one checkpoint apart; the seeds ahead then resume from the previous.pt they kept."""
    changes, _ = resume_changes(args, root, sets_allowed=())
    try:
        seeds = [int(s) for s in json.loads((root / GROUP_FILE).read_text())["seeds"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{root / GROUP_FILE} is unreadable or has no seed list") from None
    folders = [root / f"s{seed}" for seed in seeds]
    # a seed's latest.pt counts once the group's first save is whole (every seed saved)
    have = [(folder / "checkpoints" / "latest.pt").is_file() and not first_save_pending(folder)
            for folder in folders]  # fmt: skip
    for folder in [f for f, h in zip(folders, have) if not h]:  # before any seed is touched
        check_nothing_saved(folder)
    if any(have) and not all(have):
        missing = [str(f) for f, h in zip(folders, have) if not h]
        raise UserError(f"{', '.join(missing)} wrote no checkpoint yet while the other seeds "
                        "did: resume each alone (train.py --resume FOLDER)")  # fmt: skip
    ckpts = [load_checkpoint(f / "checkpoints" / "latest.pt", resume=True) for f in folders
             ] if all(have) else [None] * len(folders)  # fmt: skip
    if all(have):
        common = min(c["counters"]["env_steps"] for c in ckpts)
        for i, folder in enumerate(folders):
            previous = folder / "checkpoints" / "previous.pt"
            if ckpts[i]["counters"]["env_steps"] > common and previous.is_file():
                ckpts[i] = load_checkpoint(previous, resume=True)
        steps = sorted({c["counters"]["env_steps"] for c in ckpts})
        if len(steps) > 1:
            raise UserError(f"the seeds of {root} stopped at different steps ({steps}): "
                            "resume each alone (train.py --resume FOLDER)")  # fmt: skip
    streams, members = RngStreams(), []
    for folder, ckpt in zip(folders, ckpts):
        if ckpt is None:  # killed before the first checkpoint: train every seed again
            trainer = restart(folder, args, SeedMember, quiet=True)
        else:
            run_cfg, agent_cfg = configs_of(ckpt["run_config"], ckpt["agent_config"], changes)
            remove_temporaries(folder)
            say_precision_change(ckpt, run_cfg, f"{folder.name}: ")
            trainer = SeedMember(run_cfg, agent_cfg, folder, "off")
            trainer.restore(ckpt)  # its random state becomes the seed's stream below
            if changes:
                write_run_config(folder, run_cfg, agent_cfg)
        members.append(trainer)
        streams.capture()
    first = members[0]
    if all((f / "checkpoints" / "final.pt").is_file() for f in folders) and (
        first.run_cfg.total_steps <= first.counters[first.clock]
    ):  # fmt: skip
        raise Finished(f"runs {root}/s* finished at {first.counters[first.clock]:,} env steps; "
                       "nothing to do (give --total-steps N to train them further)")  # fmt: skip
    print(f"run folders: {root}/s{{{','.join(map(str, seeds))}}}", flush=True)
    return group_of(members, streams, check_group(first.run_cfg))


def make_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot create run folder {run_dir}: {exc.strerror or exc}") from None


def warn_if_nothing_learns(run_cfg: cfglib.RunConfig, agent_cfg: Any) -> None:
    """Online, a warm-up that covers the whole budget means no gradient update at all."""
    warm_up = getattr(agent_cfg, "learning_starts", 0)
    if not run_cfg.dataset and warm_up >= run_cfg.total_steps:
        print(
            f"WARNING: the warm-up (learning_starts = {warm_up:,} env steps) covers the whole "
            f"run (total_steps = {run_cfg.total_steps:,}): no gradient update will run. Lower "
            f"it (--set learning_starts=N) or raise --total-steps.",
            file=sys.stderr, flush=True,
        )  # fmt: skip


# What --resume may change: the budget, and where and how fast the run computes, never its
# mathematics. `compile` is the agents' speed-only setting (same losses, another random stream,
# as a change of device gives); seed groups run uncompiled, so they take no --set at all. The
# precision changes only the update's rounding: a run moved to a machine without native bf16
# must train on in fp32 (say_precision_change tells the step).
RESUME_FLAGS = ("total_steps", "device", "threads", "precision")
RESUME_SETS = ("compile",)


def resume_changes(args: argparse.Namespace, run_dir: Path, sets_allowed=RESUME_SETS):
    """(run config changes, agent config changes) that --resume of `run_dir` was given;
    UserError naming any flag it may not change."""
    sets = cfglib.parse_set(args.set or [])
    given = [k for k in RUN_FLAGS if getattr(args, k) is not None and k not in RESUME_FLAGS]
    given += [f"--set {k}" for k in sets if k not in sets_allowed]
    given += [k for k in ("config", "run_dir") if getattr(args, k)]
    if given:
        allowed = ", ".join([*RESUME_FLAGS, *(f"--set {k}" for k in sets_allowed)])
        raise UserError(f"--resume takes its config from {run_dir}/config.yaml; cannot also "
                        f"change {', '.join(given)} (it may change {allowed})")  # fmt: skip
    changes = {k: getattr(args, k) for k in RESUME_FLAGS if getattr(args, k) is not None}
    return changes, sets


def prepare_resume(args: argparse.Namespace) -> Trainer:
    run_dir = Path(args.resume)
    changes, sets = resume_changes(args, run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"not a run folder (no config.yaml): {run_dir}")
    latest = run_dir / "checkpoints" / "latest.pt"
    if not latest.is_file():  # killed before its first checkpoint: start it again
        return restart(run_dir, args)
    ckpt = load_checkpoint(latest, resume=True)
    run_cfg, agent_cfg = configs_of(ckpt["run_config"], ckpt["agent_config"], changes, sets)
    clock = trainer_class(run_cfg).clock
    done = ckpt["counters"][clock]
    if (run_dir / "checkpoints" / "final.pt").is_file() and run_cfg.total_steps <= done:
        raise Finished(f"run {run_dir} finished at {done:,} {clock.replace('_', ' ')}; nothing "
                       f"to do (give --total-steps N > {done:,} to train it further)")  # fmt: skip
    remove_temporaries(run_dir)
    print(f"run folder: {run_dir}", flush=True)
    say_precision_change(ckpt, run_cfg)
    trainer = trainer_class(run_cfg)(run_cfg, agent_cfg, run_dir, args.progress)
    trainer.fit()
    trainer.restore(ckpt)
    if changes or sets:
        write_run_config(run_dir, run_cfg, agent_cfg)
    return trainer


def say_precision_change(ckpt: dict, run_cfg: cfglib.RunConfig, label: str = "") -> None:
    """One line when a resume trains on in another precision than the checkpoint's (a run
    moved to a machine without native bf16, say): the update's rounding changes from here."""
    before = ckpt["run_config"].get("precision")
    if before != run_cfg.precision:
        clock = trainer_class(run_cfg).clock  # "env_steps" -> "env step"
        where = f"{clock.replace('_', ' ')[:-1]} {ckpt['counters'][clock]:,}"
        print(f"{label}precision {before} -> {run_cfg.precision} from {where} on (config.yaml "
              "keeps the new one)", flush=True)  # fmt: skip


def configs_of(run: dict, agent: dict, changes: dict,
               sets: dict | None = None) -> tuple[cfglib.RunConfig, Any]:  # fmt: skip
    """A run folder's configs (from its checkpoint or config.yaml), with --resume's changes
    (`sets`: to the agent's config), checked like a new run's."""
    run_cfg = cfglib.apply_overrides(cfglib.RunConfig(), run, "run config")
    run_cfg = cfglib.apply_overrides(run_cfg, changes, "run config")
    validate(run_cfg)
    # A resume's --precision auto: what this machine runs natively (a stored one is resolved)
    run_cfg.precision = resolve_precision(run_cfg.precision, resolve_device(run_cfg.device))
    what = f"{run_cfg.agent} config"
    agent_cfg = cfglib.apply_overrides(agent_module(run_cfg.agent).Config(), agent, what)
    agent_cfg = cfglib.apply_overrides(agent_cfg, sets or {}, what)
    check_domains(agent_cfg, what)
    return run_cfg, agent_cfg


def check_nothing_saved(run_dir: Path) -> None:
    """UserError unless run_dir was killed before its first checkpoint was whole, all that
    restart() removes: its checkpoints/ holds no *.pt, or only a best.pt written before any
    checkpoint (its `saved_at` is None; an evaluation runs before the save of the same step, so
    a kill in between leaves exactly that), or beside first-save.pending what a first save cut
    short wrote (its replay file; in a seed group, whose first save is whole once every seed
    saved, a seed's latest.pt too). Anything else (final.pt, a replay file alone, a best.pt
    written after a checkpoint) means latest.pt went missing from a run that saved, which a
    restart would wipe."""
    ckpt_dir = run_dir / "checkpoints"
    found = sorted(p.name for p in ckpt_dir.glob("*.pt"))
    first_save_cut = first_save_pending(run_dir)
    saved = [name for name in found if name == "best.pt" or not first_save_cut]
    if saved == ["best.pt"] and load_checkpoint(ckpt_dir / "best.pt").get("saved_at") is None:
        return
    if saved:
        raise UserError(f"cannot resume {run_dir}: {ckpt_dir / 'latest.pt'} is missing, but "
                        f"{ckpt_dir} holds {clip(', '.join(found), 200)} from a run that saved; "
                        "nothing was changed (restore latest.pt, or start a new run "
                        "elsewhere)")  # fmt: skip


def first_save_pending(run_dir: Path) -> bool:
    """Whether run_dir's first checkpoint is not whole yet (trainer.save): a kill cut it."""
    return (run_dir / "checkpoints" / FIRST_SAVE_PENDING).is_file()


def restart(run_dir: Path, args: argparse.Namespace, cls=None, quiet: bool = False) -> Trainer:
    """A run folder with a config but no checkpoint (killed within its first checkpoint
    interval): nothing to resume, so train it again from step 0 with its config.yaml, after
    removing what the first attempt left (TensorBoard events, summary, best.pt)."""
    check_nothing_saved(run_dir)
    config = cfglib.load_yaml(run_dir / "config.yaml")
    agent = config.pop("agent_config", None) or {}
    changes, sets = resume_changes(args, run_dir, () if cls else RESUME_SETS)
    run_cfg, agent_cfg = configs_of(config, agent, changes, sets)
    trainer = (cls or trainer_class(run_cfg))(run_cfg, agent_cfg, run_dir, args.progress)
    stale = [*run_dir.glob("events.out.tfevents.*"), run_dir / "summary.json",
             *(run_dir / "checkpoints").glob("*")]  # fmt: skip
    for path in stale:
        if path.is_file():
            path.unlink()
    print(f"{run_dir} has no checkpoint yet (stopped before its first one): training it again "
          "from step 0 with its config.yaml", flush=True)  # fmt: skip
    write_run_config(run_dir, run_cfg, agent_cfg)
    if not quiet:
        print(f"run folder: {run_dir}", flush=True)
    trainer.fit()
    return trainer


def remove_temporaries(run_dir: Path) -> None:
    """Half-written files (*.tmp) that a kill during a save left behind; every real file was
    moved into place whole, so these are never needed. Also first-save.pending beside the
    latest.pt a run resumes from: that save was whole (a kill came before the marker went)."""
    for path in [*run_dir.glob("*.tmp"), *(run_dir / "checkpoints").glob("*.tmp")]:
        path.unlink()
        print(f"removed a half-written file left by an interrupted save: {path}", flush=True)
    (run_dir / "checkpoints" / FIRST_SAVE_PENDING).unlink(missing_ok=True)


def launch(args: argparse.Namespace) -> Trainer | SeedGroup:
    """The run (or seed group) that train.py's command line asks for, ready to `train()`."""
    seeds = seeds_of(args)
    if args.resume and (Path(args.resume) / GROUP_FILE).is_file():
        return prepare_group_resume(Path(args.resume), args)
    if args.resume:
        return prepare_resume(args)
    if seeds is not None and len(seeds) > 1:
        return prepare_new_group(args, seeds)
    if seeds is not None:  # one seed: the ordinary run, in RUN_DIR/s<S> when given
        args.seed = seeds[0]
        args.run_dir = args.run_dir and str(Path(args.run_dir) / f"s{seeds[0]}")
    return prepare_new_run(args)
