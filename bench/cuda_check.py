"""The CUDA paths, checked on a machine with a GPU (the development machine has none).

    python bench/cuda_check.py --out cuda_check.json            # all of it
    python bench/cuda_check.py --part checks    # 1-4 only (e.g. while other runs share the GPU)
    python bench/cuda_check.py --part offline   # the offline agents of 1 only
    python bench/cuda_check.py --part speed     # 5 only (run it alone on the GPU)
    python bench/cuda_check.py --part capture   # 6 only (issue 23: --cuda-graph)
    python bench/cuda_check.py --part procgen   # 7 only (issue 20: the pixel agents)

1. train.py with --device cuda for every online agent (TD3, classic SAC, SAC+SimBa, TQC,
   REValueD on discretised Hopper), in fp32, in bf16 (--precision bf16), and TD3 with its
   compiled losses (--set compile=true): each run must finish and write a checkpoint; the
   fp32 runs also measure critic bias. The offline agents (TD3+BC, PRDC, SPOT) train on a
   small generated hopper-medium-v5 (20k transitions) on the GPU.
2. A checkpoint written on the GPU, loaded on the CPU, acts like the GPU copy
   (largest action difference over 256 observations).
3. A GPU run resumed on the CPU (--resume RUN --device cpu) continues to its new step count.
4. Determinism on the GPU: two runs with the same seed, largest parameter difference.
5. Update-only throughput on the GPU (batch 256, CUDA-synchronised), fp32 and bf16, at the
   sizes of the speed benchmark and at the papers' sizes (REValueD: 3-step samples, 3 bins).
6. The captured update (--cuda-graph, agents/graphs.py): train.py runs of every capturable
   online agent (and TD3 in bf16, and compiled + captured); the captured update against the
   eager one from the same weights on the same batches where the update draws no random
   numbers (TD3 with policy_noise 0, REValueD): largest parameter difference after 40
   updates; and updates/s eager, compiled, captured, compiled + captured (bar: single-seed TD3
   with capture >= 900 updates/s).
7. Procgen (issue 20): PPO and pixel REValueD (the coinrun preset) on procgen:coinrun with
   --device cuda, fp32 and bf16 (REValueD's fp32 run with the bias harness on restored
   Procgen states); their GPU checkpoints against CPU copies on 256 random uint8 frames
   (largest output difference: PPO's logits, REValueD's utilities; share of equal greedy
   actions); a GPU run resumed on the CPU; two equal-seed GPU runs (largest parameter
   difference). PPO's frames/s on the GPU is bench/procgen_gpu.sh's.

Each check prints one line and is recorded in the JSON; a failing check does not stop the
others, and the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents import get_agent_module  # noqa: E402
from agents.buffer import ReplayBuffer  # noqa: E402
from agents.graphs import capture_update  # noqa: E402
from agents.nets import native_bf16, update_autocast  # noqa: E402
from envs import make_env, random_actions  # noqa: E402

# name -> train.py arguments (short Pendulum runs: updates start at step 300).
AGENTS = {
    "td3": ["--agent", "td3", "--set", "learning_starts=300"],
    "sac-mlp": ["--agent", "sac", "--arch", "mlp", "--set", "learning_starts=300"],
    "sac-simba": ["--agent", "sac", "--set", "learning_starts=300"],
    "tqc": ["--agent", "tqc", "--set", "n_critics=2", "--set", "critic_hidden=[256,256]"],
    "revalued": [
        "--agent",
        "revalued",
        "--env",
        "Hopper-v5",
        "--bins",
        "3",
        "--set",
        "learning_starts=300",
        "--set",
        "hidden=[64]",
        "--set",
        "n_members=5",
    ],
}
# Pixel agents on Procgen: tiny runs (4 envs; PPO 32-step rollouts in 4 minibatches, REValueD
# updating from frame 256 out of a 4k-transition buffer), 10 training levels.
PROCGEN_FRAMES = 1024
PROCGEN = {
    "ppo": ["--agent", "ppo", "--set", "num_steps=32", "--set", "minibatches=4"],
    "revalued": ["--config", "configs/revalued/procgen-coinrun-cpu.yaml",
                 "--set", "learning_starts=256", "--set", "buffer_size=4096"],
}  # fmt: skip
PROCGEN_COMMON = ["--env", "procgen:coinrun", "--train-levels", "10", "--num-envs", "4"]
# Offline agents: gradient updates on a small dataset (made on the GPU machine first).
DATASET = "hopper-medium-v5"
DATASET_SIZE = 20_000
OFFLINE = {
    "td3_bc": ["--agent", "td3_bc", "--dataset", DATASET],
    "prdc": ["--agent", "prdc", "--dataset", DATASET],
    "spot": ["--agent", "spot", "--dataset", DATASET, "--set", "vae_steps=2000"],
}
# name -> (agent, config overrides) for the throughput table.
SIZES = {
    "td3 256-256": ("td3", {}),
    "sac mlp 256-256": ("sac", {"arch": "mlp", "critic_hidden": [256, 256],
                                "actor_hidden": [256, 256]}),
    "sac simba paper (critic 2x512, actor 1x128)": ("sac", {}),
    "tqc 2x25 256-256": ("tqc", {"n_critics": 2, "critic_hidden": [256, 256]}),
    "tqc paper (5x25, 512x3)": ("tqc", {}),
    "revalued -cpu (5 x 64)": ("revalued", {"hidden": [64], "n_members": 5}),
    "revalued paper (10 x 512)": ("revalued", {}),
}  # fmt: skip

results: dict[str, dict] = {}


def record(name: str, fn, *args) -> None:
    """Run one check, print its line and keep its result (a failure is a result too)."""
    start = time.perf_counter()
    try:
        results[name] = {"ok": True, **(fn(*args) or {})}
    except Exception as exc:  # a broken path is a result here, not a crash
        results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc()
    results[name]["seconds"] = round(time.perf_counter() - start, 1)
    print(f"{name}: {json.dumps(results[name])}", flush=True)


DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def train(run_dir: Path, args: list[str], steps: int = 1200, seed: int = 0) -> None:
    env = [] if "--env" in args or "--dataset" in args else ["--env", "Pendulum-v1"]
    argv = [sys.executable, str(REPO / "train.py"), *env, *args,
            "--total-steps", str(steps), "--eval-every", str(steps), "--eval-episodes", "2",
            "--progress", "off", "--threads", "1", "--seed", str(seed),
            "--run-dir", str(run_dir)]  # fmt: skip
    if "--device" not in args:
        argv += ["--device", DEVICE]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"train.py exited {proc.returncode}: {proc.stderr.strip()[-400:]}")


def final_state(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "final.pt", map_location="cpu", weights_only=True)
    return ckpt["agent_state"]


def max_diff(a, b) -> float:
    if isinstance(a, torch.Tensor):
        if a.is_floating_point():
            return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
        return 0.0 if torch.equal(a, b) else float("inf")
    if isinstance(a, dict):
        return max((max_diff(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        return max((max_diff(x, y) for x, y in zip(a, b)), default=0.0)
    return 0.0 if a == b else float("inf")


def hopper_agent_and_buffer(agent_name: str, overrides: dict, seed: int = 0):
    """An agent for Hopper-v5 (3 bins for REValueD) on DEVICE and 10k random transitions."""
    module = get_agent_module(agent_name)
    cfg = module.Config()
    for key, value in overrides.items():
        setattr(cfg, key, value)
    env = make_env("Hopper-v5", bins=3 if agent_name == "revalued" else 0)
    rng = np.random.default_rng(0)
    n = 10_000
    obs = rng.standard_normal((n, 11)).astype(np.float32)
    acts = random_actions(env.action_space, rng, n).astype(np.float32)
    buffer = ReplayBuffer.from_arrays(
        obs, acts, rng.standard_normal(n).astype(np.float32), obs[::-1].copy(),
        np.zeros(n, bool), np.zeros(n, bool),
    )  # fmt: skip
    torch.manual_seed(seed)
    agent = module.Agent(cfg, env.observation_space, env.action_space, torch.device(DEVICE))
    return agent, cfg, buffer


def update_rate(
    agent_name: str, overrides: dict, precision: str, updates: int, capture: bool = False
) -> float:
    agent, cfg, buffer = hopper_agent_and_buffer(agent_name, overrides)
    n_step = getattr(cfg, "n_step", 1)
    if capture:
        capture_update(agent, torch.device(DEVICE))
    autocast = update_autocast(DEVICE, precision == "bf16")  # as the Trainer's
    with autocast:
        for _ in range(20):
            agent.update(buffer.sample(256, n_step=n_step, gamma=cfg.gamma, device=DEVICE))
        sync()
        start = time.perf_counter()
        for _ in range(updates):
            agent.update(buffer.sample(256, n_step=n_step, gamma=cfg.gamma, device=DEVICE))
        sync()
    return updates / (time.perf_counter() - start)


def same_actions_on_cpu(run: Path) -> dict:
    import evaluate

    gpu_agent, env = evaluate.load_agent(run, None, DEVICE)[:2]
    cpu_agent = evaluate.load_agent(run, None, "cpu")[0]
    obs_dim = env.observation_space.shape[0]
    obs = np.random.default_rng(1).standard_normal((256, obs_dim)).astype(np.float32)
    diff = np.abs(gpu_agent.act(obs, True) - cpu_agent.act(obs, True)).max()
    if diff > 1e-4:
        raise AssertionError(f"actions differ by {diff}")
    return {"max_action_diff": float(diff)}


def pixel_outputs(agent, frames: np.ndarray) -> torch.Tensor:
    """What a pixel agent acts on: PPO's logits, REValueD's utilities (fp32, on the CPU)."""
    with torch.no_grad():
        if hasattr(agent, "net"):
            return agent.net(agent._obs(frames))[0].float().cpu()
        obs = torch.as_tensor(frames, device=agent.device)
        return agent.utilities(agent.critic, obs).cpu()


def same_pixel_outputs_on_cpu(run: Path) -> dict:
    import evaluate

    gpu_agent = evaluate.load_agent(run, None, DEVICE)[0]
    cpu_agent = evaluate.load_agent(run, None, "cpu")[0]
    frames = np.random.default_rng(1).integers(0, 256, (256, 64, 64, 3), dtype=np.uint8)
    out_gpu, out_cpu = pixel_outputs(gpu_agent, frames), pixel_outputs(cpu_agent, frames)
    diff = float((out_gpu - out_cpu).abs().max())
    same = float((gpu_agent.act(frames, True) == cpu_agent.act(frames, True)).mean())
    if diff > 1e-2:  # TF32 convolutions on the GPU round at about 1e-3
        raise AssertionError(f"outputs differ by {diff}")
    return {"max_output_diff": diff, "same_greedy_actions": same}


def run_procgen(tmp: Path) -> None:
    # bf16 where its kernels are native (a --device cpu try-out on an AVX2 CPU: fp32 only)
    precisions = ("fp32", "bf16") if native_bf16(torch.device(DEVICE)) else ("fp32",)
    for name, agent_args in PROCGEN.items():
        for precision in precisions:
            bias = ["--bias-every", "1024", "--bias-states", "8"]
            bias = bias if name == "revalued" and precision == "fp32" else []
            argv = [*agent_args, *PROCGEN_COMMON, "--precision", precision, *bias]
            record(f"train procgen {name} {precision}", train, tmp / f"procgen-{name}-{precision}",
                   argv, PROCGEN_FRAMES)  # fmt: skip
        record(f"gpu checkpoint acts the same on cpu: procgen {name}", same_pixel_outputs_on_cpu,
               tmp / f"procgen-{name}-fp32")  # fmt: skip
        record(f"gpu run resumed on cpu: procgen {name}", resume_on_cpu,
               tmp / f"procgen-{name}-fp32", 2 * PROCGEN_FRAMES)  # fmt: skip
        record(f"determinism on gpu: procgen {name}", determinism, tmp, f"procgen-{name}",
               [*agent_args, *PROCGEN_COMMON], PROCGEN_FRAMES)  # fmt: skip


def resume_on_cpu(run: Path, steps: int = 1500) -> dict:
    argv = [sys.executable, str(REPO / "train.py"), "--resume", str(run), "--device", "cpu",
            "--total-steps", str(steps), "--progress", "off"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip()[-400:])
    summary = json.loads((run / "summary.json").read_text())
    if summary["env_steps"] != steps:
        raise AssertionError(f"resumed run stopped at {summary['env_steps']}")
    return {"env_steps_after_resume": summary["env_steps"]}


def determinism(tmp: Path, name: str, argv: list[str] | None = None, steps: int = 800) -> dict:
    """Two runs with the same seed (AGENTS[name] unless `argv`): largest parameter difference."""
    runs = [tmp / f"det-{name}-{i}" for i in range(2)]
    for run in runs:
        train(run, AGENTS[name] if argv is None else argv, steps=steps, seed=3)
    return {"max_param_diff": max_diff(*(final_state(r) for r in runs))}


def run_checks(tmp: Path) -> None:
    for name, agent_args in AGENTS.items():
        for precision in ("fp32", "bf16"):
            # The bias harness measures during the fp32 runs (Q on the GPU, rollouts on CPU).
            bias = ["--bias-every", "600", "--bias-states", "8"] if precision == "fp32" else []
            argv = [*agent_args, "--precision", precision, *bias]
            record(f"train {name} {precision}", train, tmp / f"{name}-{precision}", argv)
    argv = [*AGENTS["td3"], "--set", "compile=true"]
    record("train td3 compiled", train, tmp / "td3-compiled", argv)
    for name in AGENTS:
        record(f"gpu checkpoint acts the same on cpu: {name}", same_actions_on_cpu,
               tmp / f"{name}-fp32")  # fmt: skip
    record("gpu run resumed on cpu", resume_on_cpu, tmp / "sac-mlp-fp32")
    for name in ("td3", "sac-mlp", "tqc", "revalued"):
        record(f"determinism on gpu: {name}", determinism, tmp, name)


def run_offline_checks(tmp: Path) -> None:
    os.environ["OGZOO_DATASETS"] = str(tmp / "datasets")  # never the user's datasets
    make = [sys.executable, "-m", "datagen", "make", DATASET, "--size", str(DATASET_SIZE)]
    made = subprocess.run(make, cwd=REPO, capture_output=True, text=True)
    if made.returncode != 0:
        results["make dataset"] = {"ok": False, "error": made.stderr.strip()[-400:]}
        return
    for name, agent_args in OFFLINE.items():
        record(f"train {name} offline fp32", train, tmp / name, [*agent_args, "--bias-every", "600",
               "--bias-states", "8"], 1200)  # fmt: skip
        record(f"gpu checkpoint acts the same on cpu: {name}", same_actions_on_cpu, tmp / name)


def run_speed(updates: int) -> None:
    for label, (agent_name, overrides) in SIZES.items():
        for precision in ("fp32", "bf16"):
            rate = lambda a=agent_name, o=overrides, p=precision: {  # noqa: E731
                "updates_per_s": round(update_rate(a, o, p, updates), 1)
            }
            record(f"updates/s on gpu: {label} {precision}", rate)


def captured_matches_eager(agent_name: str, overrides: dict, updates: int = 40) -> dict:
    """The same weights, the same batches, an update that draws no random numbers: captured
    and eager parameters after `updates` updates."""
    states = []
    for capture in (False, True):
        agent, cfg, buffer = hopper_agent_and_buffer(agent_name, overrides, seed=1)
        if capture:
            capture_update(agent, torch.device(DEVICE))
        buffer._rng = np.random.default_rng(7)  # the same batch indices for both
        for _ in range(updates):
            agent.update(buffer.sample(256, n_step=getattr(cfg, "n_step", 1), gamma=cfg.gamma,
                                       device=DEVICE))  # fmt: skip
        sync()
        states.append(agent.state_dict())
    diff = max_diff(*states)
    if diff > 1e-4:
        raise AssertionError(f"captured and eager parameters differ by {diff}")
    return {"max_param_diff": diff}


def run_capture(tmp: Path, updates: int) -> None:
    for name in ("td3", "sac-mlp", "sac-simba", "tqc", "revalued"):
        record(f"train {name} captured", train, tmp / f"{name}-captured",
               [*AGENTS[name], "--cuda-graph"])  # fmt: skip
    record("train td3 captured bf16", train, tmp / "td3-captured-bf16",
           [*AGENTS["td3"], "--cuda-graph", "--precision", "bf16"])  # fmt: skip
    record("train td3 compiled and captured", train, tmp / "td3-compiled-captured",
           [*AGENTS["td3"], "--cuda-graph", "--set", "compile=true"])  # fmt: skip
    record("gpu run captured, resumed on cpu", resume_on_cpu, tmp / "revalued-captured")
    record("captured = eager: td3 (policy_noise 0)", captured_matches_eager, "td3",
           {"policy_noise": 0.0})  # fmt: skip
    record("captured = eager: revalued -cpu", captured_matches_eager, "revalued",
           {"hidden": [64], "n_members": 5})  # fmt: skip
    for label in ("td3 256-256", "sac mlp 256-256", "tqc 2x25 256-256", "revalued -cpu (5 x 64)"):
        agent_name, overrides = SIZES[label]
        variants = {"eager": (False, {}), "captured": (True, {})}
        if agent_name == "td3":
            variants |= {"compiled": (False, {"compile": True}),
                         "compiled + captured": (True, {"compile": True})}  # fmt: skip
        for variant, (capture, extra) in variants.items():
            rate = lambda a=agent_name, o={**overrides, **extra}, c=capture: {  # noqa: E731
                "updates_per_s": round(update_rate(a, o, "fp32", updates, capture=c), 1)
            }
            record(f"updates/s on gpu: {label} fp32 {variant}", rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="cuda_check.json")
    parser.add_argument("--updates", type=int, default=300, help="timed updates per size")
    parser.add_argument(
        "--part", choices=["all", "checks", "offline", "speed", "capture", "procgen"], default="all"
    )
    parser.add_argument("--device", default="cuda", help="cpu only to try this script out")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    torch.set_num_threads(1)  # as train.py; more threads only contend on a shared CPU
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run this on a machine with a GPU", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    results["device"] = {"ok": True, "name": name, "torch": torch.__version__}
    tmp = Path(tempfile.mkdtemp(prefix="cuda_check-"))
    if args.part in ("all", "checks"):
        run_checks(tmp)
    if args.part in ("all", "checks", "offline"):
        run_offline_checks(tmp)
    if args.part in ("all", "speed"):
        run_speed(args.updates)
    if args.part in ("all", "capture"):
        run_capture(tmp, args.updates)
    if args.part in ("all", "procgen"):
        run_procgen(tmp)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
