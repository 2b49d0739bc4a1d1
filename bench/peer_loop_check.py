"""Issue 18, item 6: our training loop against SB3's, transition by transition, with every
random draw shared, so that any difference left is the loops' own.

    python bench/peer_loop_check.py --algo tqc --seed 2 --steps 3000

The same agent (ours, from the same initial weights) learns in two loops: train.py's (ours)
and SB3's off-policy loop around our update (peer_learning.hybrid_class, the `hybrid` side of
the learning comparison). Every source of randomness is made the same on both sides:
- the warm-up's uniform actions come from one pre-drawn array (ours: envs.random_actions;
  SB3: action_space.sample);
- both act with our agent (SB3's predict is routed to agent.act), so the exploration noise is
  torch's global RNG, drawn in the same order (act, then the update's draws), seeded alike
  at the loop's start;
- both sample the replay with numpy's global RNG, np.random.randint(0, size, batch) (SB3's own
  call; ours replaces its buffer's Generator for this check), seeded alike;
- the envs start from reset(seed), SB3's action scaling (the identity on [-1, 1] up to float
  rounding, (a + 1) - 1) is made the exact identity, and ours starts updating once
  learning_starts + 1 transitions are stored, as SB3 does (docs/peer-parity.md item 7), while
  still acting at random for learning_starts steps only (SAC ties the two together).
If the two loops do the same thing, the stored transitions and the weights after the last
update agree exactly (or to float rounding); the first transition that differs is where they
part. Our loop also evaluates (10 deterministic episodes every --eval-every steps, as the
learning runs do) and checkpoints on its 120 s timer, so neither is left out. Prints the
differences at a few steps and the first step beyond 1e-5.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_learning  # noqa: E402
import peer_update_check as check  # noqa: E402

import train  # noqa: E402
import training.off_policy  # noqa: E402
from agents import get_agent_module  # noqa: E402
from agents.buffer import ReplayBuffer  # noqa: E402
from envs import make_env  # noqa: E402


def initial_agent(algo: str, cfg, seed: int):
    env = make_env(check.ENV)
    torch.manual_seed(seed)
    return get_agent_module(algo).Agent(cfg, env.observation_space, env.action_space, "cpu")


def uniform_draw(buffer: ReplayBuffer, batch_size: int) -> np.ndarray:
    """SB3's draw, np.random.randint over the filled rows (uniform sampling only)."""
    return np.random.randint(0, len(buffer), size=batch_size)


def run_ours(algo: str, seed: int, steps: int, warmup: np.ndarray, init: dict,
             eval_every: int | None = None,
             overrides: list[str] | None = None) -> dict:  # fmt: skip
    """train.py's loop with the shared draws (and its evaluations of 10 deterministic episodes
    every `eval_every` steps, as in the learning runs); its stored transitions and weights.
    `overrides`: train.py arguments on top of the algorithm's (both loops must get the same)."""
    stored, held = [], {}
    add = ReplayBuffer.add
    begin = training.off_policy.OffPolicyTrainer.begin

    def recording_add(self, obs, actions, rewards, next_obs, *rest, **kwargs):
        stored.append((np.float32(obs[0]), np.float32(actions[0]), float(np.float32(rewards[0]))))
        return add(self, obs, actions, rewards, next_obs, *rest, **kwargs)

    def seeded_begin(self, writer):
        # Uniform actions for the first learning_starts steps, as SB3 (and the learning runs):
        # SAC ties its warm-up to learning_starts, which this check moves one step later.
        object.__setattr__(self.agent_cfg, "random_steps", warm)
        self.agent.load_state_dict(copy.deepcopy(init))
        torch.manual_seed(seed)
        np.random.seed(seed)
        held["agent"] = self.agent
        return begin(self, writer)

    def shared_random_actions(space, rng, n):
        k = len(stored)
        return warmup[k : k + n]

    _, cfg = check.our_config(algo, extra=overrides)
    warm = cfg.learning_starts
    extra = [*(overrides or []), "--set", f"learning_starts={cfg.learning_starts + 1}",
             "--progress", "off", "--checkpoint-every", str(10 * steps)]  # fmt: skip
    argv = peer_learning.our_args(algo, seed, steps, eval_every or steps, 10, extra)
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.object(ReplayBuffer, "add", recording_add),
        mock.patch.object(ReplayBuffer, "_draw", uniform_draw),
        mock.patch.object(training.off_policy.OffPolicyTrainer, "begin", seeded_begin),
        mock.patch.object(training.off_policy, "random_actions", shared_random_actions),
    ):
        code = train.main([*argv, "--run-dir", str(Path(tmp) / "run")])
    if code != 0:
        raise SystemExit(f"train.py exited with {code}")
    return {"stored": stored, "agent": held["agent"]}


