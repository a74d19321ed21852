"""A head that predicts how an action changes the observation: self-supervised pretraining."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nets.mlp import MLP


class DynamicsHead(nn.Module):
    """(trunk features h, action a) -> predicted Δobs (B, O).

    Trained on (obs, action, next_obs) alone, it needs no expert: the trunk below it learns
    features that say where the system is going, which an agent's trunk can start from.
    Discrete actions enter one-hot, continuous ones as they are.
    """

    def __init__(
        self, *, feature_dim: int, action_dim: int, obs_dim: int, discrete_actions: bool,
        hidden: Sequence[int] = (64,),
    ):
        super().__init__()
        self.action_dim, self.discrete_actions = action_dim, discrete_actions
        self.net = MLP(feature_dim + action_dim, obs_dim, hidden)

    def forward(self, h_BH: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if self.discrete_actions:
            a_BA = F.one_hot(action.long().reshape(-1), self.action_dim).float()
        else:
            a_BA = action.reshape(h_BH.shape[0], -1).float()
        return self.net(torch.cat([h_BH, a_BA], dim=-1))
