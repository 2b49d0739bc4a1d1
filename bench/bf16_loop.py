"""Issue 23, item 3: where TD3's training loop loses the update's bf16 gain on this CPU.

    python bench/bf16_loop.py --env Hopper-v5 --steps 3000 --rounds 2 --json docs/bf16-loop.json

Part 1, the loop: a TD3 run (the paper's settings, `--learning-starts` env steps of warm-up,
then one update per env step) is built as train.py builds it and stepped for `--steps` env
steps with `--precision fp32` and `bf16`, rounds alternating which goes first; each phase of
an env step after the warm-up is timed: acting (the policy's forward and noise), the env step,
storing the transition, sampling the batch, and the update. Part 2, the update: the torch
profiler's self time of one update in each precision, summed by kind of op (matmuls, casts,
elementwise, optimizer, the rest). One torch thread; wall clock (perf_counter) medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents import td3  # noqa: E402
from core import config as cfglib  # noqa: E402
from training import OffPolicyTrainer  # noqa: E402

PHASES = ("act", "env", "store", "sample", "update")
KINDS = {
    "matmul": ("mm", "bmm", "addmm", "baddbmm", "matmul", "linear"),
    "casts": ("copy_", "_to_copy", "to"),
    "optimizer": ("_fused_adam_", "lerp_", "Adam", "zero_grad"),
}


class Timed:
    """Wraps obj.name so each call's wall time adds to `totals[phase]`."""

    def __init__(self, totals: dict, phase: str, obj, name: str):
        inner = getattr(obj, name)

        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                totals[phase] += time.perf_counter() - start

        setattr(obj, name, call)


def trainer(env: str, steps: int, learning_starts: int, precision: str, folder: Path):
    module_cfg = td3.Config(learning_starts=learning_starts)
    run_cfg = cfglib.RunConfig(agent="td3", env=env, seed=0, total_steps=steps,
                               precision=precision, threads=1)  # fmt: skip
    return OffPolicyTrainer(run_cfg, module_cfg, folder, "off")


def loop_round(env: str, steps: int, learning_starts: int, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = trainer(env, steps, learning_starts, precision, Path(tmp))
        t.begin(None)
        for _ in range(learning_starts):  # the warm-up, untimed
            t.obs = t.collect(t.obs, _Quiet())
        totals = dict.fromkeys(PHASES, 0.0)
        Timed(totals, "act", t.agent, "act")
        Timed(totals, "env", t.envs, "step")
        Timed(totals, "store", t.buffer, "add")
        Timed(totals, "sample", t, "sample_batch")
        Timed(totals, "update", t.agent, "update")
        start = time.perf_counter()
        n = steps - learning_starts
        for _ in range(n):
            t.obs = t.collect(t.obs, _Quiet())
            t.learn()
        total = time.perf_counter() - start
        t.close()
    out = {phase: 1e3 * value / n for phase, value in totals.items()}
    out["other"] = 1e3 * total / n - sum(out.values())
    out["step_ms"] = 1e3 * total / n
    return out


class _Quiet:
    def add_scalar(self, *args, **kwargs):
        pass


def update_profile(env: str, precision: str, updates: int = 20) -> dict:
    """Self milliseconds per update by kind of op."""
    from torch.profiler import profile

    with tempfile.TemporaryDirectory() as tmp:
        t = trainer(env, 10_000, 300, precision, Path(tmp))
        t.begin(None)
        for _ in range(300):
            t.obs = t.collect(t.obs, _Quiet())
        batch = t.sample_batch()
        for _ in range(5):
            with t.autocast:
                t.agent.update(batch)
        with profile() as prof:
            for _ in range(updates):
                with t.autocast:
                    t.agent.update(batch)
        t.close()
    kinds = dict.fromkeys([*KINDS, "elementwise and the rest"], 0.0)
    for event in prof.key_averages():
        name = event.key.split("::")[-1].split("#")[-1].split(".")[0]
        kind = next((k for k, names in KINDS.items() if name in names), None)
        if event.key.startswith(("aten::", "Optimizer")):
            kinds[kind or "elementwise and the rest"] += event.self_cpu_time_total / 1e3 / updates
    return {k: round(v, 3) for k, v in kinds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = {"fp32": [], "bf16": []}
    for r in range(args.rounds):
        order = ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")
        for precision in order:
            result = loop_round(args.env, args.steps, args.learning_starts, precision)
            rounds[precision].append(result)
            print(precision, {k: round(v, 3) for k, v in result.items()}, flush=True)
    medians = {p: {k: round(statistics.median(r[k] for r in rs), 3) for k in rs[0]}
               for p, rs in rounds.items()}  # fmt: skip
    profiles = {p: update_profile(args.env, p) for p in ("fp32", "bf16")}
    loop_gain = medians["fp32"]["step_ms"] / medians["bf16"]["step_ms"]
    update_gain = medians["fp32"]["update"] / medians["bf16"]["update"]
    print("median ms per env step:", medians)
    print("update profile, self ms per update by kind:", profiles)
    print(f"bf16 gain: loop {loop_gain:.2f}x, update alone {update_gain:.2f}x")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "medians_ms": medians,
                    "rounds": rounds,
                    "update_profile_ms": profiles,
                    "loop_gain": round(loop_gain, 3),
                    "update_gain": round(update_gain, 3),
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
