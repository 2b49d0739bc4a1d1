"""Procgen (Cobbe et al. 2020) as a vector env with train / held-out level splits.

`ProcgenVecEnv("procgen:coinrun", num_envs, seed)` wraps one `procgen.ProcgenGym3Env`: its C++
threads step every env of the vector, so there is no Python loop over envs. The interface is
`envs.VecEnv`'s (`observation_space`, `action_space`, `reset(seed)`, `step(actions)` ->
`StepResult`, `sim_states()`, `close()`); observations are uint8 64 x 64 x 3 frames, actions
one of 15 discrete buttons.

Levels. A level is an int32 seed; Procgen draws each new episode's seed uniformly from
[start_level, start_level + num_levels). The generalization protocol (openai/train-procgen)
trains on `num_levels` 200 (easy) / 500 (hard) from level 0 and tests on `num_levels=0`,
which in Procgen means every seed in [0, 2^31 - 1) *whatever start_level is* (vecgame.cpp
ignores start_level then), so that stream contains the training levels with probability
N / 2^31 per episode. `ProcgenVecEnv.held_out(...)` therefore draws by default from every
seed above the training range, [S + N, 2^31 - 1): the same uniform stream with the training
levels removed; `full_stream=True` gives the protocol's exact `num_levels=0`, and
`num_levels=M` a disjoint finite range of M levels. `level_seeds()` reports the level each env
is on (Procgen's info `level_seed`), `finished_levels` the levels of the episodes that ended
at the last step (info `prev_level_seed`).

Episode ends (game.cpp, Game::step): an episode is done when the game ends it (death, or the
level completed: info `prev_level_complete` = 1) or when its step counter reaches the game's
timeout (1000 steps; bigfish 6000, bossfight and plunder 4000, leaper and maze 500, jumper
2000 in memory mode), read here from the env's own state. Procgen has no timeout flag, so a
done episode is `truncated` when it reached the timeout without completing the level and
`terminated` otherwise (a death on exactly the timeout step counts as truncated). Procgen
resets inside its C++ step and renders only the new level's first frame: the last frame of an
ended episode is never produced, so `next_obs` of an ended env is that first frame, like `obs`
(`final_obs_available = False`); bootstrapping a truncated episode from it would be wrong, so
the off-policy loop stores such an end as terminal (training/off_policy.py), and PPO's GAE
treats every end alike.

Sim states: `sim_states()` is one bytes object per env (Procgen's `get_state`, ~37 KB, plus
this wrapper's episode return, length and current frame); `set_sim_states(states)` restores
them and returns the frames, after which the same actions give the same observations. A
procgen build without `get_state` (before 0.10.5) still plays: every end is then terminated
(the timeout is read from the state), saving or restoring a state is a UserError naming the
fix, and the first env built says so once on stderr (`saves_states` False).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from core.errors import UserError, quote
from envs.gym_envs import StepResult

PREFIX = "procgen:"
GAMES = (
    "bigfish",
    "bossfight",
    "caveflyer",
    "chaser",
    "climber",
    "coinrun",
    "dodgeball",
    "fruitbot",
    "heist",
    "jumper",
    "leaper",
    "maze",
    "miner",
    "ninja",
    "plunder",
    "starpilot",
)
TRAIN_LEVELS = {"easy": 200, "hard": 500}  # the protocol's training levels per mode
MAX_SEED = 2**31 - 1  # level seeds are int32: a range's end start + num may not exceed this
OBS_SHAPE = (64, 64, 3)
NUM_ACTIONS = 15
_COUNTERS = struct.Struct("<dq")  # this wrapper's part of a sim state: return, length
_OBS_BYTES = int(np.prod(OBS_SHAPE))


def import_procgen():
    """procgen's ProcgenGym3Env, or a one-line UserError naming the fix."""
    try:
        from procgen import ProcgenGym3Env
    except ImportError as exc:
        raise UserError(
            f"procgen is not installed ({exc}): {procgen_fix(sys.version_info)}"
        ) from None
    return ProcgenGym3Env


def procgen_saves_states() -> bool:
    """Whether the installed procgen can save and restore states (get_state / set_state,
    procgen 0.10.5 on); UserError where procgen is not installed."""
    return hasattr(import_procgen(), "get_state")


