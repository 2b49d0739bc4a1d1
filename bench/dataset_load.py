"""Load-cost measurement for the dataset issue's bar: 1M transitions into the buffer in <= 5 s,
with peak memory <= 2x the raw arrays. The buffer adopts the Dataset's arrays as its storage
(`ReplayBuffer.from_dataset`: `from_arrays(copy=False)`), so the peak is the raw arrays plus the
buffer's float32 flags and the reader's temporaries. Not run by the tests:

    python bench/dataset_load.py            # 1M Hopper-sized transitions, in a temp folder
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.buffer import ReplayBuffer  # noqa: E402
from envs.datasets.d4rl import read_d4rl, write_d4rl  # noqa: E402
from envs.datasets.dataset import Dataset  # noqa: E402


def synthetic_dataset(
    n: int = 1_000_000,
    obs_dim: int = 11,
    act_dim: int = 3,
    nq: int = 6,
    nv: int = 6,
    episode_len: int = 1000,
    seed: int = 0,
) -> Dataset:
    """Random transitions shaped like a D4RL Hopper file (timeouts every episode_len steps)."""
    rng = np.random.default_rng(seed)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[episode_len - 1 :: episode_len] = True
    return Dataset(
        observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_observations=rng.standard_normal((n, obs_dim), dtype=np.float32),
        terminals=rng.random(n) < 1e-3,
        timeouts=timeouts,
        qpos=rng.standard_normal((n, nq)),
        qvel=rng.standard_normal((n, nv)),
        metadata={"env_id": "Hopper-v5", "kind": "synthetic", "seed": seed},
    )


def measure_load(path: str | os.PathLike[str], compat: bool = False) -> dict[str, float]:
    """Seconds to read `path` and to fill the buffer, raw and peak-extra bytes (fresh process)."""
    rss_start = _rss_bytes()
    t0 = time.perf_counter()
    dataset = read_d4rl(path, compat=compat)
    t1 = time.perf_counter()
    buffer = ReplayBuffer.from_dataset(dataset)
    t2 = time.perf_counter()
    # qpos/qvel may be views of one block; their nbytes still add up to that block's size.
    raw = sum(a.nbytes for a in vars(dataset).values() if isinstance(a, np.ndarray))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "transitions": float(len(buffer)),
        "read_s": t1 - t0,
        "to_buffer_s": t2 - t1,
        "total_s": t2 - t0,
        "raw_bytes": float(raw),
        "peak_extra_bytes": float(peak - rss_start),
        "peak_over_raw": (peak - rss_start) / raw,
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(n: int = 1_000_000) -> None:
    """Write a synthetic n-transition file to a temp folder, measure loading it once, print."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "synthetic.hdf5"
        write_d4rl(path, synthetic_dataset(n))
        # Measured in a child process so its peak memory is not the writer's.
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
            "import torch; torch.set_num_threads(1); "
            "from dataset_load import measure_load; "
            f"print(measure_load({str(path)!r}))"
        )
        subprocess.run([sys.executable, "-c", code], check=True)


if __name__ == "__main__":
    main()