def run_sb3_loop(algo: str, seed: int, steps: int, warmup: np.ndarray, init: dict,
                 overrides: list[str] | None = None) -> dict:  # fmt: skip
    """SB3's loop around our update with the shared draws (the learning comparison's hybrid)."""
    _, cfg = check.our_config(algo, extra=overrides)
    agent = initial_agent(algo, cfg, seed)
    agent.load_state_dict(copy.deepcopy(init))
    env = make_env(check.ENV)
    kwargs = {**check.sb3_kwargs(algo, cfg, agent.action_dim, seed), "buffer_size": steps}
    model = peer_learning.hybrid_class(algo, agent)("MlpPolicy", env, **kwargs)
    check.copy_weights(agent, model)
    drawn = iter(warmup)
    model.action_space.sample = lambda: next(drawn)
    model.predict = lambda obs, deterministic=False, **kw: (agent.act(obs, deterministic), None)
    model.policy.scale_action = model.policy.unscale_action = lambda a: a
    torch.manual_seed(seed)
    np.random.seed(seed)
    model.learn(steps)
    buf = model.replay_buffer
    stored = [(buf.observations[t, 0].astype(np.float32), buf.actions[t, 0],
               float(buf.rewards[t, 0])) for t in range(steps)]  # fmt: skip
    return {"stored": stored, "agent": agent}


def transition_diffs(ours: dict, theirs: dict, steps: int) -> list[float]:
    """Per step, the max abs difference of the stored observation, action and reward."""

    def diff(t: int) -> float:
        (o1, a1, r1), (o2, a2, r2) = ours["stored"][t], theirs["stored"][t]
        return max(float(np.abs(o1 - o2).max()), float(np.abs(a1 - a2).max()), abs(r1 - r2))

    return [diff(t) for t in range(steps)]


def weight_diff(agent, other) -> float:
    """Max abs difference over the actor, critics, target critics and temperature."""
    worst = 0.0
    for name in ("actor", "critic", "critic_target", "temperature"):
        mine, theirs = getattr(agent, name), getattr(other, name)
        for p, q in zip(mine.parameters(), theirs.parameters(), strict=True):
            worst = max(worst, check.max_diff(p.detach(), q.detach()))
    return worst


def compare(ours: dict, theirs: dict, steps: int) -> str:
    diffs = transition_diffs(ours, theirs, steps)
    first = next((t for t, d in enumerate(diffs) if d > 1e-5), None)
    marks = sorted({m for m in (0, 255, 256, 257, 300, 500, 1000, 2000, steps - 1) if m < steps})
    lines = [
        f"transitions stored: ours {len(ours['stored'])}, SB3's loop {len(theirs['stored'])}",
        f"updates: ours {ours['agent'].updates}, SB3's loop {theirs['agent'].updates}",
    ]
    lines += [f"  step {t + 1}: max abs difference (obs, action, reward) {diffs[t]:.3g}"
              for t in marks]  # fmt: skip
    lines.append(f"first step beyond 1e-5: {'none' if first is None else first + 1}")
    lines.append("weights after the last update: max abs difference "
                 f"{weight_diff(ours['agent'], theirs['agent']):.3g}")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["tqc", "sac"], default="tqc")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=1000, help="our loop's evaluations")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, cfg = check.our_config(args.algo)
    init = copy.deepcopy(initial_agent(args.algo, cfg, args.seed).state_dict())
    warmup = np.random.default_rng(args.seed).uniform(-1, 1, (cfg.learning_starts + 1, 6))
    warmup = warmup.astype(np.float32)
    ours = run_ours(args.algo, args.seed, args.steps, warmup, init, args.eval_every)
    theirs = run_sb3_loop(args.algo, args.seed, args.steps, warmup, init)
    print(compare(ours, theirs, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
