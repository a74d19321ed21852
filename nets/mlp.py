"""MLP trunks and Q-networks for flat (vector or discrete) observations."""

from __future__ import annotations

import math
from typing import Sequence

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F


def space_sizes(observation_space: gym.Space, action_space: gym.Space) -> dict:
    """Map single-env Gymnasium spaces to the plain sizes our network constructors take."""
    for space in (observation_space, action_space):
        if isinstance(space, gym.spaces.Discrete) and int(space.start) != 0:
            raise TypeError(f"Discrete spaces must start at 0, got {space}")
    if isinstance(observation_space, gym.spaces.Discrete):
        obs_dim, discrete_obs = int(observation_space.n), True
    elif isinstance(observation_space, gym.spaces.Box):
        obs_dim, discrete_obs = math.prod(observation_space.shape), False
    else:
        raise TypeError(
            f"observation space {observation_space} is not supported (Box or Discrete expected)"
        )
    if not isinstance(action_space, gym.spaces.Discrete):
        raise TypeError(f"action space {action_space} is not Discrete")
    return {"obs_dim": obs_dim, "num_actions": int(action_space.n), "discrete_obs": discrete_obs}


class MLP(nn.Sequential):
    """Linear layers with ReLU between them: in_dim -> *hidden -> out_dim."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (64, 64)):
        sizes = [in_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class QNetwork(nn.Module):
    """Q(s, ·) for every discrete action; optionally dueling, V(s) + A(s, a) − mean_a A(s, a).

    Dueling: Wang et al. 2016, "Dueling Network Architectures for Deep RL", eq. 9.
    Discrete observations are one-hot encoded; Box observations are flattened and cast to float.
    """

    def __init__(
        self,
        *,
        obs_dim: int,
        num_actions: int,
        hidden: Sequence[int] = (64, 64),
        dueling: bool = False,
        discrete_obs: bool = False,
    ):
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one layer size")
        self.obs_dim, self.num_actions, self.discrete_obs = obs_dim, num_actions, discrete_obs
        self.dueling = dueling
        # The trunk is every hidden layer; the head(s) map the last hidden layer to Q-values.
        self.trunk = nn.Sequential(MLP(obs_dim, hidden[-1], hidden[:-1]), nn.ReLU())
        if dueling:
            self.value = nn.Linear(hidden[-1], 1)
            self.advantage = nn.Linear(hidden[-1], num_actions)
        else:
            self.head = nn.Linear(hidden[-1], num_actions)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, *obs_shape) in the env's dtype -> (B, O) float32."""
        if self.discrete_obs:
            return F.one_hot(obs.long().reshape(-1), self.obs_dim).float()
        return obs.reshape(obs.shape[0], -1).float()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h_BH = self.trunk(self.encode(obs))
        if not self.dueling:
            return self.head(h_BH)  # (B, A)
        advantage_BA = self.advantage(h_BH)
        return self.value(h_BH) + advantage_BA - advantage_BA.mean(dim=1, keepdim=True)