def procgen_fix(version: tuple[int, ...]) -> str:
    """What installs procgen under Python `version` (major, minor, ...): procgen2 0.10.7 is a
    CPython 3.11 wheel, so elsewhere the fix is a 3.11 environment first (the Makefile skips
    procgen there)."""
    if tuple(version[:2]) != (3, 11):
        return (f"procgen2 0.10.7 is a Python 3.11 wheel and this is Python "
                f"{version[0]}.{version[1]}: make the environment with python3.11 "
                "(rm -rf .venv && make PYTHON=python3.11 test)")  # fmt: skip
    return "run make test, which installs procgen2 0.10.7 with --no-deps (Makefile)"


HELD_OUT_CHOICES = "above, stream or START:COUNT"


def held_out_levels(which: str) -> dict:
    """ProcgenVecEnv.held_out's level arguments for a held-out side named by `which`: 'above'
    (every level above the training range, the default), 'stream' (the protocol's
    num_levels=0 stream, training levels included by chance) or 'START:COUNT' (COUNT levels
    from START, disjoint from the training range: held_out checks it). ValueError otherwise."""
    if which == "above":
        return {}
    if which == "stream":
        return {"full_stream": True}
    start, sep, count = which.partition(":")
    if sep and start.isdigit() and count.isdigit() and int(count) > 0:
        return {"start_level": int(start), "num_levels": int(count)}
    raise ValueError(f"held-out levels must be {HELD_OUT_CHOICES} (COUNT >= 1), got {quote(which)}")


def procgen_spaces() -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    """Every game's (observation space, action space), known without building an env."""
    return gym.spaces.Box(0, 255, OBS_SHAPE, np.uint8), gym.spaces.Discrete(NUM_ACTIONS)


def is_procgen_id(env_id: str) -> bool:
    return env_id.startswith(PREFIX)


def procgen_game(env_id: str) -> str:
    """'procgen:coinrun' -> 'coinrun'; ValueError for any other id."""
    game = env_id[len(PREFIX) :] if is_procgen_id(env_id) else None
    if game not in GAMES:
        raise ValueError(
            f"unknown Procgen env id {quote(env_id)}: use procgen:<game>, game one of "
            f"{', '.join(GAMES)}"
        )
    return game


@dataclass(frozen=True)
class LevelSplit:
    """Level seeds [start_level, start_level + num_levels); num_levels 0 is Procgen's full
    stream, every seed in [0, 2^31 - 1) (start_level then has no effect)."""

    start_level: int
    num_levels: int

    @property
    def low(self) -> int:
        return 0 if self.num_levels == 0 else self.start_level

    @property
    def high(self) -> int:
        return MAX_SEED if self.num_levels == 0 else self.start_level + self.num_levels

    def contains(self, seeds: np.ndarray) -> np.ndarray:
        seeds = np.asarray(seeds, dtype=np.int64)
        return (seeds >= self.low) & (seeds < self.high)


