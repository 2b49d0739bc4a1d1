"""Many seeds in one process (`train.py --seeds 0 1 2` or `--num-seeds K`): K ordinary runs
advanced in lockstep, their gradient updates made together.

Each seed is an ordinary OffPolicyTrainer with its own run folder (R/s<S>), envs, replay
buffer, loop RNG, counters, evaluations, TensorBoard run and checkpoints, so every tool
downstream (evaluate.py, the bias harness, plots, sweeps, `--resume R/s<S>` alone) reads it
as a single-seed run. Random numbers: `RngStreams` keeps each seed's global random state
(Python, NumPy, torch); a single-seed process draws from those globals, so seed k's work
(acting, evaluation, bias, checkpoints) runs with its state swapped in, and its update draws
its loss noise (agents.nets.normal_like) from its own torch generator: each seed consumes
exactly the stream its own process would.

Two engines make the updates (`--seed-engine`; auto: stacked where the agent lists its
SEED_AXIS, else threads):
- `threads`: each seed's own `update`, the seeds spread over `--threads` worker threads with
  one torch thread each. Bit-identical to single-seed runs, any online off-policy agent, CPU.
- `stacked`: one update for all seeds (on a GPU one small update is launch-bound, so K seeds
  cost about one; on this CPU the update is FLOP-bound and the gain is using both cores well,
  docs/throughput.md). `SeedStack` keeps the K agents' parameters, buffers and optimizer
  moments in stacked tensors (seed axis first); agent k's tensors are views of slice k. A
  template agent of the same class holds the stacked tensors and runs its own `update` once
  for all seeds, inside agents.nets.seed_axis(): the methods its module lists in SEED_AXIS
  (its losses) run under torch.func.vmap with functional_call, one slice per seed; Adam, AdamW
  and the Polyak averages are elementwise, so one optimizer over stacked tensors is K
  optimizers, and a clipped gradient is clipped per seed. Parameters agree with single-seed
  runs up to floating-point reassociation.

tests/test_seeds.py checks both against single-seed runs.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.utils._pytree as pytree
from torch import nn
from torch.func import functional_call, vmap

import agents.nets as nets
from agents.buffer import Batch
from core import stop
from training.off_policy import OffPolicyTrainer

# vmap maps over a Batch's tensors (a pytree node; its `extras` dict is one too).
if Batch not in pytree.SUPPORTED_NODES:
    pytree.register_dataclass(Batch)


class RngStreams:
    """Each seed's random state: Python's and NumPy's global states, and torch generators
    (CPU, and CUDA when present) that its update draws from directly."""

    def __init__(self):
        self.python: list = []
        self.numpy: list = []
        self.torch: list[torch.Generator] = []
        self.cuda: list[torch.Generator | None] = []

    def capture(self) -> None:
        """Add the global state as the next seed's stream (after its trainer was built)."""
        self.python.append(random.getstate())
        self.numpy.append(np.random.get_state())
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
        self.torch.append(generator)
        cuda = None
        if torch.cuda.is_available():
            cuda = torch.Generator("cuda")
            cuda.set_state(torch.cuda.get_rng_state())
        self.cuda.append(cuda)

    @contextmanager
    def use(self, k: int):
        """Seed k's stream as the global state inside; what it drew stays in its stream."""
        random.setstate(self.python[k])
        np.random.set_state(self.numpy[k])
        torch.set_rng_state(self.torch[k].get_state())
        if self.cuda[k] is not None:
            torch.cuda.set_rng_state(self.cuda[k].get_state())
        try:
            yield
        finally:
            self.python[k] = random.getstate()
            self.numpy[k] = np.random.get_state()
            self.torch[k].set_state(torch.get_rng_state())
            if self.cuda[k] is not None:
                self.cuda[k].set_state(torch.cuda.get_rng_state())

    def normal(self, k: int):
        """A normal_like source drawing from seed k's generator on the tensor's device."""

        def draw(like: torch.Tensor) -> torch.Tensor:
            generator = self.cuda[k] if like.device.type == "cuda" else self.torch[k]
            return torch.randn(like.shape, generator=generator, dtype=like.dtype,
                               device=like.device)  # fmt: skip

        return draw


