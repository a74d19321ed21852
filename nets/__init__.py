"""Neural-network modules: plain sizes in, `nn.Module`s out. Imports nothing of ours."""

from nets.actor_critic import ActorCritic, orthogonal_init
from nets.mlp import MLP, QNetwork, policy_sizes, space_sizes

__all__ = ["MLP", "ActorCritic", "QNetwork", "orthogonal_init", "policy_sizes", "space_sizes"]
