"""The training loops, above agents, envs, harness and datagen: small classes sharing one run
life cycle (training/trainer.py). train.py parses and resolves the config and hands over here.

- OffPolicyTrainer: online, vector envs into the replay buffer (training/off_policy.py);
- OfflineTrainer: a fixed dataset, the clock counts updates (training/offline.py).
"""

from __future__ import annotations

from core import config as cfglib
from training.off_policy import OffPolicyTrainer
from training.offline import OfflineTrainer
from training.trainer import DIVERGED_EXIT, EVAL_SEED_OFFSET, Diverged, Trainer

__all__ = ["DIVERGED_EXIT", "EVAL_SEED_OFFSET", "Diverged", "OffPolicyTrainer", "OfflineTrainer",
           "Trainer", "trainer_class"]  # fmt: skip


def trainer_class(run_cfg: cfglib.RunConfig) -> type[Trainer]:
    """The loop a run config asks for: offline with a dataset, else online off-policy."""
    return OfflineTrainer if run_cfg.dataset else OffPolicyTrainer
