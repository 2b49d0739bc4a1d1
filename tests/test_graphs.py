"""The CUDA-graph path of the update (agents/graphs.py, train.py --cuda-graph), on the CPU.

A CPU cannot capture a graph, so these tests check what the capture relies on and what the
wrapper itself does: an agent's `update_step` changes no Python attribute (capture freezes
Python); the phases TD3 reports; and the wrapper's bookkeeping (warm-up per phase, one graph
per phase, the static batch, the replay at the capturing call, outputs copied out) through a
stand-in whose "graph" re-runs the step on the static batch. The real capture runs in
bench/cuda_check.py on a GPU.
"""

from __future__ import annotations

import copy
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import train
from agents import graphs, revalued, sac, spot, td3, td3_bc, tqc
from agents.buffer import Batch
from tests.batches import make_batch

OBS, ACT, BINS = 5, 2, 3
AGENTS = {
    "td3": (td3, dict(actor_hidden=[16], critic_hidden=[16])),
    "td3-simba": (td3, dict(arch="simba", actor_hidden=[16], critic_hidden=[16])),
    "td3_bc": (td3_bc, dict(actor_hidden=[16], critic_hidden=[16])),
    "spot": (spot, dict(actor_hidden=[16], critic_hidden=[16], vae_steps=5, batch_size=8)),
    "sac-simba": (sac, dict(actor_hidden=[16], critic_hidden=[16])),
    "tqc": (tqc, dict(actor_hidden=[16], critic_hidden=[16], n_critics=2, n_quantiles=5,
                      drop_per_net=1)),
    "revalued": (revalued, dict(hidden=[16], n_members=3, grad_clip=0.5)),
}  # fmt: skip


def build(name: str, seed: int = 0):
    module, overrides = AGENTS[name]
    torch.manual_seed(seed)
    obs_space = gym.spaces.Box(-1, 1, (OBS,))
    if module is revalued:
        act_space = gym.spaces.MultiDiscrete([BINS] * ACT)
    else:
        act_space = gym.spaces.Box(-1, 1, (ACT,))
    agent = module.Agent(module.Config(**overrides), obs_space, act_space)
    if hasattr(agent, "fit_dataset"):  # offline: statistics of (and SPOT's VAE on) a dataset
        rng = np.random.default_rng(0)
        agent.fit_dataset(rng.normal(size=(64, OBS)).astype(np.float32),
                          rng.uniform(-1, 1, (64, ACT)).astype(np.float32))  # fmt: skip
    if hasattr(agent, "observe"):  # SimBa: running statistics to normalize with
        agent.observe(np.random.default_rng(1).normal(size=(8, OBS)))
    return agent


def batch(name: str, i: int, size: int = 8) -> Batch:
    bins = BINS if AGENTS[name][0] is revalued else 0
    terminated = (torch.arange(size) % 5 == i % 5).float()
    return make_batch(size, i, OBS, ACT, bins, terminated=terminated,
                      extras={"level": torch.full((size,), i)})  # fmt: skip


def python_state(agent) -> dict:
    return {k: v for k, v in vars(agent).items() if isinstance(v, (bool, int, float, str))}


@pytest.mark.parametrize("name", list(AGENTS))
def test_update_step_changes_no_python_attribute(name):
    agent = build(name)
    assert graphs.capturable(agent)
    for i in range(4):  # both of TD3's phases
        phase = agent.begin_update()
        before = python_state(agent)
        agent.update_step(batch(name, i), phase)
        assert python_state(agent) == before


@pytest.mark.parametrize("delay, phases", [(2, [0, 1, 0, 1]), (3, [0, 0, 1, 0, 0, 1])])
def test_td3_phase_is_whether_the_actor_steps(delay, phases):
    agent = td3.Agent(td3.Config(policy_delay=delay), gym.spaces.Box(-1, 1, (OBS,)),
                      gym.spaces.Box(-1, 1, (ACT,)))  # fmt: skip
    assert [agent.begin_update() for _ in phases] == [bool(p) for p in phases]


