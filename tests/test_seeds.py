"""Several seeds in one process (training/seeds.py) against single-seed runs.

- The stacked update: K agents updated together on the same batches as K agents updated
  alone agree within 1e-5 relative after 100 updates (TD3, SimBa SAC, TQC), and every seed's
  random stream ends where its single-seed stream ends (the same draws, in the same order).
- End to end (tiny Pendulum runs through train.main): the threads engine gives each seed the
  run its own process gives, bit for bit (weights, optimizer moments, replay, RNG, evaluations);
  the stacked engine gives bit-identical warm-up data and buffer sampling streams and weights
  within a tolerance; one seed is the ordinary single-seed run; a group resumes as its seeds
  resume alone; bad input is one error line and writes nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import train
from agents import revalued, sac, td3, tqc
from agents.buffer import Batch
from tests.interrupt import ctrl_c_after, exit_code_of
from training import launch
from training.seeds import RngStreams, SeedStack, stack_batches

K = 3
OBS, ACT = 11, 3
CONFIGS = {
    "td3": (td3, dict(actor_hidden=[32, 32], critic_hidden=[32, 32])),
    "sac-simba": (sac, dict(actor_hidden=[16], critic_hidden=[32])),
    "tqc": (tqc, dict(actor_hidden=[32, 32], critic_hidden=[32, 32], n_critics=2,
                      n_quantiles=5, drop_per_net=1)),
    # small grad_clip: the per-seed clipping acts on every update
    "revalued": (revalued, dict(hidden=[32], n_members=3, grad_clip=0.5)),
}  # fmt: skip
BINS = 3


def spaces(module) -> tuple[gym.Space, gym.Space]:
    if module is revalued:  # discretised actions: ACT dimensions of BINS bins
        return gym.spaces.Box(-1, 1, (OBS,)), gym.spaces.MultiDiscrete([BINS] * ACT)
    return gym.spaces.Box(-1, 1, (OBS,)), gym.spaces.Box(-1, 1, (ACT,))


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as train.py's default: two are far slower beside other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def agents_and_streams(module, cfg) -> tuple[list, RngStreams]:
    """K agents built as K processes with seeds 0..K-1 would build them, and their streams."""
    streams, agents = RngStreams(), []
    for k in range(K):
        torch.manual_seed(k)
        agents.append(module.Agent(cfg, *spaces(module)))
        streams.capture()
    return agents, streams


def batches(updates: int, size: int = 32, discrete: bool = False) -> list[list[Batch]]:
    g = torch.Generator().manual_seed(123)

    def one() -> Batch:
        if discrete:
            actions = torch.randint(0, BINS, (size, ACT), generator=g)
        else:
            actions = torch.rand(size, ACT, generator=g) * 2 - 1
        return Batch(
            obs=torch.randn(size, OBS, generator=g),
            actions=actions,
            rewards=torch.randn(size, generator=g),
            next_obs=torch.randn(size, OBS, generator=g),
            terminated=(torch.rand(size, generator=g) < 0.1).float(),
            truncated=torch.zeros(size),
            discounts=torch.full((size,), 0.99),
            extras={},
            indices=torch.zeros(size, dtype=torch.long),
        )

    return [[one() for _ in range(K)] for _ in range(updates)]


def float_tensors(state, path=""):
    """(path, tensor) of every floating tensor in a nested state dict."""
    if isinstance(state, dict):
        for key, value in state.items():
            yield from float_tensors(value, f"{path}/{key}")
    elif isinstance(state, torch.Tensor) and state.is_floating_point():
        yield path, state


@pytest.mark.parametrize("name", list(CONFIGS))
def test_stacked_update_matches_each_seed_updated_alone(name):
    module, overrides = CONFIGS[name]
    cfg = module.Config(**overrides)
    data = batches(100, discrete=module is revalued)
    observations = np.random.default_rng(0).normal(size=(4, OBS)).astype(np.float32)
    alone, alone_streams = agents_and_streams(module, cfg)
    for k, agent in enumerate(alone):
        with alone_streams.use(k):  # seed k's global stream, as in its own process
            for step in data:
                if hasattr(agent, "observe"):
                    agent.observe(observations)  # SimBa's running statistics move too
                agent.update(step[k])
    together, streams = agents_and_streams(module, cfg)
    with torch.random.fork_rng():
        template = module.Agent(cfg, *spaces(module))
    stack = SeedStack(template, together, streams, module.SEED_AXIS,
                      getattr(module, "SEED_SHARED", ()))  # fmt: skip
    for step in data:
        for agent in together:
            if hasattr(agent, "observe"):
                agent.observe(observations)
        metrics = template.update(stack_batches(step))
    loss = "loss/td" if module is revalued else "loss/critic"
    assert metrics[loss].shape == (K,)  # one loss per seed
    if module is revalued:  # each seed's gradient norm, clipped alone
        assert metrics["grad_norm"].shape == (K,) and bool((metrics["grad_norm"] > 0.5).all())
    for k in range(K):
        stack.export(k)
        mine, theirs = dict(float_tensors(together[k].state_dict())), dict(
            float_tensors(alone[k].state_dict()))  # fmt: skip
        assert mine.keys() == theirs.keys() and together[k].updates == alone[k].updates == 100
        for path, ref in theirs.items():
            scale = ref.abs().max().clamp(min=1e-12)
            assert float((mine[path] - ref).abs().max() / scale) < 1e-5, path
        # the same draws in the same order: the streams end in the same state
        assert torch.equal(streams.torch[k].get_state(), alone_streams.torch[k].get_state())
    # seed k's tensors are views of the stacked storage: agent k acts with what was trained
    weight = next(together[1].critic.parameters())
    assert weight.data_ptr() == next(template.critic.parameters())[1].data_ptr()


def test_streams_swap_the_global_state_per_seed():
    streams = RngStreams()
    for seed in (5, 6):
        torch.manual_seed(seed)
        np.random.seed(seed)
        streams.capture()
    torch.manual_seed(5)
    np.random.seed(5)
    first = torch.rand(3), np.random.rand(2), torch.rand(2)
    torch.manual_seed(6)
    second = torch.rand(3)
    with streams.use(0):
        a = torch.rand(3), np.random.rand(2)
    with streams.use(1):
        b = torch.rand(3)
    with streams.use(0):  # continues seed 5's stream where it stopped
        c = torch.rand(2)
    assert torch.equal(a[0], first[0]) and np.array_equal(a[1], first[1])
    assert torch.equal(b, second) and torch.equal(c, first[2])


# ---- end to end ---------------------------------------------------------------------------
def tiny(*extra: str, total: int = 400) -> list[str]:
    return ["--agent", "td3", "--env", "Pendulum-v1", "--total-steps", str(total),
            "--eval-every", "200", "--eval-episodes", "1", "--checkpoint-every", "200",
            "--device", "cpu", "--set", "learning_starts=200", "--set", "batch_size=32",
            "--set", "actor_hidden=[32,32]", "--set", "critic_hidden=[32,32]",
            "--set", "buffer_size=5000", "--progress", "off", *extra]  # fmt: skip


def load(folder: Path, name: str = "final.pt") -> tuple[dict, dict]:
    ckpt = torch.load(folder / "checkpoints" / name, weights_only=False)
    replay = torch.load(folder / "checkpoints" / ckpt["replay_file"], weights_only=False)
    return ckpt, replay


def summary(folder: Path) -> dict:
    data = json.loads((folder / "summary.json").read_text())
    return {k: v for k, v in data.items() if k not in ("wall_time_s", "last_update_metrics")}


def assert_same_tensors(a: dict, b: dict, exact: bool = True) -> None:
    """The same floating tensors at the same paths of two agent states: none missing on either
    side, each equal (or within 1e-3 relative)."""
    mine, theirs = dict(float_tensors(a)), dict(float_tensors(b))
    assert mine
    assert sorted(mine) == sorted(theirs)
    for path, x in mine.items():
        y = theirs[path]
        if exact:
            assert torch.equal(x, y), path
        else:
            assert float((x - y).abs().max()) <= 1e-3 * float(x.abs().max()) + 1e-6, path


def assert_same_run(a: Path, b: Path, exact: bool = True) -> None:
    (ca, ra), (cb, rb) = load(a), load(b)
    assert ca["counters"]["gradient_updates"] == cb["counters"]["gradient_updates"] > 0
    assert ra["rng_state"] == rb["rng_state"]  # the buffer drew the same sampling stream
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])  # and torch the same draws
    warm = 200  # uniform-random warm-up: the same transitions bit for bit
    for key, value in ra["storage"].items():
        assert torch.equal(value[:warm], rb["storage"][key][:warm]), key
    assert_same_tensors(ca["agent_state"], cb["agent_state"], exact)
    if exact:
        for key, value in ra["storage"].items():
            assert torch.equal(value, rb["storage"][key]), key
        assert summary(a)["evals"] == summary(b)["evals"]


@pytest.fixture(scope="module")
def singles(tmp_path_factory):
    root = tmp_path_factory.mktemp("singles")
    for seed in (0, 1):
        assert train.main(tiny("--seed", str(seed), "--run-dir", str(root / f"s{seed}"))) == 0
    return root


def test_threads_engine_gives_each_seed_its_single_seed_run_bit_for_bit(tmp_path, singles):
    group = tmp_path / "group"
    argv = tiny("--seeds", "0", "1", "--seed-engine", "threads", "--threads", "2",
                "--run-dir", str(group))  # fmt: skip
    assert train.main(argv) == 0
    assert json.loads((group / "seeds.json").read_text()) == {"seeds": [0, 1]}
    for seed in (0, 1):
        assert_same_run(singles / f"s{seed}", group / f"s{seed}")
        assert (group / f"s{seed}" / "config.yaml").is_file()
        assert list((group / f"s{seed}").glob("events.out.tfevents.*"))


def test_revalued_on_the_threads_engine_is_its_single_seed_runs_bit_for_bit(tmp_path):
    """REValueD's exploration draws come from each agent's own generator: the threads engine
    keeps them, and every tensor, bit for bit."""
    argv = ["--agent", "revalued", "--env", "Pendulum-v1", "--bins", "3", "--total-steps", "300",
            "--eval-every", "300", "--eval-episodes", "1", "--device", "cpu",
            "--set", "learning_starts=150", "--set", "batch_size=32", "--set", "hidden=[32]",
            "--set", "n_members=2", "--set", "buffer_size=2000", "--progress", "off"]  # fmt: skip
    group = ["--seeds", "0", "1", "--seed-engine", "threads", "--run-dir", str(tmp_path / "g")]
    assert train.main([*argv, *group]) == 0
    for seed in (0, 1):
        assert train.main([*argv, "--seed", str(seed), "--run-dir", str(tmp_path / f"{seed}")]) == 0
        a, b = load(tmp_path / f"{seed}")[0], load(tmp_path / "g" / f"s{seed}")[0]
        assert a["agent_state"]["rng"] == b["agent_state"]["rng"]  # exploration draws
        assert_same_tensors(a["agent_state"], b["agent_state"])


def test_stacked_engine_matches_single_seed_runs(tmp_path, singles):
    group = tmp_path / "group"
    assert train.main(tiny("--seeds", "0", "1", "--seed-engine", "stacked",
                           "--run-dir", str(group))) == 0  # fmt: skip
    for seed in (0, 1):
        assert_same_run(singles / f"s{seed}", group / f"s{seed}", exact=False)
        # a seed's checkpoint holds its own tensors, not the whole stacked storage
        ckpt, _ = load(group / f"s{seed}")
        weight = ckpt["agent_state"]["critic"]["layers.0.weight"]
        assert weight.untyped_storage().nbytes() == weight.numel() * 4


def test_one_seed_is_the_ordinary_run(tmp_path, singles):
    assert train.main(tiny("--seeds", "1", "--run-dir", str(tmp_path / "one"))) == 0
    assert not (tmp_path / "one" / "seeds.json").exists()
    assert_same_run(singles / "s1", tmp_path / "one" / "s1")


def test_a_group_resumes_as_its_seeds_resume_alone(tmp_path):
    group, alone = tmp_path / "group", tmp_path / "alone"
    assert train.main(tiny("--seeds", "0", "1", "--seed-engine", "threads",
                           "--run-dir", str(group), total=300)) == 0  # fmt: skip
    for seed in (0, 1):
        assert train.main(tiny("--seed", str(seed), "--run-dir", str(alone / f"s{seed}"),
                               total=300)) == 0  # fmt: skip
    assert train.main(["--resume", str(group), "--total-steps", "500"]) == 0
    for seed in (0, 1):
        assert train.main(["--resume", str(alone / f"s{seed}"), "--total-steps", "500"]) == 0
        assert_same_run(alone / f"s{seed}", group / f"s{seed}")
        assert load(group / f"s{seed}")[0]["counters"]["resumes"] == 1
    # finished: nothing to do
    assert train.main(["--resume", str(group)]) == 0


def test_a_group_whose_seeds_stopped_apart_is_refused(tmp_path, capsys):
    group = tmp_path / "group"
    assert train.main(tiny("--seeds", "0", "1", "--run-dir", str(group), total=300)) == 0
    assert train.main(["--resume", str(group / "s1"), "--total-steps", "400"]) == 0
    capsys.readouterr()
    # flags a group's resume may not change are refused first (a group runs uncompiled)
    for change, named in ((["--set", "compile=true"], "--set compile"), (["--utd", "2"], "utd")):
        assert train.main(["--resume", str(group), *change]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot also change" in err[0] and named in err[0], err
    assert train.main(["--resume", str(group), "--total-steps", "600"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different steps" in err[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "0", "0"], "distinct"),
        (["--seeds", "0", "1", "--seed", "3"], "one way"),
        (["--num-seeds", "0"], ">= 1"),
        (["--seeds", "0", "1", "--stop-at-return", "-100"], "stop-at-return"),
        (["--seeds", "0", "1", "--seed-engine", "warp"], "seed_engine"),
        (["--seeds", "0", "1", "--agent", "ppo"], "off-policy"),
        (["--seeds", "0", "1", "--set", "compile=true"], "uncompiled"),
    ],
)  # fmt: skip
def test_bad_seed_groups_are_one_error_line_and_write_nothing(tmp_path, capsys, extra, message):
    agent = extra[extra.index("--agent") + 1] if "--agent" in extra else "td3"
    base = tiny() if agent == "td3" else ["--env", "Pendulum-v1", "--total-steps", "400"]
    argv = [*base, *extra, "--run-dir", str(tmp_path / "g")]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "g").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_ctrl_c_saves_every_seed_at_one_step_and_the_group_resumes(tmp_path, capsys):
    root = tmp_path / "group"
    args = train.build_parser().parse_args(tiny("--seeds", "0", "1", "--run-dir", str(root)))
    group = launch.prepare_new_group(args, [0, 1])
    template = group.stack.template
    # a real Ctrl-C, arriving as the 50th stacked update returns
    template.update = ctrl_c_after(50, template.update)
    assert exit_code_of(group.train) == 130
    assert f"--resume {root}" in capsys.readouterr().err
    steps = set()
    for seed in (0, 1):
        ckpt, _ = load(root / f"s{seed}", "latest.pt")
        # every seed took the 50 updates, and its checkpoint holds its own Adam moments
        assert ckpt["agent_state"]["updates"] == ckpt["counters"]["gradient_updates"] == 50
        assert float(ckpt["agent_state"]["critic_opt"]["state"][0]["step"]) == 50
        steps.add(ckpt["counters"]["env_steps"])
    assert len(steps) == 1
    assert train.main(["--resume", str(root)]) == 0
    for seed in (0, 1):
        ckpt, _ = load(root / f"s{seed}")
        assert ckpt["counters"]["env_steps"] == 400 and ckpt["counters"]["resumes"] == 1
        assert ckpt["agent_state"]["updates"] == ckpt["counters"]["gradient_updates"] == 201


def test_the_seeds_of_a_group_checkpoint_at_the_same_steps(tmp_path):
    """A wall-clock checkpoint interval is decided once per step for the whole group, so the
    seeds' latest checkpoints never fall on different steps (a kill would split them)."""
    root = tmp_path / "group"
    argv = tiny("--seeds", "0", "1", "--checkpoint-seconds", "0.3", "--checkpoint-every",
                "100000", "--run-dir", str(root))  # fmt: skip
    group = launch.prepare_new_group(train.build_parser().parse_args(argv), [0, 1])
    saved = {0: [], 1: []}
    for k, member in enumerate(group.members):
        real = member.save

        def save(name="latest.pt", real=real, k=k, member=member):
            saved[k].append(member.counters["env_steps"])
            real(name)

        member.save = save
    group.train()
    assert len(saved[0]) > 2 and saved[0] == saved[1]


