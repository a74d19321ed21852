"""MLP trunks and Q-networks for flat (vector or discrete) observations and images."""

from __future__ import annotations

import math
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nets.cnn import ConvEncoder, image_sizes


def space_sizes(observation_space: gym.Space, action_space: gym.Space) -> dict:
    """Map single-env Gymnasium spaces to the plain sizes a Q-network takes (Discrete actions)."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise TypeError(f"action space {action_space} is not Discrete")
    _check_start(action_space)
    return {**_obs_sizes(observation_space), "num_actions": int(action_space.n)}


def policy_sizes(observation_space: gym.Space, action_space: gym.Space) -> dict:
    """Map single-env spaces to the sizes an actor-critic takes (Discrete or 1-D Box actions)."""
    if isinstance(action_space, gym.spaces.Discrete):
        _check_start(action_space)
        action = {"action_dim": int(action_space.n), "continuous": False}
    elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        action = {"action_dim": int(action_space.shape[0]), "continuous": True}
    else:
        raise TypeError(f"action space {action_space} is not Discrete or a 1-D Box")
    return {**_obs_sizes(observation_space), **action}


def _check_start(space: gym.spaces.Discrete) -> None:
    if int(space.start) != 0:
        raise TypeError(f"Discrete spaces must start at 0, got {space}")


def _obs_sizes(observation_space: gym.Space) -> dict:
    """obs_dim and discrete_obs; for images (a 3-D uint8 Box, channels first, as envs.make gives
    Atari's and MinAtar's) also obs_shape and obs_scale, which select a CNN."""
    if _is_image(observation_space):
        high = np.unique(observation_space.high)
        if len(high) != 1 or not np.isfinite(high[0]) or high[0] <= 0:
            raise TypeError(
                f"image observations need one finite positive high, got {observation_space}"
            )
        return {**image_sizes(observation_space.shape, high[0]), "discrete_obs": False}
    if isinstance(observation_space, gym.spaces.Discrete):
        _check_start(observation_space)
        obs_dim, discrete_obs = int(observation_space.n), True
    elif isinstance(observation_space, gym.spaces.Box):
        obs_dim, discrete_obs = math.prod(observation_space.shape), False
    else:
        raise TypeError(
            f"observation space {observation_space} is not supported (Box or Discrete expected)"
        )
    return {"obs_dim": obs_dim, "discrete_obs": discrete_obs}


def _is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def encode_obs(
    obs: torch.Tensor, obs_dim: int, discrete_obs: bool, image: bool = False
) -> torch.Tensor:
    """(B, *obs_shape) in the env's dtype -> (B, O) float32: one-hot for Discrete obs; images
    pass through unchanged (the trunk's ConvEncoder casts and scales them)."""
    if image:
        return obs
    if discrete_obs:
        return F.one_hot(obs.long().reshape(-1), obs_dim).float()
    return obs.reshape(obs.shape[0], -1).float()


class MLP(nn.Sequential):
    """Linear layers with an activation between them: in_dim -> *hidden -> out_dim."""

    def __init__(
        self, in_dim: int, out_dim: int, hidden: Sequence[int] = (64, 64),
        act: type[nn.Module] = nn.ReLU,
    ):
        sizes = [in_dim, *hidden, out_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(act())
        super().__init__(*layers)


def make_trunk(
    *, obs_dim: int, hidden: Sequence[int], act: type[nn.Module],
    obs_shape: Sequence[int] | None = None, obs_scale: float = 1.0,
) -> nn.Sequential:
    """Encoded obs -> hidden[-1] features: an MLP for flat obs, a CNN then an MLP for images."""
    if obs_shape is None:
        return nn.Sequential(MLP(obs_dim, hidden[-1], hidden[:-1], act=act), act())
    encoder = ConvEncoder(obs_shape, obs_scale)
    return nn.Sequential(encoder, MLP(encoder.out_dim, hidden[-1], hidden[:-1], act=act), act())


class QNetwork(nn.Module):
    """Q(s, ·) for every discrete action; optionally dueling, V(s) + A(s, a) − mean_a A(s, a).

    Dueling: Wang et al. 2016, "Dueling Network Architectures for Deep RL", eq. 9.
    Discrete observations are one-hot encoded; Box observations are flattened and cast to float;
    images (obs_shape given) go through a ConvEncoder first.
    """

    def __init__(
        self,
        *,
        obs_dim: int,
        num_actions: int,
        hidden: Sequence[int] = (64, 64),
        dueling: bool = False,
        discrete_obs: bool = False,
        obs_shape: Sequence[int] | None = None,
        obs_scale: float = 1.0,
    ):
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one layer size")
        self.obs_dim, self.num_actions, self.discrete_obs = obs_dim, num_actions, discrete_obs
        self.dueling, self.image = dueling, obs_shape is not None
        # The trunk is every hidden layer (after a CNN for images); the head(s) map the last
        # hidden layer to Q-values.
        self.trunk = make_trunk(
            obs_dim=obs_dim, hidden=hidden, act=nn.ReLU, obs_shape=obs_shape, obs_scale=obs_scale
        )
        if dueling:
            self.value = nn.Linear(hidden[-1], 1)
            self.advantage = nn.Linear(hidden[-1], num_actions)
        else:
            self.head = nn.Linear(hidden[-1], num_actions)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """The trunk's features (B, H): what a pretrained representation transfers."""
        return self.trunk(encode_obs(obs, self.obs_dim, self.discrete_obs, self.image))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h_BH = self.embed(obs)
        if not self.dueling:
            return self.head(h_BH)  # (B, A)
        advantage_BA = self.advantage(h_BH)
        return self.value(h_BH) + advantage_BA - advantage_BA.mean(dim=1, keepdim=True)
