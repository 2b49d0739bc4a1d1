"""Network building blocks shared by every agent.

- `mlp`: a plain multilayer perceptron (nn.Sequential of Linear + activation).
- `EnsembleMLP`: N independent MLPs evaluated as one batched computation. Weights are stacked
  (members x in x out) and every layer is one batched matmul, so twin critics, TQC's five
  distributional critics or REValueD's ten members cost one kernel per layer, not N.
- `ImpalaCNN`: the IMPALA / Procgen pixel encoder (uint8 N x 64 x 64 x 3 -> N x 256), with an
  optional channels_last memory format for faster CPU convolutions.
- `soft_update`: Polyak averaging of target networks with `lerp_`.
- `seed_everything`: seeds Python, NumPy and torch in one place.

Initialisation follows torch.nn.Linear's default (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights
and biases), which is what the TD3 and SAC reference implementations use, so an ensemble member
is distributed exactly like a separately built MLP.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from contextlib import contextmanager

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


def fp32_head(head: EnsembleLinear, x: torch.Tensor, members: slice | None) -> torch.Tensor:
    """The output layer in fp32 even under bf16 autocast: Q-values and the TD targets built
    from them need more than bf16's ~3 significant digits."""
    with torch.autocast(x.device.type, enabled=False):
        return head(x.float(), members)


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
        return fp32_head(self.layers[-1], x, members)

    def load_member(self, member: int, net: nn.Sequential) -> None:
        """Copy the weights of a plain `mlp(...)` into one member (tests, conversions)."""
        linears = [m for m in net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer, lin in zip(self.layers, linears, strict=True):
                layer.weight[member].copy_(lin.weight.T)
                layer.bias[member, 0].copy_(lin.bias)


# ---- what an update of several seeds reroutes (training/seeds.py) --------------------------
# An agent draws every random number of its losses with `normal_like` and steps every optimizer
# with `optimize`. Alone, these are torch.randn_like and a plain step. When one process updates
# several seeds, a noise source set for the running thread hands each seed noise from its own
# stream (its generator, or noise drawn from it beforehand for a seed-stacked update under
# torch.func.vmap), and a seed-stacked loss holds one value per seed.
_local = threading.local()


@contextmanager
def _on_this_thread(name: str, value):
    """Inside, this thread's setting `name` is `value`; the previous one comes back after."""
    previous = getattr(_local, name, None)
    setattr(_local, name, value)
    try:
        yield
    finally:
        setattr(_local, name, previous)


def noise_from(source):
    """Inside, normal_like(t) returns source(t) on this thread."""
    return _on_this_thread("source", source)


def normal_like(t: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like t (torch.randn_like, unless rerouted: above)."""
    source = getattr(_local, "source", None)
    return torch.randn_like(t) if source is None else source(t)


def compile_methods(agent, names: tuple[str, ...]) -> None:
    """torch.compile each named method of `agent` (its losses: pure functions of tensors, so
    the compiler can fuse them; the same mathematics, another random stream)."""
    for name in names:
        setattr(agent, name, torch.compile(getattr(agent, name)))


def seed_axis():
    """Inside, this thread's updates work on seed-stacked tensors (training/seeds.py): every
    parameter's first dimension is the seed, so `optimize` clips each seed's gradient alone."""
    return _on_this_thread("stacked", True)


def optimize(
    opt: torch.optim.Optimizer, loss: torch.Tensor, inputs=None, max_norm: float | None = None
) -> torch.Tensor | None:
    """zero_grad, backward (into `inputs` only, when given), optionally clip the gradient's
    norm to `max_norm` (torch's clip_grad_norm_), step; returns the norm before clipping. A
    seed-stacked loss holds one loss per seed; no parameter is shared between seeds, so the
    gradient of their sum is each seed's own, and each seed's norm is its own."""
    opt.zero_grad(set_to_none=True)
    loss.sum().backward(inputs=inputs)
    norm = None
    if max_norm is not None:
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if getattr(_local, "stacked", False):
            norm = clip_per_seed([p.grad for p in params], max_norm)
        else:
            norm = nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()
    return norm


@torch.no_grad()
def clip_per_seed(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ for each seed of seed-stacked gradients: the 2-norm over every tensor's
    slice k, and slice k scaled by min(1, max_norm / (norm + 1e-6)). Returns the K norms."""
    per_tensor = torch.stack([g.flatten(1).norm(dim=1) for g in grads])  # tensors x K
    norms = per_tensor.norm(dim=0)  # K
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms


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


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bfloat16 matmuls and convolutions in native kernels. A CPU without
    AVX-512 BF16 or AMX (oneDNN's test) falls back to PyTorch's reference kernels: on an
    AVX2-only AMD EPYC the IMPALA-CNN training step ran 8x slower in bf16 than in fp32
    (docs/procgen.md), where an AVX-512 BF16 CPU ran it 2.4x faster."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no native bf16 either
        return False


def update_autocast(device_type: str, bf16: bool) -> torch.autocast:
    """The autocast context an update runs in (--precision bf16): bfloat16 matmuls and
    convolutions, with autocast's weight cache OFF. The cache keeps the bf16 copy of every
    weight cast inside one autocast region and does not notice in-place changes, so an
    optimizer step inside the region leaves later forwards on the old weights: PPO's 3 epochs
    x M minibatches then all ran on the encoder as it was before the first step, and TD3's
    and SAC's actor losses on the critic before its step (found 2026-12-03; PyTorch's
    autocast notes: wrap forward passes, not optimizer steps). Recasting costs a copy of each
    weight per forward."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16, cache_enabled=False)


def resolve_precision(precision: str, device: torch.device) -> str:
    """--precision auto -> bf16 where `device` has native bfloat16 kernels, else fp32; any
    other value as it is."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


# ---- SimBa (Lee et al. 2024, "SimBa: Simplicity Bias for Scaling Up Parameters in Deep RL") --
# Encoder: Linear(in, h) -> blocks x [x + Linear(4h, h)(ReLU(Linear(h, 4h)(LayerNorm(x))))]
# -> LayerNorm -> head. Initialisation as the authors' code: orthogonal (gain 1) for the
# embedding and the head, He-normal inside the blocks (theirs is truncated, ours is not), zero
# biases. `hidden` lists one width per residual block (all equal): [512, 512] = 2 blocks x 512,
# like `mlp`'s layer list.


class RunningNorm(nn.Module):
    """SimBa's RSNorm: (x - mean) / sqrt(var + eps) with running statistics.

    Statistics change only through `update`, which the agent calls with observations the
    environment returned (never with replayed batches); they are buffers, so they are saved in
    checkpoints with the networks.
    """

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch (B x dim) into the running moments (parallel variance formula)."""
        x = x.reshape(-1, self.mean.shape[0]).to(torch.float64)
        n = x.shape[0]
        batch_mean, batch_var = x.mean(0), x.var(0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(x.dtype), (self.var + self.eps).sqrt().to(x.dtype)
        return (x - mean) / std


class DatasetNorm(nn.Module):
    """Fixed observation normalization from a dataset: (x - mean) / (std + eps), as TD3+BC
    normalizes D4RL states (population std, eps 1e-3). Set once by `fit`; saved in checkpoints
    as buffers, so acting after a reload uses the training statistics."""

    def __init__(self, dim: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("std", torch.ones(dim, dtype=torch.float64))

    @torch.no_grad()
    def fit(self, obs: torch.Tensor) -> None:
        """Statistics of all dataset observations (N x dim)."""
        obs = obs.reshape(-1, self.mean.shape[0]).to(torch.float64)
        self.mean.copy_(obs.mean(0))
        self.std.copy_(obs.std(0, unbiased=False) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def normalize_batch(norm: RunningNorm | DatasetNorm | None, batch):
    """The batch with obs and next_obs normalized by `norm` (unchanged when None). The
    statistics are only read here: they are updated from env observations (`observe`)."""
    if norm is None:
        return batch
    return dataclasses.replace(batch, obs=norm(batch.obs), next_obs=norm(batch.next_obs))


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        for layer in (self.up, self.down):
            with torch.no_grad():
                nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / layer.in_features))
                layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(torch.relu(self.up(self.norm(x))))


def simba(
    in_dim: int,
    out_dim: int,
    hidden: tuple[int, ...] | list[int],
    output_activation: nn.Module | None = None,
) -> nn.Sequential:
    """SimBa network: embedding, len(hidden) residual blocks, LayerNorm, linear head."""
    width = _block_width(hidden)
    embed, head = nn.Linear(in_dim, width), nn.Linear(width, out_dim)
    for layer in (embed, head):
        with torch.no_grad():
            nn.init.orthogonal_(layer.weight, gain=1.0)
            layer.bias.zero_()
    layers: list[nn.Module] = [embed, *(ResidualBlock(width) for _ in hidden)]
    layers += [nn.LayerNorm(width), head]
    if output_activation is not None:
        layers.append(output_activation)
    return nn.Sequential(*layers)


def _block_width(hidden: tuple[int, ...] | list[int]) -> int:
    if len(hidden) == 0 or len(set(hidden)) != 1:
        raise ValueError(f"simba needs one equal width per residual block, got {list(hidden)}")
    return int(hidden[0])


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with a separate affine (scale, shift) per ensemble member."""

    def __init__(self, members: int, width: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(members, 1, width))  # E x 1 x h
        self.bias = nn.Parameter(torch.zeros(members, 1, width))  # E x 1 x h

    def forward(self, x: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if members is not None:
            weight, bias = weight[members], bias[members]
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)  # E x B x h
        return torch.addcmul(bias, x, weight)


class EnsembleSimba(nn.Module):
    """N SimBa networks evaluated together (same interface as EnsembleMLP)."""

    def __init__(self, members: int, in_dim: int, out_dim: int, hidden: list[int]):
        super().__init__()
        width = _block_width(hidden)
        self.members = members
        self.embed = EnsembleLinear(members, in_dim, width)
        self.norms = nn.ModuleList(EnsembleLayerNorm(members, width) for _ in hidden)
        self.ups = nn.ModuleList(EnsembleLinear(members, width, 4 * width) for _ in hidden)
        self.downs = nn.ModuleList(EnsembleLinear(members, 4 * width, width) for _ in hidden)
        self.final_norm = EnsembleLayerNorm(members, width)
        self.head = EnsembleLinear(members, width, out_dim)
        with torch.no_grad():
            for layer in (self.embed, self.head):
                for member in range(members):
                    q = nn.init.orthogonal_(torch.empty(layer.out_dim, layer.in_dim), gain=1.0)
                    layer.weight[member].copy_(q.T)
            for layer in (*self.ups, *self.downs):
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_dim))
            for layer in (self.embed, self.head, *self.ups, *self.downs):
                layer.bias.zero_()

    def forward(self, x: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        x = self.embed(x, members)  # E x B x h
        for norm, up, down in zip(self.norms, self.ups, self.downs):
            x = x + down(torch.relu(up(norm(x, members), members)), members)
        return fp32_head(self.head, self.final_norm(x, members), members)

    def load_member(self, member: int, net: nn.Sequential) -> None:
        """Copy the weights of a plain `simba(...)` into one member (tests, conversions)."""
        embed, *blocks, final_norm, head = net
        pairs = [(self.embed, embed), (self.head, head)]
        with torch.no_grad():
            for block, norm, up, down in zip(blocks, self.norms, self.ups, self.downs):
                pairs += [(up, block.up), (down, block.down), (norm, block.norm)]
            pairs.append((self.final_norm, final_norm))
            for mine, theirs in pairs:
                if isinstance(theirs, nn.Linear):
                    mine.weight[member].copy_(theirs.weight.T)
                else:
                    mine.weight[member, 0].copy_(theirs.weight)
                mine.bias[member, 0].copy_(theirs.bias)


# arch name -> (single network, batched ensemble), both taking `hidden` as described above.
ARCHS = {"mlp": (mlp, EnsembleMLP), "simba": (simba, EnsembleSimba)}


def _arch(arch: str) -> tuple:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch '{arch}' (use {' or '.join(ARCHS)})")
    return ARCHS[arch]


def actor_net(
    arch: str, in_dim: int, out_dim: int, hidden: list[int], output_activation=None
) -> nn.Sequential:
    """A single network of the chosen architecture ('mlp' or 'simba')."""
    return _arch(arch)[0](in_dim, out_dim, hidden, output_activation=output_activation)


def critic_ensemble(
    arch: str, members: int, in_dim: int, out_dim: int, hidden: list[int]
) -> EnsembleMLP | EnsembleSimba:
    """A batched ensemble of the chosen architecture ('mlp' or 'simba')."""
    return _arch(arch)[1](members, in_dim, out_dim, hidden)


# ---- IMPALA-CNN (Espeholt et al. 2018, "IMPALA", Fig. 3 right; Cobbe et al. 2020, Procgen) ----
# The pixel encoder of openai/train-procgen (baselines' `impala_cnn`, depths 16/32/32):
#   per stage: conv3x3 -> maxpool 3x3 / 2 -> 2 x [x + conv3x3(relu(conv3x3(relu(x))))]
#   then ReLU -> flatten -> Linear(., 256) -> ReLU.
# Deviations: the max-pool pads 1 on every side (PyTorch; CleanRL's ppo_procgen does the same),
# where TensorFlow's 'SAME' pads only after; both take 64 -> 32 -> 16 -> 8. Weights use
# PyTorch's default initialisation (train-procgen uses TF's Glorot-uniform defaults). The
# flatten runs in C x H x W order (train-procgen's is H x W x C), a fixed permutation of the
# dense layer's inputs with no effect on what the network can learn.


class ImpalaResidual(nn.Module):
    """x + conv(relu(conv(relu(x)))), two 3x3 convolutions that keep the shape (C x H x W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaStage(nn.Module):
    """conv3x3 (in -> out channels) -> max-pool 3x3 stride 2 -> two residual blocks;
    N x in x H x W -> N x out x ceil(H/2) x ceil(W/2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res0, self.res1 = ImpalaResidual(out_channels), ImpalaResidual(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaCNN(nn.Module):
    """IMPALA-CNN encoder for pixel observations: `... x H x W x C` -> `... x out_dim`.

    Frames come channels last, as Procgen (and the replay buffer) holds them. uint8 frames are
    scaled to [0, 1] here; floating-point frames are taken as already scaled. Any leading batch
    dimensions are kept (N, or T x N for a rollout).

    channels_last: run the convolutions in torch.channels_last memory format. The maths is the
    same, but the frames arrive in that layout already (the permute to N x C x H x W is then a
    view, not a copy) and oneDNN's convolutions are faster in it on CPU.

    Under bf16 autocast the convolutions and the dense layer run in bfloat16 and the output is
    bf16; the caller's heads decide whether to go back to fp32 (e.g. `fp32_head`).
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int] = (64, 64, 3),
        depths: tuple[int, ...] = (16, 32, 32),
        out_dim: int = 256,
        channels_last: bool = False,
    ):
        super().__init__()
        height, width, channels = obs_shape
        self.obs_shape, self.out_dim, self.channels_last = tuple(obs_shape), out_dim, channels_last
        stages = []
        for depth in depths:
            stages.append(ImpalaStage(channels, depth))
            # max-pool 3 / 2, padding 1: floor((h + 2 - 3) / 2) + 1 = ceil(h / 2)
            channels, height, width = depth, (height + 1) // 2, (width + 1) // 2
        self.stages = nn.Sequential(*stages)
        self.feature_shape = (channels, height, width)  # 32 x 8 x 8 for 64 x 64 frames
        self.dense = nn.Linear(channels * height * width, out_dim)  # 2048 -> 256
        if channels_last:
            self.stages.to(memory_format=torch.channels_last)  # conv weights too (4-D only)

    def conv_features(self, obs: torch.Tensor) -> torch.Tensor:
        """The three stages: N x H x W x C frames -> N x 32 x 8 x 8 feature maps (pre-ReLU)."""
        x = obs.permute(0, 3, 1, 2)  # N x C x H x W, strides still channels last
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.contiguous(memory_format=fmt)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x  # keeps the memory format
        return self.stages(x)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[-3:] != self.obs_shape:
            raise ValueError(
                f"ImpalaCNN expects frames of shape ... x {self.obs_shape}, got {tuple(obs.shape)}"
            )
        lead = obs.shape[:-3]
        x = self.conv_features(obs.reshape(-1, *self.obs_shape))  # N x 32 x 8 x 8
        x = torch.relu(x).flatten(1)  # N x 2048, C x H x W order whatever the memory format
        x = torch.relu(self.dense(x))  # N x 256
        return x.reshape(*lead, self.out_dim)


def check_encoder(encoder: str, observation_space, vector_encoder: str) -> None:
    """One-line ValueError unless `encoder` fits the observations: "impala" takes uint8
    H x W x C frames, `vector_encoder` (the agent's name for its MLP) flat vectors."""
    shape, known = tuple(observation_space.shape), (vector_encoder, "impala")
    if encoder not in known:
        raise ValueError(f"unknown encoder '{encoder}' (use {' or '.join(known)})")
    if encoder == "impala" and (len(shape) != 3 or observation_space.dtype != np.uint8):
        raise ValueError(
            f"encoder impala needs uint8 H x W x C frames, got {observation_space.dtype} "
            f"{shape} (use --set encoder={vector_encoder} for vector observations)"
        )
    if encoder == vector_encoder and len(shape) != 1:
        raise ValueError(
            f"encoder {vector_encoder} needs flat vector observations, got "
            f"{observation_space.dtype} {shape} (use --set encoder=impala for uint8 frames)"
        )
