"""Throughput, ours vs Stable-Baselines3, in one process, one torch thread.

    python bench/speed.py --algo td3 --env Hopper-v5 --rounds 3
    python bench/speed.py --algo sac --mode update      # ours (--arch mlp) vs SB3 SAC
    python bench/speed.py --algo tqc --mode update      # ours vs sb3-contrib TQC (2 x 25)
    python bench/speed.py --algo tqc --mode update --compile   # and ours compiled

Two measurements, both with the same 256-256 networks and batch 256 (TQC: 2 critics x 25
quantiles, 2 dropped per critic, as sb3-contrib's defaults); "sb3" names the peer (SB3 for TD3
and SAC, sb3-contrib for TQC):
- loop:   the full training loop with one update per env step (act, env step, store, sample,
          update), after a short random warm-up; ours is train.py's Trainer (its final
          evaluation episode and checkpoint included in our time), SB3's is `model.learn`.
          updates/s = gradient updates / wall time of the whole run.
- update: the update alone (replay sampling included) on a buffer filled with the same
          transitions for both libraries.
Rounds alternate ours/SB3 so that background load hits both alike; the median round is
reported. Install the peers with `pip install -e .[bench]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import get_agent_module  # noqa: E402
from agents.buffer import ReplayBuffer  # noqa: E402
from agents.nets import update_autocast  # noqa: E402
from envs import make_env, random_actions  # noqa: E402

BATCH = 256


def collect(env_id: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """n random-policy transitions (the same for both libraries)."""
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    data = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")}
    for _ in range(n):
        action = random_actions(env.action_space, rng, 1)[0]
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(data, (obs, action, reward, next_obs, terminated, truncated)):
            data[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return {k: np.asarray(v) for k, v in data.items()}


# Each entry: our agent and its train.py arguments; the peer's class and constructor keywords
# (a function of the env, for action noise); all with 256-256 networks and batch 256.
def _sb3(name: str):
    if name == "TQC":
        from sb3_contrib import TQC

        return TQC
    import stable_baselines3

    return getattr(stable_baselines3, name)


def _td3_peer(env) -> dict:
    from stable_baselines3.common.noise import NormalActionNoise

    dim = env.action_space.shape[0]
    return {"action_noise": NormalActionNoise(np.zeros(dim), 0.1 * np.ones(dim))}


SPECS = {
    "td3": {
        "ours": ["--agent", "td3"],
        "peer": ("TD3", lambda env: {"policy_kwargs": {"net_arch": [256, 256]}}),
        "loop_peer": _td3_peer,
    },
    "sac": {
        # Classic SAC, as SB3 implements it: 256-256, Adam 3e-4, auto temperature from 1.
        "ours": ["--agent", "sac", "--arch", "mlp"],
        "peer": ("SAC", lambda env: {"policy_kwargs": {"net_arch": [256, 256]}}),
    },
    "tqc": {
        # sb3-contrib's default size: 2 critics x 25 quantiles, 256-256, drop 2 per critic.
        "ours": ["--agent", "tqc", "--set", "n_critics=2", "--set", "critic_hidden=[256,256]"],
        # Both loops take uniform-random actions during the warm-up, as SB3 does.
        "warmup_keys": ["learning_starts", "random_steps"],
        "peer": (
            "TQC",
            lambda env: {
                "policy_kwargs": {"net_arch": [256, 256], "n_critics": 2, "n_quantiles": 25},
                "top_quantiles_to_drop_per_net": 2,
            },
        ),
    },
}


def our_args(algo: str, env_id: str, run_dir: str, steps: int, warmup: int, precision: str):
    import train

    loop = {
        "env": env_id, "total-steps": steps, "eval-every": 10**9, "eval-episodes": 1,
        "checkpoint-every": 10**9, "progress": "off", "run-dir": run_dir, "device": "cpu",
        "threads": 1, "utd": 1, "precision": precision,
    }  # fmt: skip
    sets = {"buffer_size": 100_000, "batch_size": BATCH}
    for key in SPECS[algo].get("warmup_keys", ["learning_starts"]):
        sets[key] = warmup
    argv = list(SPECS[algo]["ours"])
    for flag, value in loop.items():
        argv += [f"--{flag}", str(value)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    return train.build_parser().parse_args(argv)


def peer_model(algo: str, env, buffer_size: int, warmup: int, loop: bool):
    name, kwargs = SPECS[algo]["peer"]
    extra = SPECS[algo].get("loop_peer", lambda env: {})(env) if loop else {}
    return _sb3(name)(
        "MlpPolicy", env, learning_rate=3e-4, buffer_size=buffer_size, batch_size=BATCH,
        learning_starts=warmup, train_freq=1, gradient_steps=1, device="cpu", seed=0,
        **kwargs(env), **extra,
    )  # fmt: skip


def ours_update(algo: str, env_id: str, data: dict, precision: str = "fp32",
                compile: bool = False):  # fmt: skip
    import dataclasses

    from training import launch

    with tempfile.TemporaryDirectory() as tmp:
        _, cfg = launch.resolve_config(our_args(algo, env_id, f"{tmp}/run", 1, 0, "fp32"))
    cfg = dataclasses.replace(cfg, compile=compile)
    env = make_env(env_id)
    agent = get_agent_module(SPECS[algo]["ours"][1]).Agent(
        cfg, env.observation_space, env.action_space, "cpu"
    )
    buffer = ReplayBuffer.from_arrays(
        data["obs"],
        data["actions"],
        data["rewards"],
        data["next_obs"],
        data["terminated"],
        data["truncated"],
    )

    autocast = update_autocast("cpu", precision == "bf16")  # as the Trainer's

    def run(updates: int) -> None:
        for _ in range(updates):
            with autocast:  # what train.py --precision bf16 wraps around each update
                agent.update(buffer.sample(BATCH, gamma=cfg.gamma))

    return run


def peer_update(algo: str, env_id: str, data: dict):
    from stable_baselines3.common.logger import configure

    env = make_env(env_id)
    model = peer_model(algo, env, len(data["obs"]) + 1, 0, loop=False)
    rb = model.replay_buffer
    for i in range(len(data["obs"])):
        # SB3 stores time-limit truncations via the TimeLimit.truncated info key.
        done = bool(data["terminated"][i] or data["truncated"][i])
        info = [{"TimeLimit.truncated": bool(data["truncated"][i] and not data["terminated"][i])}]
        rb.add(
            data["obs"][i][None],
            data["next_obs"][i][None],
            data["actions"][i][None],
            np.array([data["rewards"][i]]),
            np.array([done]),
            info,
        )
    model.set_logger(configure(None, [""]))

    def run(updates: int) -> None:
        model.train(gradient_steps=updates, batch_size=BATCH)

    return run


def ours_loop(algo: str, env_id: str, steps: int, warmup: int, precision: str):
    from training import launch

    with tempfile.TemporaryDirectory() as tmp:
        args = our_args(algo, env_id, f"{tmp}/run", steps, warmup, precision)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer = launch.prepare_new_run(args)
            start = time.perf_counter()
            trainer.train()
            elapsed = time.perf_counter() - start
        return trainer.counters["gradient_updates"], elapsed


def peer_loop(algo: str, env_id: str, steps: int, warmup: int, precision: str = "fp32"):
    model = peer_model(algo, make_env(env_id), 100_000, warmup, loop=True)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model._n_updates, time.perf_counter() - start


def report(title: str, speeds: dict[str, list[float]]) -> None:
    print(title)
    sb3 = statistics.median(speeds["sb3"])
    for name, values in speeds.items():
        rounds = ", ".join(f"{s:.0f}" for s in values)
        median = statistics.median(values)
        print(f"  {name:10s} {median:7.1f} updates/s  {median / sb3:5.2f}x sb3  (rounds: {rounds})")


def bench_loop(args) -> None:
    ours, theirs = ours_loop, peer_loop
    speeds: dict[str, list[float]] = {"ogzoo": [], "sb3": []}
    if args.bf16:
        speeds["ogzoo-bf16"] = []
    for _ in range(args.rounds):
        runs = [("ogzoo", ours, "fp32"), ("sb3", theirs, "fp32")]
        if args.bf16:
            runs.append(("ogzoo-bf16", ours, "bf16"))
        for name, fn, precision in runs:
            updates, elapsed = fn(args.algo, args.env, args.loop_steps, args.warmup, precision)
            speeds[name].append(updates / elapsed)
    report(
        f"loop: {args.loop_steps} env steps ({args.warmup} random warm-up), one update per "
        f"step, median of {args.rounds} rounds",
        speeds,
    )


def bench_update(args) -> None:
    data = collect(args.env, args.transitions, seed=0)
    runners = {
        "ogzoo": ours_update(args.algo, args.env, data),
        "sb3": peer_update(args.algo, args.env, data),
    }
    if args.bf16:
        runners["ogzoo-bf16"] = ours_update(args.algo, args.env, data, "bf16")
    if args.compile:
        runners["ogzoo-comp"] = ours_update(args.algo, args.env, data, compile=True)
    for name, run in runners.items():
        start = time.perf_counter()
        run(100)  # warm-up: allocator, optimizer state (and torch.compile's compilation)
        print(f"  {name}: warm-up of 100 updates {time.perf_counter() - start:.1f} s")
    speeds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run(args.updates)
            speeds[name].append(args.updates / (time.perf_counter() - start))
    report(f"update only: median of {args.rounds} rounds x {args.updates} updates", speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=sorted(SPECS), default="td3")
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--mode", choices=["loop", "update", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop-steps", type=int, default=4000, help="env steps per loop round")
    parser.add_argument("--warmup", type=int, default=1000, help="random steps before updates")
    parser.add_argument("--updates", type=int, default=1000, help="updates per update round")
    parser.add_argument("--transitions", type=int, default=20_000)
    parser.add_argument("--bf16", action="store_true", help="also time ours with --precision bf16")
    parser.add_argument("--compile", action="store_true",
                        help="update mode: also time ours with --set compile=true")  # fmt: skip
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(
        f"{args.algo} on {args.env}, batch {BATCH}, 256-256 networks, 1 torch thread, torch "
        f"{torch.__version__}"
    )
    if args.mode in ("loop", "both"):
        bench_loop(args)
    if args.mode in ("update", "both"):
        bench_update(args)


if __name__ == "__main__":
    main()
