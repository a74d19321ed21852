"""Neural-network modules: plain sizes in, `nn.Module`s out. Imports nothing of ours."""

from nets.mlp import MLP, QNetwork, space_sizes

__all__ = ["MLP", "QNetwork", "space_sizes"]
