"""Environment construction: Gymnasium vector envs that speak torch. Imports nothing of ours."""

from envs.factory import UnknownEnvError, check_env_id, make
from envs.state import get_env_state, set_env_state
from envs.wrappers import DenseFinalObs

__all__ = [
    "DenseFinalObs",
    "UnknownEnvError",
    "check_env_id",
    "get_env_state",
    "make",
    "set_env_state",
]