class Killed(Exception):
    """Stands for a SIGKILL: nothing after it runs."""


def test_a_kill_between_two_seeds_saves_resumes_from_their_common_step(tmp_path):
    root = tmp_path / "group"
    argv = tiny("--seeds", "0", "1", "--checkpoint-every", "100", "--run-dir", str(root))
    group = launch.prepare_new_group(train.build_parser().parse_args(argv), [0, 1])
    second = group.members[1]
    real = second.save

    def save(name="latest.pt"):
        if second.counters["env_steps"] == 300:
            raise Killed  # seed 0 has saved step 300, seed 1 never will
        real(name)

    second.save = save
    with pytest.raises(Killed):
        group.train()
    ahead, behind = root / "s0" / "checkpoints", root / "s1" / "checkpoints"
    assert load(root / "s0", "latest.pt")[0]["counters"]["env_steps"] == 300
    assert load(root / "s1", "latest.pt")[0]["counters"]["env_steps"] == 200
    # seed 0 kept the checkpoint it replaced, with its replay file
    previous = torch.load(ahead / "previous.pt", weights_only=False)
    assert previous["counters"]["env_steps"] == 200 and (ahead / previous["replay_file"]).is_file()
    assert not (behind / "previous.pt").exists()
    assert train.main(["--resume", str(root)]) == 0
    finals = [load(root / f"s{seed}")[0] for seed in (0, 1)]
    for ckpt in finals:
        assert ckpt["counters"]["env_steps"] == 400 and ckpt["counters"]["resumes"] == 1
        # resumed from step 200: one evaluation per 200 steps, none repeated
        assert [e["env_steps"] for e in ckpt["evals"]] == [200, 400]
    assert finals[0]["counters"]["gradient_updates"] == finals[1]["counters"]["gradient_updates"]
    for folder in (ahead, behind):  # the finished group keeps one checkpoint and replay each
        assert not (folder / "previous.pt").exists() and len(list(folder.glob("replay-*"))) == 1
