"""The training loops, above agents, envs, harness and datagen: small classes sharing one run
life cycle (training/trainer.py). train.py parses the command line; training/launch.py resolves
and checks the config and prepares the run folder (new, resumed, restarted, or a seed group).

- OffPolicyTrainer: online, vector envs into the replay buffer (training/off_policy.py);
- OfflineTrainer: a fixed dataset, the clock counts updates (training/offline.py);
- OnPolicyTrainer: rollouts and GAE for on-policy agents (PPO), Gymnasium or Procgen envs,
  every Procgen evaluation a train-vs-held-out-levels report (training/on_policy.py).
"""

from __future__ import annotations

from agents import get_agent_module
from core import config as cfglib
from training.off_policy import OffPolicyTrainer
from training.offline import OfflineTrainer
from training.on_policy import OnPolicyTrainer
from training.trainer import DIVERGED_EXIT, EVAL_SEED_OFFSET, Diverged, Trainer

__all__ = ["DIVERGED_EXIT", "EVAL_SEED_OFFSET", "Diverged", "OffPolicyTrainer", "OfflineTrainer",
           "OnPolicyTrainer", "Trainer", "trainer_class"]  # fmt: skip


def trainer_class(run_cfg: cfglib.RunConfig) -> type[Trainer]:
    """The loop a run config asks for: offline with a dataset, on-policy for an on-policy
    agent (its module's ON_POLICY), else online off-policy."""
    if run_cfg.dataset:
        return OfflineTrainer
    if getattr(get_agent_module(run_cfg.agent), "ON_POLICY", False):
        return OnPolicyTrainer
    return OffPolicyTrainer
