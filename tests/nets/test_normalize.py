"""Running observation statistics against a direct computation."""

from __future__ import annotations

import torch

from nets import RunningNorm

PRIOR = 1e-4  # the initial statistics count as this many samples of mean 0, variance 1


def reference(x_BO: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean and (biased) variance of the samples seen plus the prior pseudo-samples."""
    n = x_BO.shape[0] + PRIOR
    mean = x_BO.sum(0) / n
    second = (x_BO.pow(2).sum(0) + PRIOR * 1.0) / n
    return mean, second - mean.pow(2), n


def test_merged_batches_give_the_statistics_of_all_samples_at_once():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(size, 3, generator=g, dtype=torch.float64) * 4 + 7 for size in (1, 5, 64, 2)]
    norm = RunningNorm((3,))
    for batch in batches:
        norm.update(batch)
    mean, var, n = reference(torch.cat(batches))
    torch.testing.assert_close(norm.mean, mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(norm.var, var, rtol=1e-10, atol=1e-10)
    assert norm.count.item() == n


def test_update_each_matches_one_update_per_batch_and_returns_each_variance():
    # A history of mean 1e4 and variance 1e-4: sums of x and x² would cancel the variance out
    # (off by ~5e-4 relative); prefix sums taken around the running mean do not.
    g = torch.Generator().manual_seed(1)
    x_TBO = torch.randn(5, 4, 3, generator=g, dtype=torch.float64) * 0.01 + 1e4
    stepwise, batched = RunningNorm((3,)), RunningNorm((3,))
    for norm in (stepwise, batched):
        norm.mean.fill_(1e4)
        norm.var.fill_(1e-4)
        norm.count.fill_(1e3)
    variances = []
    for x_BO in x_TBO:
        stepwise.update(x_BO)
        variances.append(stepwise.var.clone())
    var_TO = batched.update_each(x_TBO)
    torch.testing.assert_close(var_TO, torch.stack(variances), rtol=1e-10, atol=0)
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(
            getattr(batched, name), getattr(stepwise, name), rtol=1e-10, atol=0
        )


def test_forward_standardises_clips_and_leaves_the_statistics_alone():
    norm = RunningNorm((2,), clip=5.0, eps=1e-8)
    norm.update(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    x = torch.tensor([[1.0, 20.0], [1e6, -1e6]])
    z = norm(x)
    expected = (x.double() - norm.mean) / torch.sqrt(norm.var + 1e-8)
    torch.testing.assert_close(z[0], expected[0].float())
    assert z[1].tolist() == [5.0, -5.0]  # far outside: clipped to ±clip
    assert z.dtype == torch.float32
    assert all(torch.equal(v, norm.state_dict()[k]) for k, v in before.items())
