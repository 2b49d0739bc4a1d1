"""Environment factories and wrappers (Gymnasium/MuJoCo now; datasets and Procgen later)."""

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

__all__ = [
    "DiscretizeActions",
    "StepResult",
    "VecEnv",
    "can_terminate",
    "check_env_id",
    "get_sim_state",
    "make_env",
    "random_actions",
    "set_sim_state",
    "sim_state_dim",
]
