"""The torch envs' shared plumbing: the counter-based reset generator of the compiled step."""

import pytest
import torch

from envs import batched
from envs.cartpole import CartPoleParams, CartPoleVectorEnv

MASK = 2**64 - 1


def splitmix64(seed: int, count: int) -> list[int]:
    """SplitMix64 (Steele, Lea & Flood 2014) in plain Python integers: the reference."""
    state, out = seed & MASK, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


@pytest.mark.parametrize("seed", [0, 1234567, -(2**63), 2**63 - 1, -42])
@pytest.mark.parametrize("dtype, bits", [(torch.float32, 24), (torch.float64, 53)])
def test_counter_uniform_is_splitmix64s_stream(seed, dtype, bits):
    u = batched.counter_uniform(torch.tensor(seed), batched.counter_offsets((50, 2), "cpu"), dtype)
    expected = [(z >> (64 - bits)) * 2.0**-bits for z in splitmix64(seed, 100)]
    assert u.dtype == dtype and u.shape == (50, 2)
    assert u.flatten().tolist() == expected  # exact: the top bits, scaled by a power of two


def test_counter_uniform_is_uniform_on_the_unit_interval():
    u = batched.counter_uniform(
        torch.tensor(7), batched.counter_offsets((200_000,), "cpu"), torch.float64
    )
    assert 0.0 <= u.min() and u.max() < 1.0
    # Mean 1/2 and variance 1/12, each to ~5 standard errors; neighbours uncorrelated.
    assert abs(u.mean().item() - 0.5) < 5 * (1 / 12 / 200_000) ** 0.5
    assert abs(u.var().item() - 1 / 12) < 5 * (1 / 180 / 200_000) ** 0.5
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.01
    counts = torch.histc(u, bins=10, min=0.0, max=1.0)
    assert (counts - 20_000).abs().max() < 5 * 20_000**0.5


def test_counter_rng_resets_are_seeded_per_env_and_in_gymnasiums_range():
    def first_resets(seed):
        env = CartPoleVectorEnv(256, counter_rng=True)
        env.reset(seed=seed)
        for _ in range(10):  # constant pushes: every env falls over within the first ~60 steps
            _, _, terminated, _, _ = env.step(torch.ones(256, dtype=torch.int64))
        starts = []
        while len(starts) < 3:
            obs, _, terminated, _, _ = env.step(torch.ones(256, dtype=torch.int64))
            if terminated.any():
                starts.append(obs[terminated])
        return torch.cat(starts)

    a, b = first_resets(3), first_resets(3)
    assert torch.equal(a, b)  # the same seed, the same resets
    assert not torch.equal(a, first_resets(4))
    bound = CartPoleParams().reset_bound
    assert a.abs().max() <= bound and a.abs().max() > 0.9 * bound
    assert torch.unique(a, dim=0).shape[0] == a.shape[0]  # every reset its own state


def test_eager_env_keeps_torch_rand_unless_asked():
    assert not CartPoleVectorEnv(4).counter_rng
    assert CartPoleVectorEnv(4, counter_rng=True).counter_rng