def agent_modules(agent) -> dict[str, nn.Module]:
    """The agent's modules by attribute name (networks, targets, normalizers, temperature)."""
    return {name: value for name, value in vars(agent).items() if isinstance(value, nn.Module)}


def agent_optimizers(agent) -> dict[str, torch.optim.Optimizer]:
    return {k: v for k, v in vars(agent).items() if isinstance(v, torch.optim.Optimizer)}


def module_tensor(module: nn.Module, name: str) -> torch.Tensor:
    """A module's parameter or buffer by its dotted name."""
    try:
        return module.get_parameter(name)
    except AttributeError:
        return module.get_buffer(name)


class _Call(nn.Module):
    """The template's modules under one root, so functional_call can swap all their tensors;
    forward(fn, *args) calls fn (a template method) while they are swapped."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        self.mods = nn.ModuleDict(modules)

    def forward(self, fn, *args):
        return fn(*args)


class SeedStack:
    """K agents of one class and config whose tensors live in stacked storage (module doc)."""

    def __init__(self, template, agents: list, streams: RngStreams, seed_axis: tuple[str, ...],
                 shared: tuple[str, ...] = ()):  # fmt: skip
        if not seed_axis:
            raise ValueError("this agent lists no SEED_AXIS methods")
        self.template, self.agents, self.streams = template, agents, streams
        seen: set[int] = set()
        for attr, module in agent_modules(template).items():
            members = [getattr(agent, attr) for agent in agents]
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                if id(tensor) in seen:  # shared between two attributes: stacked once
                    continue
                seen.add(id(tensor))
                parts = [module_tensor(member, name) for member in members]
                stacked = torch.stack([part.detach() for part in parts])
                tensor.data = stacked
                for k, part in enumerate(parts):
                    part.data = stacked[k]  # agent k reads and writes slice k in place
        self.optimizers = list(agent_optimizers(template))
        self.import_optimizer_states()
        template.updates = agents[0].updates
        self.call = _Call(agent_modules(template))
        # What functional_call swaps in: the stacked tensors, updated in place from here on.
        self.tensors = {**dict(self.call.named_parameters()), **dict(self.call.named_buffers())}
        self.noise_shapes: dict[str, list[tuple]] = {}
        for name in seed_axis:
            setattr(template, name, self.vmapped(name, getattr(template, name)))
        self.shared = shared
        update = template.update

        def stacked_update(batch):
            for name in self.shared:  # equal for every seed in lockstep
                setattr(template, name, getattr(agents[0], name))
            with nets.seed_axis():
                return update(batch)

        template.update = stacked_update

    # ---- optimizer moments --------------------------------------------------------------
    def optimizer_pairs(self, attr: str):
        """(template optimizer, stacked param, [(optimizer k, param k)]) for every param."""
        stacked_opt = getattr(self.template, attr)
        opts = [getattr(agent, attr) for agent in self.agents]
        for g, group in enumerate(stacked_opt.param_groups):
            for j, param in enumerate(group["params"]):
                yield stacked_opt, param, [(o, o.param_groups[g]["params"][j]) for o in opts]

    def import_optimizer_states(self) -> None:
        """Stack the agents' optimizer moments (a resumed group; fresh agents have none)."""
        for attr in self.optimizers:
            for stacked_opt, param, members in self.optimizer_pairs(attr):
                states = [opt.state.get(p) for opt, p in members]
                if not any(states):
                    continue
                if not all(states) or len({float(s["step"]) for s in states}) != 1:
                    raise ValueError(f"{attr}: the seeds' optimizers are at different steps")
                stacked_opt.state[param] = {
                    key: value.clone() if key == "step" else torch.stack([s[key] for s in states])
                    for key, value in states[0].items()
                }  # fmt: skip

    def export(self, k: int) -> None:
        """Write seed k's optimizer moments and update count into agent k (its checkpoint)."""
        for attr in self.optimizers:
            for stacked_opt, param, members in self.optimizer_pairs(attr):
                state = stacked_opt.state.get(param)
                if state:
                    opt, p = members[k]
                    opt.state[p] = {key: value.clone() if key == "step" else value[k].clone()
                                    for key, value in state.items()}  # fmt: skip
        self.agents[k].updates = self.template.updates

    # ---- the batched losses -------------------------------------------------------------
    def vmapped(self, name: str, fn):
        """fn (a template method) run for every seed at once, each with its own tensors and
        noise; returns what fn returns, with a leading seed axis."""

        def one(tensors, noise, args):
            draws = iter(noise)
            with nets.noise_from(lambda like: next(draws)):
                return functional_call(self.call, tensors, (fn, *args))

        def call(*args):
            if name not in self.noise_shapes:
                self.noise_shapes[name] = self.record(self.tensors, args, fn)
            noise = self.draw(self.noise_shapes[name])
            return vmap(one)(self.tensors, noise, args)

        return call

    def record(self, tensors, args, fn) -> list[tuple]:
        """(shape, dtype, device) of every normal_like draw fn makes, in order: one dry run
        (no gradients, no random numbers drawn)."""
        shapes: list[tuple] = []

        def one(tensors, args):
            def source(like):
                shapes.append((tuple(like.shape), like.dtype, like.device))
                return torch.zeros_like(like)

            with nets.noise_from(source):
                return functional_call(self.call, tensors, (fn, *args))

        with torch.no_grad():
            vmap(one)(tensors, args)
        return shapes

    def draw(self, shapes: list[tuple]) -> list[torch.Tensor]:
        """The noise of one batched call: seed k's draws from seed k's generator, stacked."""
        per_seed = []
        for k in range(len(self.agents)):
            source = self.streams.normal(k)
            per_seed.append([source(torch.empty(s, dtype=d, device=v)) for s, d, v in shapes])
        return [torch.stack(draws) for draws in zip(*per_seed)]


