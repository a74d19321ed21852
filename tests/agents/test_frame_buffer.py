"""FrameReplayBuffer: the same stacks as a buffer of full stacks, in a fraction of the memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from agents_testlib import DEVICES

from agents import FrameReplayBuffer, ReplayBuffer

S = 4  # frames per stack


class FrameStacks:
    """N envs whose observations are stacks of the S latest random frames, padded with the
    first frame at reset (as FrameStackObservation(padding_type="reset")), with random
    terminations and truncations: the stream a training loop adds to its buffer."""

    def __init__(self, n, hw=(3, 5), p_term=0.08, p_trunc=0.05, seed=0):
        self.n, self.hw, self.p_term, self.p_trunc = n, hw, p_term, p_trunc
        self.gen = torch.Generator().manual_seed(seed)
        self.obs = self._fresh(n)

    def _fresh(self, n):
        frame = torch.randint(0, 256, (n, 1, *self.hw), dtype=torch.uint8, generator=self.gen)
        return frame.expand(n, S, *self.hw).clone()

    def step(self):
        """One step of every env: (obs, action, reward, true next obs, terminated, truncated)."""
        n, obs = self.n, self.obs
        frame = torch.randint(0, 256, (n, 1, *self.hw), dtype=torch.uint8, generator=self.gen)
        final_obs = torch.cat([obs[:, 1:], frame], dim=1)
        u = torch.rand(n, generator=self.gen)
        terminated = u < self.p_term
        truncated = (u > 1 - self.p_trunc) | ((u < self.p_term / 4) & (torch.rand(n) < 0.5))
        action = torch.randint(0, 6, (n,), generator=self.gen)
        reward = torch.randn(n, generator=self.gen)
        done = terminated | truncated
        self.obs = torch.where(done[:, None, None, None], self._fresh(n), final_obs)
        return obs, action, reward, final_obs, terminated, truncated


def fill(steps, n, capacity, **kwargs):
    """The frame buffer and a full-stack ReplayBuffer fed the same `steps` steps of n envs."""
    env = FrameStacks(n, **{k: kwargs.pop(k) for k in list(kwargs) if k.startswith("p_")})
    frames = FrameReplayBuffer(capacity=capacity, num_envs=n, obs_shape=(S, *env.hw), **kwargs)
    naive = ReplayBuffer(capacity=capacity, obs_shape=(S, *env.hw), obs_dtype=torch.uint8)
    for _ in range(steps):
        batch = env.step()
        frames.add(*batch)
        naive.add(*batch)
    return frames, naive


def assert_same(frames: FrameReplayBuffer, naive: ReplayBuffer, idx: torch.Tensor):
    """Every field as the naive buffer has it; the next obs of a terminated transition (never
    read by a target) has a zero last frame."""
    got = frames.get(idx)
    assert torch.equal(got.obs, naive.obs[idx])
    assert torch.equal(got.action, naive.action[idx])
    assert torch.equal(got.reward, naive.reward[idx])
    assert torch.equal(got.terminated, naive.terminated[idx])
    live = ~got.terminated
    assert torch.equal(got.next_obs[live], naive.next_obs[idx][live])
    assert torch.equal(got.next_obs[~live][:, :-1], naive.next_obs[idx][~live][:, :-1])
    assert not got.next_obs[~live][:, -1].any()


@pytest.mark.parametrize("steps", [6, 40, 57, 200])  # before, at and well past wrap-around
@pytest.mark.parametrize("n", [1, 3])
def test_stacks_equal_a_naive_buffer_across_episode_ends_and_wrap_around(steps, n):
    frames, naive = fill(steps, n, capacity=40 * n, final_capacity=64)
    valid = frames.valid().flatten()
    idx = valid.nonzero().squeeze(1)
    assert_same(frames, naive, idx)
    # Only the oldest S − 1 rows can lack their history (and, at the start, the first rows'
    # history was never seen): everything else is there, truncated ones included.
    assert (~valid[: len(frames)]).sum() <= (S - 1) * n
    assert len(frames) == len(naive) == min(steps, 40) * n


def test_every_transition_of_an_episode_started_in_the_buffer_is_valid():
    frames, naive = fill(30, 2, capacity=200, p_term=0.0, p_trunc=0.0)
    valid = frames.valid()
    assert not valid[: S - 1].any() and valid[S - 1 : 30].all()  # first obs: history unknown
    frames, naive = fill(30, 2, capacity=200, p_term=1.0, p_trunc=0.0)  # one-step episodes
    assert frames.valid()[1:30].all()


def test_truncated_transitions_whose_last_frame_left_the_small_ring_are_never_sampled():
    frames, naive = fill(300, 2, capacity=600, p_term=0.0, p_trunc=0.3, final_capacity=8)
    truncated = frames.has_final.flatten()
    valid = frames.valid().flatten()
    assert valid[truncated].sum() == 8  # the 8 latest truncations keep their last frame
    assert_same(frames, naive, valid.nonzero().squeeze(1))


def test_envs_reset_under_the_buffer_keep_exact_stacks_after_cut_episodes():
    """A resume without env state resets the envs mid-episode: `cut_episodes` first."""
    env = FrameStacks(3, p_term=0.05, p_trunc=0.0, seed=7)
    frames = FrameReplayBuffer(capacity=300, num_envs=3, obs_shape=(S, *env.hw))
    naive = ReplayBuffer(capacity=300, obs_shape=(S, *env.hw), obs_dtype=torch.uint8)
    for step in range(60):
        if step in (20, 21, 45):  # twice in a row too
            env.obs = env._fresh(3)
            frames.cut_episodes()
            naive.cut_episodes()
        batch = env.step()
        frames.add(*batch)
        naive.add(*batch)
    valid = frames.valid().flatten()
    assert valid[3 * S:len(frames)].all()  # only the first rows lack history
    assert_same(frames, naive, valid.nonzero().squeeze(1))


def from_scratch(frames: FrameReplayBuffer) -> torch.Tensor:
    return frames._validity(torch.arange(frames.rows, device=frames.device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 3])
def test_what_can_be_sampled_is_kept_equal_to_a_recomputation_after_every_add(n, device):
    """add() updates only the rows it can change and the owners of evicted last frames; after
    every add (and cut_episodes), across wrap-around and evictions from a small ring, that is
    exactly what recomputing every row gives."""
    env = FrameStacks(n, p_term=0.05, p_trunc=0.3, seed=11)
    frames = FrameReplayBuffer(
        capacity=20 * n, num_envs=n, obs_shape=(S, *env.hw), final_capacity=4 * n, device=device
    )
    evicted = 0
    for step in range(150):
        if step in (40, 41, 90):
            env.obs = env._fresh(n)
            frames.cut_episodes()
            assert torch.equal(frames.valid(), from_scratch(frames))
        frames.add(*env.step())
        assert torch.equal(frames.valid(), from_scratch(frames)), step
        evicted += int((frames.has_final & ~frames.valid() & (frames.ep_step.long() <= 1)).sum())
    assert evicted > 0 and frames.filled == frames.rows  # both paths were exercised


@pytest.mark.parametrize("used", [False, True])
def test_a_loaded_buffer_rebuilds_what_can_be_sampled_and_the_ring_owners(used):
    """Also into a buffer that held more rows before (its stale rows own no ring slot)."""
    env = FrameStacks(2, p_term=0.05, p_trunc=0.3, seed=4)
    kwargs = dict(capacity=60, num_envs=2, obs_shape=(S, 3, 5), final_capacity=8)
    a = FrameReplayBuffer(**kwargs, seed=1)
    b = FrameReplayBuffer(**kwargs, seed=2)
    other = FrameStacks(2, p_term=0.05, p_trunc=0.3, seed=5)
    for _ in range(37 if used else 0):
        b.add(*other.step())
    for _ in range(15):
        a.add(*env.step())
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.valid(), a.valid())
    for _ in range(40):  # evictions from the ring must find the owners b rebuilt
        batch = env.step()
        a.add(*batch)
        b.add(*batch)
        assert torch.equal(b.valid(), a.valid())
        assert torch.equal(b.valid(), from_scratch(b))


def test_a_small_ring_must_hold_one_step_of_every_env():
    with pytest.raises(ValueError, match="final_capacity 2 is below one step of 3 envs"):
        FrameReplayBuffer(capacity=30, num_envs=3, obs_shape=(S, 3, 5), final_capacity=2)


def test_sampling_is_seeded_and_only_draws_valid_transitions():
    a, _ = fill(100, 2, capacity=80, seed=5)
    b, _ = fill(100, 2, capacity=80, seed=5)
    x, y = a.sample(256), b.sample(256)
    assert all(torch.equal(u, v) for u, v in zip(x, y))
    idx = torch.multinomial(a.valid().flatten().float(), 10_000, replacement=True,
                            generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=a.capacity)
    assert (counts[~a.valid().flatten()] == 0).all()
    assert counts[a.valid().flatten()].min() > 0  # every valid transition gets drawn


def test_sampling_before_a_full_stack_is_an_error():
    frames, _ = fill(2, 1, capacity=10)
    with pytest.raises(ValueError, match="before 4 steps"):
        frames.sample(1)


def test_state_dict_round_trip_continues_exactly():
    env = FrameStacks(2, seed=3)
    a = FrameReplayBuffer(capacity=60, num_envs=2, obs_shape=(S, 3, 5), seed=9)
    for _ in range(45):
        a.add(*env.step())
    b = FrameReplayBuffer(capacity=60, num_envs=2, obs_shape=(S, 3, 5), seed=0)
    assert b.load_state_dict(a.state_dict())
    for _ in range(20):
        batch = env.step()
        a.add(*batch)
        b.add(*batch)
    assert all(torch.equal(u, v) for u, v in zip(a.sample(128), b.sample(128)))
    with pytest.raises(ValueError, match="holds 60 transitions of 2 envs"):
        other = FrameReplayBuffer(capacity=60, num_envs=3, obs_shape=(S, 3, 5))
        other.load_state_dict(a.state_dict())


def test_memory_is_one_frame_per_transition_plus_small_fields():
    """Measured from the storages the buffer allocated: an 84×84 frame and 24 bytes per
    transition (int64 action and final index, float reward, four flags), plus the ring of
    truncated last frames and their owners; a buffer of full stacks takes 8 frames per
    transition."""
    capacity, n, hw = 4096, 4, 84 * 84
    frames = FrameReplayBuffer(capacity=capacity, num_envs=n, obs_shape=(S, 84, 84))
    naive = ReplayBuffer(capacity=capacity, obs_shape=(S, 84, 84), obs_dtype=torch.uint8)
    allocated = sum(t.untyped_storage().nbytes() for t in frames.tensors())
    assert allocated == frames.nbytes
    ring = frames.final_capacity + 1
    small_ring = (ring + n) * hw + ring * 8  # + the pending next frames; + the owners
    assert frames.nbytes == capacity * (hw + 8 + 4 + 1 + 1 + 1 + 1 + 8) + small_ring + 8 + n
    assert naive.nbytes == capacity * (2 * S * hw + 8 + 4 + 1)
    assert naive.nbytes / frames.nbytes > 7.8
    # 1M Atari transitions, 1 env: 7.11 GB (the "about 7.1 GB"), against 56.5 GB.
    ring = 10**6 // 256 + 1
    per_million = 10**6 * (hw + 24) + (ring + 1) * hw + ring * 8 + 8 + 1
    assert per_million == 7_107_606_113


def test_atari_stacks_from_the_real_env_equal_a_naive_buffer():
    """Gymnasium's FrameStackObservation over Atari with episodic life: 2 envs, 300 steps into
    a ring of 2 × 100, so it wraps and crosses life and game ends."""
    pytest.importorskip("ale_py")
    import envs

    vec = envs.make("ALE/Breakout-v5", 2, training=True)
    frames = FrameReplayBuffer(capacity=200, num_envs=2, obs_shape=(S, 84, 84))
    naive = ReplayBuffer(capacity=200, obs_shape=(S, 84, 84), obs_dtype=torch.uint8)
    obs, _ = vec.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    ends = 0
    for _ in range(300):
        action = torch.randint(0, 4, (2,), generator=gen)
        next_obs, reward, terminated, truncated, info = vec.step(action)
        for buffer in (frames, naive):
            buffer.add(obs, action, reward, info["final_obs"], terminated, truncated)
        ends += int((terminated | truncated).sum())
        obs = next_obs
    vec.close()
    assert ends >= 4
    valid = frames.valid().flatten()
    assert valid.sum() >= 200 - 2 * (S - 1)
    assert_same(frames, naive, valid.nonzero().squeeze(1))
