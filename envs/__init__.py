"""Environment factories and wrappers: Gymnasium/MuJoCo, Procgen with level splits."""

from envs.gym_envs import (
    DiscretizeActions,
    StepResult,
    VecEnv,
    can_terminate,
    check_env_id,
    get_sim_state,
    make_env,
    random_actions,
    set_sim_state,
    sim_state_dim,
)
from envs.procgen import LevelSplit, ProcgenVecEnv, is_procgen_id

__all__ = [
    "DiscretizeActions",
    "LevelSplit",
    "ProcgenVecEnv",
    "StepResult",
    "VecEnv",
    "can_terminate",
    "check_env_id",
    "get_sim_state",
    "is_procgen_id",
    "make_env",
    "random_actions",
    "set_sim_state",
    "sim_state_dim",
]
