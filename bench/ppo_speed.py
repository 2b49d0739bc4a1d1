"""PPO loop throughput on Procgen: ours (channels-last, bf16 update) vs plain fp32 channels-first.

    python bench/ppo_speed.py                          # coinrun easy, 200 levels, 4 rounds
    python bench/ppo_speed.py --rounds 3 --num-envs 16 --num-steps 64 --epochs 3 --minibatches 4
    python bench/ppo_speed.py --device cuda --num-envs 64 --num-steps 256 --minibatches 8
    python bench/ppo_speed.py --rounds 3 --compile     # and ours with --set compile=true

One round = one iteration of the on-policy loop, `OnPolicyTrainer.advance` of
training/on_policy.py itself (no copy of it): `num_steps` steps of every env with
`policy_step`, reward scaling and GAE, then `agent.update` (epochs x minibatches gradient
steps) inside the trainer's autocast. frames/s = frames collected (num_envs x num_steps) / the
round's wall time; "update" is the time inside `agent.update`, "acting" the rest of the round
(policy_step, env steps, reward scaling, GAE, the batch's tensors). The variants, each an
OnPolicyTrainer on the same game, levels, seed and batch shape:
- ours:  PPO as `train.py --agent ppo --precision bf16` runs it (fp32 where the CPU has no
         native bfloat16 kernels, --ours-precision): ImpalaCNN(channels_last=True),
         the update under bf16 autocast (acting stays fp32, as in the loop);
- plain: the same network, loss and optimizer run plainly: `--set channels_last=false` and
         `--precision fp32`, i.e. fp32 eager convolutions in the default channels-first layout.
Both start from the same initial weights (same seed); their rollouts then differ as their
policies do. Rounds alternate the variants (and which goes first) so that background load hits
both alike; one untimed warm-up round each first (oneDNN kernel selection, allocations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents import ppo  # noqa: E402
from agents.nets import resolve_precision  # noqa: E402
from core import config as cfglib  # noqa: E402
from training.on_policy import OnPolicyTrainer  # noqa: E402

VARIANTS = {  # name -> (channels_last, precision)
    "ours": (True, "bf16"),
    "plain": (False, "fp32"),
}
BASE = "plain"


class NullWriter:
    """What advance() logs episode ends to; the bench keeps no TensorBoard events."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass


class TimedUpdate:
    """agent.update, accumulating the seconds spent inside it (device work included)."""

    def __init__(self, update, sync):
        self.update, self.sync, self.seconds = update, sync, 0.0

    def __call__(self, batch):
        start = time.perf_counter()
        metrics = self.update(batch)
        self.sync()
        self.seconds += time.perf_counter() - start
        return metrics


def make_trainer(args, channels_last: bool, precision: str, run_dir: Path, sync,
                 compile: bool = False):  # fmt: skip
    """An OnPolicyTrainer (nothing written to run_dir) with its update timed, envs reset;
    `compile`: PPO's minibatch loss under torch.compile (`--set compile=true`)."""
    run_cfg = cfglib.apply_overrides(cfglib.RunConfig(), {
        "agent": "ppo", "env": f"procgen:{args.game}", "seed": args.seed,
        "distribution_mode": "easy", "train_levels": args.levels, "num_envs": args.num_envs,
        "device": args.device, "threads": args.threads, "precision": precision,
    }, "run config")  # fmt: skip
    agent_cfg = cfglib.apply_overrides(ppo.Config(), {
        "channels_last": channels_last, "num_steps": args.num_steps, "epochs": args.epochs,
        "minibatches": args.minibatches, "compile": compile,
    }, "ppo config")  # fmt: skip
    trainer = OnPolicyTrainer(run_cfg, agent_cfg, run_dir, progress="off")
    trainer.timer = TimedUpdate(trainer.agent.update, sync)
    trainer.agent.update = trainer.timer  # the instance attribute shadows the method
    trainer.begin(NullWriter())
    return trainer


