"""Running mean/std normalisation as a module, so its statistics travel with the weights."""

from __future__ import annotations

import torch
from torch import nn


class RunningNorm(nn.Module):
    """(x − mean) / sqrt(var + ε), clipped to ±clip, with statistics kept as buffers.

    The statistics change only through `update` (Chan et al.'s parallel mean/variance merge) or
    `update_each` (the same, batch after batch), so a forward pass never changes them: evaluation
    and replay use them frozen, and they are saved and loaded with the state dict.
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
    def update_each(self, x_TB: torch.Tensor) -> torch.Tensor:
        """Merge T batches (T, B, *shape) one after another, as T calls of `update` would, and
        return the variance after each (T, *shape): a few ops for all T, not ~20 per batch.

        Prefix sums of the batches' moments, taken around the current mean so that a large mean
        does not cancel the variance out.
        """
        y_TB = x_TB.double() - self.mean
        T, B = y_TB.shape[:2]
        steps = torch.arange(1, T + 1, dtype=torch.float64, device=y_TB.device)
        count_T = (self.count + B * steps).view(T, *[1] * (y_TB.dim() - 2))
        mean_T = B * y_TB.mean(1).cumsum(0) / count_T  # around the old mean (itself at 0)
        sum_sq_T = self.count * self.var + B * y_TB.pow(2).mean(1).cumsum(0)  # Σ y² so far
        var_T = sum_sq_T / count_T - mean_T.pow(2)
        self.mean += mean_T[-1]
        self.var.copy_(var_T[-1])
        self.count.copy_(count_T[-1].reshape(()))
        return var_T

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