def same(a, b) -> bool:
    """Nested states equal: tensors bit for bit, everything else by ==."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


class Emulated(graphs.CapturedStep):
    """A CPU stand-in for capture: recording leaves the agent and the random state as they were
    (as capture runs nothing), replaying runs the step on the static batch into the recorded
    output tensors."""

    def __init__(self, agent):
        super().__init__(agent)
        self.agent, self.recorded, self.warmed = agent, [], []

    def arm(self):
        pass  # a CPU steps no capturable unfused Adam (REValueD's): test_a_resume_below

    def warm(self, batch, phase):
        self.warmed.append(phase)
        return self.step(batch, phase)

    def record(self, phase):
        self.recorded.append(phase)
        saved, rng = copy.deepcopy(self.agent.state_dict()), torch.get_rng_state()
        out = {k: torch.zeros_like(v) for k, v in self.step(self.static, phase).items()}
        self.agent.load_state_dict(saved)
        torch.set_rng_state(rng)

        def replay():
            for k, v in self.step(self.static, phase).items():
                out[k].copy_(v)

        return replay, out


@pytest.mark.parametrize("name", ["td3", "sac-simba", "revalued"])
def test_the_wrapper_gives_the_eager_updates(name):
    eager, captured = build(name), build(name)
    captured.update_step = step = Emulated(captured)
    n = 2 * graphs.WARMUP + 6
    torch.manual_seed(7)  # the losses' noise: the same stream for both
    eager_metrics = [eager.update(batch(name, i)) for i in range(n)]
    torch.manual_seed(7)
    captured_metrics = [captured.update(batch(name, i)) for i in range(n)]
    # Every update ran once: the same parameters, and every call's own metrics (copied out,
    # not overwritten by later replays).
    assert same(eager.state_dict(), captured.state_dict())
    for m_eager, m_captured in zip(eager_metrics, captured_metrics, strict=True):
        assert m_eager.keys() == m_captured.keys()
        assert all(torch.equal(m_eager[k], m_captured[k]) for k in m_eager)
    phases = sorted(set(step.calls), key=str)
    assert step.recorded == phases  # one graph per phase, recorded once
    assert sorted(step.warmed, key=str) == sorted(phases * graphs.WARMUP, key=str)


def test_a_batch_of_another_shape_is_refused():
    static = batch("td3", 0)
    with pytest.raises(ValueError, match="one shape and dtype"):
        graphs.copy_into(static, batch("td3", 1, size=4))
    graphs.copy_into(static, batch("td3", 1))
    assert torch.equal(static.obs, batch("td3", 1).obs)
    assert torch.equal(static.extras["level"], batch("td3", 1).extras["level"])


def tiny_run(tmp_path, name: str, *extra: str) -> list[str]:
    return ["--agent", "td3", "--env", "Pendulum-v1", "--total-steps", "350",
            "--set", "learning_starts=300", "--set", "actor_hidden=[16]",
            "--set", "critic_hidden=[16]", "--eval-every", "350", "--eval-episodes", "1",
            "--progress", "off", "--run-dir", str(tmp_path / name), *extra]  # fmt: skip


def test_on_the_cpu_the_flag_says_so_and_trains_as_without_it(tmp_path, capsys):
    assert train.main(tiny_run(tmp_path, "plain")) == 0
    assert train.main(tiny_run(tmp_path, "graph", "--cuda-graph")) == 0
    assert "--cuda-graph: nothing to capture on cpu" in capsys.readouterr().out

    def final(name):
        path = tmp_path / name / "checkpoints" / "final.pt"
        return torch.load(path, weights_only=True)["agent_state"]["critic"]

    plain, graph = final("plain"), final("graph")
    assert all(torch.equal(plain[k], graph[k]) for k in plain)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--agent", "ppo", "--env", "CartPole-v1", "--set", "encoder=mlp"],
         "ppo has no capturable update"),
        (["--num-seeds", "2"], "several seeds in one process update uncaptured"),
    ],
)  # fmt: skip
def test_what_cannot_be_captured_is_one_error_line(tmp_path, capsys, args, message):
    assert train.main([*args, "--cuda-graph", "--run-dir", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "r").exists()


def test_a_resume_steps_uncaptured_whatever_the_checkpoint_saved(tmp_path):
    """A captured run's checkpoint holds capturable=True; resumed without capture (on a CPU)
    REValueD's unfused Adam would refuse to step."""
    args = ["--agent", "revalued", "--env", "Pendulum-v1", "--bins", "3", "--set", "hidden=[16]",
            "--set", "n_members=2", "--set", "learning_starts=100", "--set", "batch_size=32",
            "--eval-every", "200", "--eval-episodes", "1", "--progress", "off",
            "--run-dir", str(tmp_path / "r")]  # fmt: skip
    assert train.main([*args, "--total-steps", "200"]) == 0
    for path in (tmp_path / "r" / "checkpoints").glob("[fl]*.pt"):  # final.pt, latest.pt
        ckpt = torch.load(path, weights_only=False)
        for group in ckpt["agent_state"]["opt"]["param_groups"]:
            group["capturable"] = True  # as a captured GPU run saves it
        torch.save(ckpt, path)
    assert train.main(["--resume", str(tmp_path / "r"), "--total-steps", "300"]) == 0
    # One env, utd 1: an update after each env step k >= learning_starts (100) once the buffer
    # holds a batch (k >= 32): k = 100..200 before the resume (101), k = 201..300 after (100),
    # the resumed steps drawing on the 200 restored transitions.
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert (summary["env_steps"], summary["resumes"], summary["gradient_updates"]) == (300, 1, 201)
    final = torch.load(tmp_path / "r" / "checkpoints" / "final.pt", weights_only=False)
    groups = final["agent_state"]["opt"]["param_groups"]
    assert groups and all(group["capturable"] is False for group in groups)
