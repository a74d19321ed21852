"""Running mean/std normalisation as a module, so its statistics travel with the weights."""

from __future__ import annotations

import torch
from torch import nn


class RunningNorm(nn.Module):
    """(x − mean) / sqrt(var + ε), clipped to ±clip, with statistics kept as buffers.

    The statistics change only through `update` (Chan et al.'s parallel mean/variance merge), so
    a forward pass never changes them: evaluation and replay use them frozen, and they are saved
    and loaded with the state dict.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x_B: torch.Tensor) -> None:
        """Merge a batch (B, *shape) into the running statistics."""
        x_B = x_B.double()
        self.merge(x_B.mean(0), x_B.var(0, unbiased=False), x_B.shape[0])

    @torch.no_grad()
    def merge(self, batch_mean: torch.Tensor, batch_var: torch.Tensor, n: int) -> None:
        """Merge a batch given by its mean, (biased) variance and size; data-parallel training
        passes the moments of all ranks' batches together."""
        delta, total = batch_mean - self.mean, self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.double() - self.mean) / torch.sqrt(self.var + self.eps)
        return z.clamp(-self.clip, self.clip).to(torch.float32)