def run_round(trainer, sync) -> dict:
    """One timed loop iteration: {'frames', 'seconds', 'update_s', 'acting_s', 'fps'}."""
    trainer.timer.seconds = 0.0
    sync()
    start = time.perf_counter()
    frames = trainer.advance(NullWriter())
    sync()
    seconds = time.perf_counter() - start
    update = trainer.timer.seconds
    return {"frames": frames, "seconds": seconds, "update_s": update,
            "acting_s": seconds - update, "fps": frames / seconds}  # fmt: skip


def summarize(records: dict[str, list[dict]], base: str = BASE) -> dict[str, dict]:
    """Per variant: median frames/s, its ratio to `base`'s median, the rounds' range, and the
    median seconds of acting and of updating per round with the update's share of the round."""
    out = {}
    base_fps = statistics.median(r["fps"] for r in records[base])
    for name, rounds in records.items():
        fps = [r["fps"] for r in rounds]
        acting = statistics.median(r["acting_s"] for r in rounds)
        update = statistics.median(r["update_s"] for r in rounds)
        out[name] = {
            "median_fps": statistics.median(fps),
            "min_fps": min(fps),
            "max_fps": max(fps),
            "ratio": statistics.median(fps) / base_fps,
            "acting_s": acting,
            "update_s": update,
            "update_share": update / (acting + update),
        }
    return out


def round_order(index: int, names: list[str]) -> list[str]:
    """Which variant runs first alternates from round to round (ABBA...), so a slow drift in
    the background load does not favour one of them."""
    return names if index % 2 == 0 else names[::-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per variant")
    parser.add_argument("--game", default="coinrun")
    parser.add_argument("--levels", type=int, default=200, help="training levels (easy mode)")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=64, help="rollout length per env")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", default="", help="also write the rounds and summary here")
    parser.add_argument("--ours-precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="ours' update: auto is bf16 where the device has native bfloat16 "
                        "kernels, else fp32 (agents.nets.native_bf16)")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="also time ours with its loss compiled (variant 'comp')")  # fmt: skip
    args = parser.parse_args()
    device = torch.device(args.device)
    args.ours_precision = resolve_precision(args.ours_precision, device)
    variants = {**VARIANTS, "ours": (VARIANTS["ours"][0], args.ours_precision)}
    if args.compile:  # ours again, its loss compiled
        variants["comp"] = (*variants["ours"], True)
    print(f"ours: channels-last, {args.ours_precision} update", flush=True)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = list(variants)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: make_trainer(args, *flags[:2], Path(tmp) / name, sync, *flags[2:])
                    for name, flags in variants.items()}  # fmt: skip
        batch = args.num_envs * args.num_steps
        print(f"procgen:{args.game} easy, {args.levels} levels; {args.num_envs} envs x "
              f"{args.num_steps} steps = {batch} frames per round, {args.epochs} epochs x "
              f"{args.minibatches} minibatches; {args.device}, {args.threads} torch thread(s); "
              f"load average {load_before[0]:.2f}", flush=True)  # fmt: skip
        for name in names:
            warm = run_round(trainers[name], sync)
            print(f"warm-up {name}: {warm['fps']:.1f} frames/s (not counted)", flush=True)
        records: dict[str, list[dict]] = {name: [] for name in names}
        for index in range(args.rounds):
            line = []
            for name in round_order(index, names):
                rec = run_round(trainers[name], sync)
                records[name].append(rec)
                line.append(f"{name} {rec['fps']:6.1f} (acting {rec['acting_s']:5.2f}s, "
                            f"update {rec['update_s']:5.2f}s)")  # fmt: skip
            print(f"round {index}: " + "  ".join(line) + "  frames/s", flush=True)
        for trainer in trainers.values():
            trainer.close()

    load_after = os.getloadavg()
    summary = summarize(records)
    print(f"median frames/s (ratio to {BASE}); median seconds per round acting / updating:")
    for name, s in summary.items():
        print(f"  {name:6s} {s['median_fps']:7.1f} ({s['min_fps']:.1f}-{s['max_fps']:.1f})  "
              f"x{s['ratio']:.2f}   acting {s['acting_s']:.2f}s / update {s['update_s']:.2f}s "
              f"({100 * s['update_share']:.0f}% updating)")  # fmt: skip
    print(f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "rounds": records, "summary": summary,
            "load_before": load_before, "load_after": load_after,
        }, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