def check_split(mode: str, start_level: int, num_levels: int) -> None:
    """One-line ValueError for a bad distribution mode or level range."""
    if mode not in TRAIN_LEVELS:
        raise ValueError(f"Procgen distribution mode must be easy or hard, got {quote(mode)}")
    for name, value in (("start_level", start_level), ("num_levels", num_levels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"Procgen {name} must be an integer >= 0, got {quote(value)}")
    if start_level + num_levels > MAX_SEED:
        raise ValueError(
            f"Procgen levels [{start_level}, {start_level + num_levels}) pass the largest "
            f"level seed {MAX_SEED}"
        )


def state_header(state: bytes) -> dict[str, int]:
    """The leading fields of a Procgen state (Game::serialize in game.cpp: version, game name,
    12 option ints, 5 level ints, two RNG strings, then reward, flags, timeout, seeds, ...)."""
    offset = 0

    def read_int() -> int:
        nonlocal offset
        (value,) = struct.unpack_from("<i", state, offset)
        offset += 4
        return value

    def read_string() -> bytes:
        nonlocal offset
        size = read_int()
        offset += size
        return state[offset - size : offset]

    version = read_int()
    game = read_string().decode()
    options = [read_int() for _ in range(12)]
    _grid_step, seed_low, seed_high, _game_type, _game_n = (read_int() for _ in range(5))
    for _ in range(2):  # level_seed_rand_gen, rand_gen: is_seeded + the generator as text
        read_int()
        read_string()
    offset += 4  # the last reward (float)
    _done, _complete, _action, timeout, level_seed, prev_level_seed = (read_int() for _ in range(6))
    offset += 4 * 3 + 4  # episodes_remaining, episode_done, last_reward_timer; last_reward
    offset += 4 * 2  # default_action, fixed_asset_seed
    cur_time = read_int()
    return {
        "version": version,
        "game": game,
        "distribution_mode": options[7],
        "seed_low": seed_low,
        "seed_high": seed_high,
        "timeout": timeout,
        "level_seed": level_seed,
        "prev_level_seed": prev_level_seed,
        "cur_time": cur_time,
    }


class ProcgenVecEnv:
    """`num_envs` Procgen games of one kind stepped together by Procgen's threads, with
    automatic reset, on the level split `split` (see the module docstring)."""

    final_obs_available = False  # an ended episode's last frame is never rendered

    _said_no_states = False  # the note on a build without state save/restore: once a process

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int,
        mode: str = "easy",
        num_levels: int | None = None,
        start_level: int = 0,
        num_threads: int = 4,
    ):
        """Training levels by default: `num_levels` (200 easy / 500 hard) from `start_level`;
        `num_levels=0` is Procgen's full stream. `seed` picks the sequence of levels."""
        self.game = procgen_game(env_id)
        num_levels = TRAIN_LEVELS.get(mode, 0) if num_levels is None else num_levels
        check_split(mode, start_level, num_levels)
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {num_threads}")
        self._make = import_procgen()
        self.env_id = env_id
        self.mode = mode
        self.split = LevelSplit(int(start_level), int(num_levels))
        self.num_envs = num_envs
        self.num_threads = num_threads
        self.seed = seed
        self.observation_space, self.action_space = procgen_spaces()
        self.finished_levels: list[int] = []  # the level of each episode in the last `finished`
        self._env = None
        self.reset(seed)
        try:
            state = self._env.callmethod("get_state")[0]
        except AttributeError:  # a procgen build without state save/restore (before 0.10.5)
            self.timeout, self.saves_states = None, False
            if not ProcgenVecEnv._said_no_states:
                ProcgenVecEnv._said_no_states = True
                print("note: this procgen build has no get_state/set_state: every episode end "
                      "counts as terminated (no timeout to tell truncations by), and Procgen "
                      "states cannot be restored (no critic bias on Procgen); procgen2 0.10.7 "
                      "has them", file=sys.stderr)  # fmt: skip
        else:
            self.timeout, self.saves_states = state_header(state)["timeout"], True

    @classmethod
    def held_out(
        cls,
        env_id: str,
        num_envs: int,
        seed: int,
        mode: str = "easy",
        train_levels: int | None = None,
        train_start: int = 0,
        num_levels: int = 0,
        start_level: int | None = None,
        full_stream: bool = False,
        num_threads: int = 4,
    ) -> ProcgenVecEnv:
        """Evaluation levels none of which is in the training range [train_start, train_start
        + train_levels) (train_levels defaults to the mode's 200 / 500): with `num_levels` 0
        every seed above it, [train_start + train_levels, 2^31 - 1); with `num_levels` M > 0,
        M levels from `start_level` (default: the first after the training range). With
        `full_stream` the protocol's exact num_levels=0 stream, training levels included
        (each episode one with probability train_levels / 2^31)."""
        train_levels = TRAIN_LEVELS.get(mode, 0) if train_levels is None else train_levels
        check_split(mode, train_start, train_levels)
        train_end = train_start + train_levels
        if full_stream:
            return cls(env_id, num_envs, seed, mode, 0, 0, num_threads)
        start = train_end if start_level is None else start_level
        check_split(mode, start, num_levels)
        if num_levels == 0:
            num_levels = MAX_SEED - start
            if num_levels == 0:
                raise ValueError(f"no Procgen level seeds above {start}")
        if start < train_end and start + num_levels > train_start:
            raise ValueError(
                f"held-out levels [{start}, {start + num_levels}) overlap the training "
                f"levels [{train_start}, {train_end})"
            )
        return cls(env_id, num_envs, seed, mode, num_levels, start, num_threads)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Fresh episodes in all envs. Procgen has no reset: the vector is built again with
        `seed` (default: the constructor's) as its level-sampling seed, so one seed always
        gives the same levels in the same order."""
        seed = self.seed if seed is None else seed
        if self._env is not None:
            self._env.close()
        self._env = self._make(
            num=self.num_envs,
            env_name=self.game,
            distribution_mode=self.mode,
            num_levels=self.split.num_levels,
            start_level=self.split.start_level,
            rand_seed=int(seed) % (MAX_SEED + 1),
            num_threads=self.num_threads,
        )
        _, ob, _ = self._env.observe()
        self._obs = ob["rgb"]
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self.finished_levels = []
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions).reshape(-1)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got shape {actions.shape}")
        if actions.min() < 0 or actions.max() >= NUM_ACTIONS:
            raise ValueError(f"Procgen actions must be in [0, {NUM_ACTIONS}), got {actions}")
        self._env.act(actions.astype(np.int32))
        rewards, ob, first = self._env.observe()  # first: this frame begins a new episode
        self._obs = ob["rgb"]
        rewards = rewards.astype(np.float32)
        self._returns += rewards
        self._lengths += 1
        ended = first.astype(bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        finished = []
        self.finished_levels = []
        if ended.any():  # the info dicts are built in Python: read them only when needed
            info = self._env.get_info()
            complete = np.array([d["prev_level_complete"] for d in info], dtype=bool)
            if self.timeout is not None:
                truncated = ended & (self._lengths >= self.timeout) & ~complete
            for i in np.flatnonzero(ended):
                finished.append((float(self._returns[i]), int(self._lengths[i])))
                self.finished_levels.append(int(info[i]["prev_level_seed"]))
            self._returns[ended] = 0.0
            self._lengths[ended] = 0
        return StepResult(
            obs=self._obs.copy(),
            next_obs=self._obs.copy(),  # ended envs: the new episode's first frame (see top)
            rewards=rewards,
            terminated=ended & ~truncated,
            truncated=truncated,
            finished=finished,
        )

    def level_seeds(self) -> np.ndarray:
        """The level seed each env is playing now (N int64)."""
        return np.array([d["level_seed"] for d in self._env.get_info()], dtype=np.int64)

    def current_levels(self) -> None:
        """No level ids to restore states in: a Procgen state carries its own level."""
        return None

    def sim_states(self) -> list[bytes]:
        """One opaque state per env: episode return and length, current frame, Procgen's own
        state (game, level, RNGs, step counter)."""
        self._check_saves_states()
        states = self._env.callmethod("get_state")
        return [
            _COUNTERS.pack(self._returns[i], self._lengths[i]) + self._obs[i].tobytes() + states[i]
            for i in range(self.num_envs)
        ]

    def set_sim_states(self, states: list[bytes]) -> np.ndarray:
        """Restore states from `sim_states()` (same game and vector size); returns the frames
        to act from. Procgen does not render on restore, so the frame travels in the state."""
        self._check_saves_states()
        if len(states) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} sim states, got {len(states)}")
        head = _COUNTERS.size
        for state in states:  # a wrong game or format aborts the process inside Procgen
            try:
                game = state_header(state[head + _OBS_BYTES :])["game"]
            except (struct.error, UnicodeDecodeError, TypeError):
                game = None
            if game != self.game:
                raise ValueError(f"not a sim state of a {self.game} ProcgenVecEnv")
        for i, state in enumerate(states):
            self._returns[i], self._lengths[i] = _COUNTERS.unpack_from(state)
        frames = [np.frombuffer(s[head : head + _OBS_BYTES], np.uint8) for s in states]
        self._env.callmethod("set_state", [s[head + _OBS_BYTES :] for s in states])
        self._obs = np.stack(frames).reshape(self.num_envs, *OBS_SHAPE)
        return self._obs.copy()

    def _check_saves_states(self) -> None:
        if not self.saves_states:
            raise UserError("this procgen build cannot save or restore states (no get_state): "
                            "install procgen2 0.10.7 (make test) to measure the critic's bias "
                            "on Procgen")  # fmt: skip

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
