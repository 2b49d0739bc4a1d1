"""CUDA-graph capture of an agent's update (train.py --cuda-graph; issue 23).

On a GPU a small update is launch-bound: hundreds of kernels of a few microseconds each, every
one launched from Python. A CUDA graph records those launches once and replays them with one
call. The recipe (PyTorch's "whole-network capture", as LeanRL applies it to RL agents):

- The update reads its batch from static tensors: each call copies the sampled batch into them
  and replays the graph; the graph's outputs (the metrics) are copied out after the replay.
- Optimizers step on the device (`capturable=True`: Adam's step counter is a GPU tensor, so
  the bias correction is not frozen into the graph as a Python number).
- A few eager updates run first on a side stream (cuBLAS workspaces, the optimizers' state),
  then the next call is captured; capturing runs nothing, so that call replays at once.
- Python control flow is frozen at capture. An agent therefore splits its update into
  `begin_update()`, the Python bookkeeping that runs on every call and returns the *phase* (the
  branch the tensor work takes: TD3's "actor step or not"), and `update_step(batch, phase)`,
  tensor work only, which must not change any Python attribute. One graph per phase.

The mathematics is the eager update's. Random numbers: a captured graph draws from the default
CUDA generator through its Philox offset, which each replay advances by what the capture drew,
so the noise of a captured run is another stream than the eager run's (as with --set compile).
On a CPU there is nothing to capture: `capture_update` says so and the update stays eager.
"""

from __future__ import annotations

import dataclasses

import torch

WARMUP = 3  # eager updates per phase before its capture


def capturable(agent) -> bool:
    """Whether the agent splits its update into begin_update / update_step (and does not opt
    out with `graph_capturable = False`: PRDC, whose actor loss searches a KD-tree on the CPU)."""
    return getattr(agent, "graph_capturable", True) and callable(
        getattr(agent, "update_step", None)
    )


def optimizers(agent) -> list[torch.optim.Optimizer]:
    """The agent's optimizers (its attributes that are torch optimizers)."""
    return [v for v in vars(agent).values() if isinstance(v, torch.optim.Optimizer)]


def set_capturable(opts: list[torch.optim.Optimizer], on: bool) -> None:
    """Set `capturable` in every parameter group. An optimizer's state_dict carries it, so a
    checkpoint of a captured run would step a resumed uncaptured run down the capturable path,
    which a CPU refuses for Adam's unfused step."""
    for opt in opts:
        for group in opt.param_groups:
            group["capturable"] = on


def is_captured(agent) -> bool:
    """Whether capture_update routed this agent's update through CUDA graphs."""
    return isinstance(vars(agent).get("update_step"), CapturedStep)


def clone(value):
    """A copy of a batch (dataclass), dict or tensor, every tensor freshly allocated."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return type(value)(
            **{f.name: clone(getattr(value, f.name)) for f in dataclasses.fields(value)}
        )
    return value


def copy_into(static, value) -> None:
    """Copy `value` into `static` (same structure and shapes), tensor by tensor, in place."""
    if isinstance(static, torch.Tensor):
        if static.shape != value.shape or static.dtype != value.dtype:
            raise ValueError(
                f"a captured update needs batches of one shape and dtype: captured "
                f"{tuple(static.shape)} {static.dtype}, got {tuple(value.shape)} {value.dtype}"
            )
        static.copy_(value, non_blocking=True)
    elif isinstance(static, dict):
        if static.keys() != value.keys():
            raise ValueError(f"batch fields changed after capture: {sorted(value)}")
        for k in static:
            copy_into(static[k], value[k])
    elif dataclasses.is_dataclass(static):
        for f in dataclasses.fields(static):
            copy_into(getattr(static, f.name), getattr(value, f.name))


class CapturedStep:
    """Stands in for `agent.update_step`: eager for the first WARMUP calls of a phase, then one
    captured graph per phase, replayed on a static copy of each batch."""

    def __init__(self, agent, warmup: int = WARMUP):
        self.step = agent.update_step  # the eager bound method
        self.opts = optimizers(agent)
        self.warmup = warmup
        self.calls: dict = {}  # phase -> eager calls so far
        self.graphs: dict = {}  # phase -> (replay, its output tensors)
        self.static = None  # the batch every graph reads

    def __call__(self, batch, phase=None) -> dict[str, torch.Tensor]:
        if phase not in self.graphs:
            self.arm()
            self.calls[phase] = self.calls.get(phase, 0) + 1
            if self.calls[phase] <= self.warmup:
                return self.warm(batch, phase)
            if self.static is None:
                self.static = clone(batch)
            copy_into(self.static, batch)
            self.graphs[phase] = self.record(phase)
        replay, out = self.graphs[phase]
        copy_into(self.static, batch)
        replay()  # at the capturing call too: capturing recorded the update without running it
        return clone(out)

    def arm(self) -> None:
        """Optimizers step on the device (set before every capture: loading a checkpoint
        restores the `capturable` it was saved with)."""
        set_capturable(self.opts, True)

    def warm(self, batch, phase) -> dict[str, torch.Tensor]:
        """An eager update on a side stream (PyTorch's warm-up before a capture)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.step(batch, phase)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def record(self, phase):
        """Capture the update of `phase` on the static batch: (replay, its output tensors)."""
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            out = self.step(self.static, phase)
        return graph.replay, out


def capture_update(agent, device: torch.device) -> str:
    """Route the agent's update through CUDA graphs; returns the line that says what happened.
    ValueError for an agent whose update cannot be captured."""
    if not capturable(agent):
        raise ValueError(
            f"{type(agent).__module__.split('.')[-1]} has no capturable update "
            "(no update_step); run without --cuda-graph"
        )
    if device.type != "cuda":
        return f"--cuda-graph: nothing to capture on {device.type}; the update runs eagerly"
    agent.update_step = CapturedStep(agent)
    return f"--cuda-graph: the update is captured after {WARMUP} eager updates per phase"
