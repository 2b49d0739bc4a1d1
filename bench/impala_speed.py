"""IMPALA-CNN training-step throughput: fp32 channels-first vs channels-last vs bf16, one thread.

    python bench/impala_speed.py                      # 5 rounds x 2 steps per variant
    python bench/impala_speed.py --rounds 3 --steps 1 --batch 256

One training step = forward of a batch of uint8 Procgen frames (N x 64 x 64 x 3) through
`ImpalaCNN` and a 15-way policy + value head, a PPO-shaped loss (policy gradient on fixed
actions and advantages, value MSE, entropy bonus), backward and an Adam step: the work of one
PPO minibatch in train-procgen (lr 5e-4, 15 Procgen actions). The variants:
- fp32-first:  fp32, convolutions in the default (channels-first) memory format;
- fp32-last:   fp32, `ImpalaCNN(channels_last=True)`;
- bf16-last:   channels-last under `torch.autocast(dtype=torch.bfloat16)`, what
               `train.py --precision bf16` wraps around an update (weights, gradients and
               Adam state stay fp32; the loss is computed from fp32 logits).
Each variant starts from the same initial weights and trains on the same fixed batch. Rounds
alternate the variants so that background load hits all alike; reported per round: frames/s
(batch x steps / wall time); then the median per variant and its ratio to fp32-first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.nets import ImpalaCNN, update_autocast  # noqa: E402

ACTIONS = 15  # Procgen's full action set
VARIANTS = {  # name -> (channels_last, bf16)
    "fp32-first": (False, False),
    "fp32-last": (True, False),
    "bf16-last": (True, True),
}


def make_step(channels_last: bool, bf16: bool, batch: dict, device: torch.device, seed: int):
    """A closure running one training step of a fresh encoder + head on `batch`."""
    torch.manual_seed(seed)  # same initial weights for every variant
    encoder = ImpalaCNN(channels_last=channels_last).to(device)
    head = nn.Linear(encoder.out_dim, ACTIONS + 1).to(device)  # 15 logits + 1 value
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=5e-4, eps=1e-5)
    autocast = update_autocast(device.type, bf16)  # as the Trainer's

    def step() -> None:
        with autocast:
            out = head(encoder(batch["obs"])).float()  # B x 16
        logits, values = out[:, :ACTIONS], out[:, ACTIONS]  # B x 15, B
        log_probs = torch.log_softmax(logits, dim=-1)  # B x 15
        taken = log_probs.gather(1, batch["actions"][:, None]).squeeze(1)  # B
        entropy = -(log_probs.exp() * log_probs).sum(-1)  # B
        loss = (
            -(taken * batch["advantages"]).mean()
            + 0.5 * (values - batch["returns"]).pow(2).mean()
            - 0.01 * entropy.mean()
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per round")
    parser.add_argument("--batch", type=int, default=256, help="frames per training step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    batch = {
        "obs": torch.randint(0, 256, (args.batch, 64, 64, 3), dtype=torch.uint8, generator=gen),
        "actions": torch.randint(0, ACTIONS, (args.batch,), generator=gen),
        "advantages": torch.randn(args.batch, generator=gen),
        "returns": torch.randn(args.batch, generator=gen),
    }
    batch = {key: value.to(device) for key, value in batch.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    steps = {name: make_step(*flags, batch, device, seed=0) for name, flags in VARIANTS.items()}
    for step in steps.values():  # untimed: first-call allocations, oneDNN kernel selection
        step()
    sync()
    print(f"batch {args.batch} frames, {args.steps} steps per round, {args.threads} thread(s)")
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        line = []
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync()
            rate = args.batch * args.steps / (time.perf_counter() - start)
            rates[name].append(rate)
            line.append(f"{name} {rate:7.1f}")
        print(f"round {round_}: " + "  ".join(line) + "  frames/s", flush=True)
    base = statistics.median(rates["fp32-first"])
    print("median frames/s (ratio to fp32-first):")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:10s} {median:7.1f}  x{median / base:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
