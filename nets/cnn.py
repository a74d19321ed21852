"""Convolutional encoders for image observations (channels-first)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class ConvEncoder(nn.Sequential):
    """Images (B, C, H, W) in the env's dtype -> features (B, F), scaled to [0, 1] inside.

    84×84 and larger: the Nature-DQN stack (Mnih et al. 2015: 32 8×8/4, 64 4×4/2, 64 3×3/1).
    Smaller grids (MinAtar's 10×10): one 16-filter 3×3 convolution (Young & Tian 2019).
    Scaling here keeps uint8 frames uint8 everywhere else (buffers, rollouts, the wire).
    """

    def __init__(self, obs_shape: Sequence[int], scale: float = 1.0):
        c, h, w = obs_shape
        # Channels-last (NHWC) convolutions for the Nature stack: its forward and backward at
        # batch 32 take 19 ms instead of 24 on one CPU core. MinAtar's tiny one gains nothing.
        nature = min(h, w) >= 36
        if nature:
            layers = [
                nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
                nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            ]
        else:
            layers = [nn.Conv2d(c, 16, 3, stride=1), nn.ReLU()]
        super().__init__(*layers, nn.Flatten())
        self.scale, self.channels_last = scale, nature
        with torch.no_grad():
            self.out_dim = int(super().forward(torch.zeros(1, c, h, w)).shape[1])
        if self.channels_last:  # Flatten still yields features in (C, H, W) order
            self.to(memory_format=torch.channels_last)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            obs = obs.contiguous(memory_format=torch.channels_last)  # still uint8: cheaper
        return super().forward(obs.float() * self.scale)


def image_sizes(shape: Sequence[int], high: float) -> dict:
    """The sizes of a channels-first image space; pixels are divided by its high (255 or 1)."""
    return {"obs_dim": math.prod(shape), "obs_shape": tuple(int(s) for s in shape),
            "obs_scale": 1.0 / float(high)}
