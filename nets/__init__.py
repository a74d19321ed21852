"""Neural-network modules: plain sizes in, `nn.Module`s out. Imports nothing of ours."""

from nets.actor_critic import ActorCritic, orthogonal_init
from nets.dynamics import DynamicsHead
from nets.mlp import MLP, QNetwork, encode_obs, policy_sizes, space_sizes
from nets.normalize import RunningNorm

__all__ = [
    "MLP", "ActorCritic", "DynamicsHead", "QNetwork", "RunningNorm", "encode_obs", "orthogonal_init",
    "policy_sizes", "space_sizes",
]