def stack_batches(batches: list[Batch]) -> Batch:
    """K batches -> one with a leading seed axis on every tensor."""
    return pytree.tree_map(lambda *ts: torch.stack(ts), *batches)


class SeedMember(OffPolicyTrainer):
    """One seed of a group: an ordinary off-policy run whose updates the group makes."""

    group: SeedGroup | None = None
    index = 0
    keep_previous = True  # until every seed saved: a kill between two seeds' saves is resumable

    def agent_state(self) -> dict:
        stack = getattr(self.group, "stack", None)
        if stack is None:
            return self.agent.state_dict()
        # Seed k's optimizer moments, copied out of the stacked storage (a view would save
        # every seed's tensors).
        stack.export(self.index)
        return pytree.tree_map(
            lambda x: x.clone() if isinstance(x, torch.Tensor) else x, self.agent.state_dict()
        )

    def resume_target(self) -> Path:
        return self.run_dir.parent if self.group is not None else self.run_dir


ENGINES = ("auto", "threads", "stacked")


class SeedGroup:
    """K SeedMembers of one config (their seeds apart) trained in lockstep."""

    def __init__(self, members: list[SeedMember], streams: RngStreams, module):
        self.members, self.streams = members, streams
        first = members[0]
        for k, member in enumerate(members):
            member.group, member.index = self, k
            member.label = f"s{member.run_cfg.seed} "
        engine = first.run_cfg.seed_engine
        if engine == "auto":
            engine = "stacked" if getattr(module, "SEED_AXIS", None) else "threads"
        self.engine = engine
        if engine == "stacked":
            # The template is built from a throwaway stream: the seeds' own are untouched.
            with torch.random.fork_rng(devices=[]):
                template = module.Agent(first.agent_cfg, first.observation_space,
                                        first.action_space, first.device)  # fmt: skip
            self.stack = SeedStack(template, [m.agent for m in members], streams,
                                   getattr(module, "SEED_AXIS", ()),
                                   getattr(module, "SEED_SHARED", ()))  # fmt: skip
        else:
            if first.device.type != "cpu":
                raise ValueError("--seed-engine threads runs on the CPU; on CUDA use stacked")
            # One torch thread per worker: the workers are the parallelism.
            self.workers = max(1, first.run_cfg.threads)
            torch.set_num_threads(1)
            # OpenMP's thread count is per thread: each worker sets its own.
            self.pool = ThreadPoolExecutor(
                self.workers, thread_name_prefix="seed", initializer=torch.set_num_threads,
                initargs=(1,),
            )  # fmt: skip

    def each(self):
        """(k, member) with seed k's random stream in place."""
        for k, member in enumerate(self.members):
            with self.streams.use(k):
                yield k, member

    def train(self) -> None:
        """Every member to total_steps in lockstep; Ctrl-C or SIGTERM saves every member."""
        for _, member in self.each():
            member.open_session(show_bar=False)
        finished = False
        try:
            with stop.handling():
                try:
                    self.loop()
                    finished = True
                except KeyboardInterrupt:
                    pass
                for _, member in self.each():
                    member.end_session(finished)
                for member in self.members:
                    member.drop_previous()
        finally:
            for member in self.members:
                member.close_session()
            if self.engine == "threads":
                self.pool.shutdown()
        if not finished:
            self.members[0].say_interrupted()
            raise SystemExit(130)

    def loop(self) -> None:
        first = self.members[0]
        for _, member in self.each():
            member.start_schedule()
        while first.counters[first.clock] < first.run_cfg.total_steps:
            stop.check()
            for _, member in self.each():
                member.obs = member.collect(member.obs, member.writer)
            self.learn()
            # One decision for all: the seeds' checkpoints stay at one step (a wall-clock
            # interval could fall between two seeds' checks).
            save = first.checkpoint_due()
            for _, member in self.each():
                member.after_advance(member.writer, member.bar, save=save)
            if save:  # every seed saved this step: the previous checkpoints can go
                for member in self.members:
                    member.drop_previous()

    def learn(self) -> None:
        """Every member's credited updates, made together (the members' credits are equal)."""
        if not all([m.add_update_credit() for m in self.members]):
            return
        first = self.members[0]
        while first.counters["update_credit"] >= 1.0:
            stop.check()
            if self.engine == "stacked":
                metrics = self.stacked_update()
            else:
                parts = [range(w, len(self.members), self.workers) for w in range(self.workers)]
                metrics = {}
                for part in self.pool.map(self.threaded_updates, parts):
                    metrics.update(part)
            for k, member in enumerate(self.members):
                member.last_metrics.update(metrics[k])
                member.counters["gradient_updates"] += 1
                member.counters["update_credit"] -= 1.0

    def threaded_updates(self, seeds: range) -> dict[int, dict]:
        """On a worker thread: the ordinary update of each of these seeds, its loss noise
        from its own generator."""
        metrics = {}
        for k in seeds:
            member = self.members[k]
            batch = member.sample_batch()
            with nets.noise_from(self.streams.normal(k)), member.autocast:
                metrics[k] = member.agent.update(batch)
        return metrics

    def stacked_update(self) -> dict[int, dict]:
        """One update of the stacked agents; each seed's metrics."""
        batch = stack_batches([member.sample_batch() for member in self.members])
        with self.members[0].autocast:
            metrics = self.stack.template.update(batch)
        return {k: {key: value[k] if value.dim() else value for key, value in metrics.items()}
                for k in range(len(self.members))}  # fmt: skip
