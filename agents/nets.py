"""Network building blocks shared by every agent.

- `mlp`: a plain multilayer perceptron (nn.Sequential of Linear + activation).
- `EnsembleMLP`: N independent MLPs evaluated as one batched computation. Weights are stacked
  (members x in x out) and every layer is one batched matmul, so twin critics, TQC's five
  distributional critics or REValueD's ten members cost one kernel per layer, not N.
- `soft_update`: Polyak averaging of target networks with `lerp_`.
- `seed_everything`: seeds Python, NumPy and torch in one place.

Initialisation follows torch.nn.Linear's default (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights
and biases), which is what the TD3 and SAC reference implementations use, so an ensemble member
is distributed exactly like a separately built MLP.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: tuple[int, ...] | list[int],
    activation: str = "relu",
    output_activation: nn.Module | None = None,
) -> nn.Sequential:
    """in_dim -> hidden... -> out_dim, activation after every hidden layer."""
    layers: list[nn.Module] = []
    dims = [in_dim, *hidden]
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(dims[-1], out_dim))
    if output_activation is not None:
        layers.append(output_activation)
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """`members` independent Linear layers as one batched matmul."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.members, self.in_dim, self.out_dim = members, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))  # E x in x out
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))  # E x 1 x out
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if members is not None:
            weight, bias = weight[members], bias[members]
        if x.dim() == 2:
            # Shared input for every member: a broadcast view, no copy (measured faster than
            # one wide GEMM over concatenated weights, whose reshapes cost more than they save).
            x = x.expand(weight.shape[0], *x.shape)  # E x B x in
        return torch.baddbmm(bias, x, weight)  # E x B x out


class EnsembleMLP(nn.Module):
    """N MLPs with identical shapes and independent weights, evaluated together.

    forward(x): x is B x in (same input for all members) or E x B x in; returns E x B x out.
    `members` selects a contiguous subset (e.g. slice(0, 1) for TD3's actor update through Q1).
    """

    def __init__(
        self,
        members: int,
        in_dim: int,
        out_dim: int,
        hidden: tuple[int, ...] | list[int],
        activation: str = "relu",
    ):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.members = members
        self.layers = nn.ModuleList(
            EnsembleLinear(members, d_in, d_out) for d_in, d_out in zip(dims[:-1], dims[1:])
        )
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x, members))
        # The output layer runs in fp32 even under bf16 autocast: Q-values and the TD targets
        # built from them need more than bf16's ~3 significant digits.
        with torch.autocast(x.device.type, enabled=False):
            return self.layers[-1](x.float(), members)

    def load_member(self, member: int, net: nn.Sequential) -> None:
        """Copy the weights of a plain `mlp(...)` into one member (tests, conversions)."""
        linears = [m for m in net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, lin in zip(self.layers, linears, strict=True):
                layer.weight[member].copy_(lin.weight.T)
                layer.bias[member, 0].copy_(lin.bias)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source, in place, parameter by parameter."""
    tgt = list(target.parameters())
    src = list(source.parameters())
    torch._foreach_lerp_(tgt, src, tau)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; 'cuda' without a GPU is an error for the caller."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device '{name}' (use cpu, cuda or auto)")
    return torch.device(name)
