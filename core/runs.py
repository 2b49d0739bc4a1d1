"""Run folders and checkpoints.

A run folder:
    config.yaml                 resolved run + agent config
    summary.json                last/best evaluation, counters, wall time
    events.out.tfevents.*       TensorBoard
    checkpoints/latest.pt       agent, optimizers, counters, RNG states, name of its replay file
    checkpoints/replay-<N>.pt   replay buffer at env step N (the one latest.pt names)
    checkpoints/final.pt        written when training completes (same format as latest.pt)
    checkpoints/first-save.pending  there only while a run's first checkpoint is being written

Every file is written to a temporary name, fsynced, moved into place with os.replace and its
folder fsynced (`atomic_write`), so a crash never leaves a half-written checkpoint under its
final name, and a write that returned survives a crash. latest.pt is replaced only after the
replay file it names is durable, and older replay files are removed only after latest.pt is.
A kill between the first replay file and the first latest.pt leaves first-save.pending beside
that replay file: the run saved nothing whole, so it may start again (training/launch.py).
"""

from __future__ import annotations

import json
import math
import os
import uuid
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import gymnasium as gym
import torch
import yaml

from core.errors import UserError, clip

CHECKPOINT_FORMAT = "ogzoo-checkpoint-1"


def fsync_dir(folder: Path) -> None:
    """Make the entries of `folder` durable: after a rename, the new name survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


FIRST_SAVE_PENDING = "first-save.pending"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """`write(f)` into a temporary file beside `path`, which then becomes `path` durably: the
    file is fsynced, renamed over `path`, and the folder fsynced, so once this returns the new
    contents survive a crash, and before it returns `path` holds the old contents or, if the
    rename reached the disk, the new ones, whole. A failed write leaves no temporary behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")  # unique: no two writers
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def check_output(path: str | Path, flag: str, folder: bool = False, parents: bool = False) -> None:
    """UserError, before anything is written, unless `path` (given as `flag`) can be written:
    a file where no folder is (with `folder`: a folder where no file is), in a folder that
    exists. Where the writer makes the missing folders above (`parents`, and every folder
    output: TensorBoard's writer makes them), no file may stand in their place."""
    path = Path(path)
    try:
        if path.exists() and path.is_dir() != folder:
            raise UserError(f"{flag} {path} is a " + ("file; give a folder" if folder else
                                                      "folder; give a file name"))  # fmt: skip
        above = next(p for p in path.parents if p.exists()) if parents or folder else path.parent
        if not above.is_dir():
            problem = "is a file" if above.exists() else "does not exist"
            raise UserError(f"{flag} {path}: folder {above} {problem}")
    except OSError as exc:  # e.g. a name too long for the file system
        raise UserError(f"{flag} {clip(str(path))}: {exc.strerror or exc}") from None


def finite_or_none(data: Any) -> Any:
    """`data` with every non-finite float (NaN, +-inf) replaced by None, through dicts, lists
    and tuples: JSON has no such numbers, so null stands for them."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


def write_json(path: Path, data: dict) -> None:
    """Strict JSON (null where a number is not finite), written atomically."""
    atomic_write_text(path, json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n")


def write_yaml(path: Path, data: dict) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def space_signature(observation_space: gym.Space, action_space: gym.Space) -> dict:
    """What a checkpoint must match to be used in an env: space kinds and shapes."""

    def sig(space: gym.Space) -> dict:
        out: dict[str, Any] = {"kind": type(space).__name__, "shape": list(space.shape or ())}
        if isinstance(space, gym.spaces.Discrete):
            out["n"] = int(space.n)
        if isinstance(space, gym.spaces.MultiDiscrete):
            out["nvec"] = [int(v) for v in space.nvec]
        return out

    return {"observation": sig(observation_space), "action": sig(action_space)}


def torch_load(path: Path, what: str) -> Any:
    """torch.load with one-line UserErrors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        # weights_only: a checkpoint holds tensors and plain Python values only, so loading
        # one from elsewhere cannot run code.
        with warnings.catch_warnings():  # e.g. about a pickle's protocol: the error says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt bytes surface as many exception types
        problem = load_problem(path, exc)
        raise UserError(f"{what} is corrupt or unreadable: {path} ({problem})") from None


