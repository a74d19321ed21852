"""Environment construction: Gymnasium vector envs that speak torch. Imports nothing of ours."""

import gymnasium as gym

from envs.cartpole import CartPoleParams, CartPoleVectorEnv, cartpole_step
from envs.factory import UnknownEnvError, check_env_id, make
from envs.pixels import pixel_family
from envs.state import get_env_state, set_env_state
from envs.wrappers import DenseFinalObs

# Torch-native envs: gymnasium.make_vec("rlplay/CartPole-v1", num_envs=4096, device="cuda").
TORCH_ENVS = {
    "rlplay/CartPole-v1": "envs.cartpole:CartPoleVectorEnv",
    "rlplay/MountainCar-v0": "envs.mountain_car:MountainCarVectorEnv",
    "rlplay/MountainCarContinuous-v0": "envs.mountain_car:ContinuousMountainCarVectorEnv",
    "rlplay/Pendulum-v1": "envs.pendulum:PendulumVectorEnv",
    "rlplay/Acrobot-v1": "envs.acrobot:AcrobotVectorEnv",
}
for _id, _entry in TORCH_ENVS.items():
    if _id not in gym.registry:
        gym.register(id=_id, vector_entry_point=_entry)

__all__ = [
    "CartPoleParams",
    "CartPoleVectorEnv",
    "cartpole_step",
    "DenseFinalObs",
    "UnknownEnvError",
    "check_env_id",
    "get_env_state",
    "make",
    "pixel_family",
    "set_env_state",
]
