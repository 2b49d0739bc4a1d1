"""Offline datasets: D4RL and Minari readers, ogzoo's own files (D4RL layout), scores.

Every reader returns a `Dataset` (flat D4RL-named arrays); `ReplayBuffer.from_dataset(dataset)`
(agents/buffer.py) fills the shared replay buffer from it. Bad files raise `DatasetError` (a
`UserError`) naming the file. This package only reads: generating ogzoo's datasets rolls out
behaviour policies, so it lives above agents and harness, in datagen/
(`python -m datagen list|make|info|export-policy`).
"""

from envs.datasets.d4rl import d4rl_dataset_dir, read_d4rl, resolve_d4rl, write_d4rl
from envs.datasets.dataset import Dataset, DatasetError, check_against_env
from envs.datasets.minari_format import minari_root, read_minari, resolve_minari
from envs.datasets.scores import (
    D4RL_REF_SCORES,
    d4rl_normalized_score,
    d4rl_ref_scores,
    normalized_score,
)

__all__ = [
    "D4RL_REF_SCORES",
    "Dataset",
    "DatasetError",
    "check_against_env",
    "d4rl_dataset_dir",
    "d4rl_normalized_score",
    "d4rl_ref_scores",
    "minari_root",
    "normalized_score",
    "read_d4rl",
    "read_minari",
    "resolve_d4rl",
    "resolve_minari",
    "write_d4rl",
]