def load_problem(path: Path, exc: Exception) -> str:
    """What torch.load found wrong with `path`, in at most 100 characters (torch's own
    messages run to 300 and more, mostly advice)."""
    if path.stat().st_size == 0:
        return "empty file"
    with open(path, "rb") as f:
        zipped = f.read(2) == b"PK"  # torch's format is a zip archive
    if zipped and not zipfile.is_zipfile(path):  # the directory at its end is missing
        return "truncated zip archive"
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:  # weights_only refused what the pickle holds
        detail = text.split("WeightsUnpickler error:")[1].split(" Check the documentation")[0]
        text = f"not a torch file, or damaged: {detail.strip()}"
    else:
        text = text.split(". ")[0]
    return clip(text or type(exc).__name__, 100)


# What every checkpoint holds (train.py's Trainer.checkpoint) and evaluate.py and datagen's
# export-policy read; "a/b" is key b of the dict under a; the type None: any type.
CHECKPOINT_KEYS: dict[str, type | None] = {
    "agent": str,
    "env": str,
    "run_config": dict,
    "agent_config": dict,
    "spaces": dict,
    "agent_state": dict,
    "counters": dict,
    "counters/env_steps": None,
    "counters/gradient_updates": None,
}
# What a resume reads besides: every counter, the evaluations, the RNG states, and the replay
# file (online) or the dataset's fingerprint and the sampler's RNG state (offline).
RESUME_KEYS: dict[str, type | None] = {
    **{f"counters/{key}": None for key in ("episodes", "update_credit", "wall_time_s",
                                          "resumes")},
    "evals": list,
    "rng": dict,
    **{f"rng/{key}": None for key in ("python", "numpy", "torch", "loop")},
}  # fmt: skip
# What each training loop (training/, the checkpoint's "loop") needs besides RESUME_KEYS.
LOOP_RESUME_KEYS: dict[str, dict[str, type | None]] = {
    "off_policy": {"replay_file": str},
    "offline": {"dataset": dict, "sampler_rng": dict},
    "on_policy": {},
}
_MISSING = object()


def load_checkpoint(path: Path, resume: bool = False) -> dict:
    """An ogzoo checkpoint with every key evaluation needs (and with `resume`, every key a
    resume needs), or a one-line UserError naming the file and the first key missing."""
    ckpt = torch_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"not an ogzoo checkpoint: {path}")
    needed = dict(CHECKPOINT_KEYS)
    if resume:
        run_config = ckpt.get("run_config")
        offline = isinstance(run_config, dict) and bool(run_config.get("dataset"))
        # Checkpoints written before the loop was recorded: offline if it had a dataset.
        loop = ckpt.get("loop") or ("offline" if offline else "off_policy")
        needed.update(RESUME_KEYS, **LOOP_RESUME_KEYS.get(loop, {}))
    for key, kind in needed.items():
        value: Any = ckpt
        for part in key.split("/"):
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            raise UserError(f"checkpoint {path} lacks '{key}' (incomplete, or not written by "
                            "this version of ogzoo)")  # fmt: skip
        if kind is not None and not isinstance(value, kind):
            raise UserError(f"checkpoint {path}: '{key}' is a {type(value).__name__}, "
                            f"expected a {kind.__name__}")  # fmt: skip
    return ckpt


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file itself, or the best one in a run folder (final.pt, else latest.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("final.pt", "latest.pt"):
            candidate = path / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise UserError(f"no checkpoint in run folder {path} (expected checkpoints/latest.pt)")
    if not path.exists():
        raise UserError(f"no such run folder or checkpoint: {path}")
    return path


def check_spaces(ckpt: dict, signature: dict, env_id: str, source: Path) -> None:
    if ckpt["spaces"] != signature:
        raise UserError(
            f"checkpoint {source} was trained on {ckpt['env']} and does not fit {env_id}: "
            f"spaces {ckpt['spaces']} vs {signature}"
        )
