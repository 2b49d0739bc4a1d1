"""TQC's update with its quantile Huber loss as written now (eight passes over the E x B x M x K
pairwise tensor) against the fifteen-pass form it replaced (2026-12-04), in one process.

    python bench/tqc_loss_speed.py --rounds 5 --updates 150

Both forms give the same gradient bit for bit (the loss value, only logged, differs in its
last bits), so a run is the same run with either; this times the whole update (replay
sampling included, bench/speed.py's `ours_update`) with each form in turn, alternating which
goes first, one torch thread, on HalfCheetah-v5 transitions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402

from agents import tqc  # noqa: E402


def fifteen_passes(quantiles: torch.Tensor, target: torch.Tensor, kappa: float = 1.0):
    """The loss and gradient as agents/tqc.py computed them before 2026-12-04."""
    m = quantiles.shape[-1]
    taus = (torch.arange(m, device=quantiles.device, dtype=quantiles.dtype) + 0.5) / m
    u = target[None, :, None, :] - quantiles[..., None]
    weight = (taus[:, None] - (u < 0).to(u.dtype)).abs_()
    abs_u = u.abs()
    clipped = abs_u.clamp(max=kappa)
    loss = (weight * clipped * (abs_u - 0.5 * clipped)).mean()
    grad = (weight * u.clamp(-kappa, kappa)).sum(-1).mul_(-1.0 / u.numel())
    return loss, grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=150, help="updates per round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    forms = {"eight": tqc.QuantileHuberLoss.forward, "fifteen": fifteen_passes}
    q, y = torch.randn(2, 256, 25) * 3, torch.randn(256, 50) * 3
    same = torch.equal(forms["eight"](q, y)[1], fifteen_passes(q, y)[1])
    print(f"gradients of the two forms on a random 2 x 256 x 25 x 50 case bitwise equal: {same}")
    run = speed.ours_update("tqc", "HalfCheetah-v5", speed.collect("HalfCheetah-v5", 5000, 0))
    run(30)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in forms}
    try:
        for index in range(args.rounds):
            for name in list(forms) if index % 2 == 0 else list(forms)[::-1]:
                tqc.QuantileHuberLoss.forward = staticmethod(forms[name])
                start = time.perf_counter()
                run(args.updates)
                rates[name].append(args.updates / (time.perf_counter() - start))
    finally:
        tqc.QuantileHuberLoss.forward = staticmethod(forms["eight"])
    for name, values in rates.items():
        print(f"  {name:8s} passes: {statistics.median(values):6.1f} updates/s  (rounds: "
              f"{', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip
    ratio = statistics.median(rates["eight"]) / statistics.median(rates["fifteen"])
    print(f"  eight / fifteen: {ratio:.2f}x")


if __name__ == "__main__":
    main()
