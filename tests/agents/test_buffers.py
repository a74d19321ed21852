"""ReplayBuffer: preallocated storage, ring wrap-around, uniform seeded sampling, exact resume."""

from __future__ import annotations

import io

import pytest
import torch
from agents_testlib import DEVICES

from agents import ReplayBuffer, Transitions

OBS_SHAPE = (3,)


def make_buffer(capacity: int, *, seed: int = 0, device: str = "cpu", **kwargs) -> ReplayBuffer:
    kwargs.setdefault("obs_shape", OBS_SHAPE)
    kwargs.setdefault("obs_dtype", torch.float32)
    return ReplayBuffer(capacity=capacity, device=device, seed=seed, **kwargs)


def add_ids(buffer: ReplayBuffer, ids: list[int]) -> None:
    """Add one step of len(ids) envs; every field of transition `id` is derived from the id."""
    id_N = torch.tensor(ids, dtype=torch.int64)
    obs_NO = id_N[:, None].expand(len(ids), *OBS_SHAPE).to(torch.float32)
    buffer.add(
        obs=obs_NO,
        action=id_N,
        reward=id_N.to(torch.float64) * 10.0,  # the env's float64 reward is stored as float32
        next_obs=obs_NO + 0.5,
        terminated=id_N % 3 == 0,
    )


def ids_of(batch: Transitions) -> torch.Tensor:
    """The id of every transition in a batch, after checking its fields belong together."""
    id_B = batch.obs[:, 0].long()
    assert torch.equal(batch.obs, id_B[:, None].expand_as(batch.obs).float())
    assert torch.equal(batch.next_obs, batch.obs + 0.5)
    assert torch.equal(batch.action, id_B)
    assert torch.equal(batch.reward, id_B.float() * 10.0)
    assert torch.equal(batch.terminated, id_B % 3 == 0)
    return id_B


def fill(buffer: ReplayBuffer, num_envs: int, num_steps: int, first_id: int = 1) -> list[int]:
    """Add `num_steps` steps of `num_envs` envs with consecutive ids; returns the ids added."""
    ids = list(range(first_id, first_id + num_envs * num_steps))
    for t in range(num_steps):
        add_ids(buffer, ids[t * num_envs : (t + 1) * num_envs])
    return ids


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("obs_dtype", [torch.float32, torch.int64, torch.uint8])
def test_storage_is_preallocated_in_the_given_dtypes(device, obs_dtype):
    buffer = ReplayBuffer(
        capacity=6, obs_shape=(2, 3), obs_dtype=obs_dtype, device=device,
    )
    dev = torch.device(device)
    for name, shape, dtype in [
        ("obs", (6, 2, 3), obs_dtype),
        ("next_obs", (6, 2, 3), obs_dtype),
        ("action", (6,), torch.int64),
        ("reward", (6,), torch.float32),
        ("terminated", (6,), torch.bool),
    ]:
        tensor = getattr(buffer, name)
        assert tensor.shape == shape, name
        assert tensor.dtype == dtype, name
        assert tensor.device.type == dev.type, name
    assert len(buffer) == 0


def test_action_shape_and_dtype_are_configurable():
    buffer = ReplayBuffer(
        capacity=4, obs_shape=(1,), obs_dtype=torch.float32, action_shape=(2,),
        action_dtype=torch.float32,
    )
    assert buffer.action.shape == (4, 2) and buffer.action.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("obs_dtype", [torch.uint8, torch.int64])
def test_integer_obs_round_trip_exactly_in_their_own_dtype(device, obs_dtype):
    buffer = ReplayBuffer(capacity=4, obs_shape=(2,), obs_dtype=obs_dtype, device=device)
    obs_NO = torch.tensor([[0, 255], [7, 200]], dtype=obs_dtype, device=device)
    buffer.add(
        obs=obs_NO, action=torch.tensor([1, 0]), reward=torch.tensor([0.5, -1.0]),
        next_obs=obs_NO.flip(0), terminated=torch.tensor([True, False]),
    )
    batch = buffer.sample(64)
    assert batch.obs.dtype == obs_dtype and batch.next_obs.dtype == obs_dtype
    assert batch.obs.device.type == torch.device(device).type
    row_B = (batch.obs[:, 0] == 7).long()  # which of the two stored rows each sample is
    assert 0 < row_B.sum() < 64  # both rows were drawn
    assert torch.equal(batch.obs, obs_NO[row_B])
    assert torch.equal(batch.next_obs, obs_NO[1 - row_B])
    assert torch.equal(batch.action, 1 - row_B)
    assert torch.equal(batch.reward, torch.tensor([0.5, -1.0], device=device)[row_B])
    assert torch.equal(batch.terminated, row_B == 0)


def test_wrap_around_keeps_the_newest_transitions_in_their_ring_slots():
    buffer = make_buffer(7)
    add_ids(buffer, [0, 1, 2])
    assert (len(buffer), buffer.pos) == (3, 3)
    add_ids(buffer, [3, 4, 5])
    assert (len(buffer), buffer.pos) == (6, 6)
    add_ids(buffer, [6, 7, 8])  # slots 6, 0, 1
    assert (len(buffer), buffer.pos) == (7, 2)
    add_ids(buffer, [9, 10, 11])  # slots 2, 3, 4
    assert (len(buffer), buffer.pos) == (7, 5)
    # 0..4 were overwritten; 5 and 6 survive in their original slots.
    expected_slots = torch.tensor([7, 8, 9, 10, 11, 5, 6])
    assert torch.equal(buffer.obs[:, 0], expected_slots.float())
    assert torch.equal(buffer.next_obs[:, 0], expected_slots.float() + 0.5)
    assert torch.equal(buffer.action, expected_slots)
    assert torch.equal(buffer.reward, expected_slots.float() * 10.0)
    assert torch.equal(buffer.terminated, expected_slots % 3 == 0)


@pytest.mark.parametrize("capacity, num_envs", [(10, 3), (9, 3), (5, 5), (4, 1), (11, 4)])
def test_wrap_around_generic(capacity, num_envs):
    buffer = make_buffer(capacity)
    for step in range(7):
        add_ids(buffer, list(range(step * num_envs, (step + 1) * num_envs)))
        total = (step + 1) * num_envs
        assert len(buffer) == min(total, capacity)
        assert buffer.pos == total % capacity
    # Consecutive ids go to consecutive slots, so id k sits in slot k % capacity, and the
    # survivors are exactly the newest `capacity` ids.
    survivors = torch.arange(total - capacity, total)
    expected_slots = torch.empty(capacity, dtype=torch.int64)
    expected_slots[survivors % capacity] = survivors
    assert torch.equal(buffer.action, expected_slots)
    assert torch.equal(buffer.obs[:, 0], expected_slots.float())


def test_add_more_envs_than_capacity_raises():
    buffer = make_buffer(3)
    with pytest.raises(ValueError, match="capacity"):
        add_ids(buffer, [1, 2, 3, 4])
    assert len(buffer) == 0
    add_ids(buffer, [1, 2, 3])  # exactly capacity is fine
    assert len(buffer) == 3


@pytest.mark.parametrize("capacity", [0, -1])
def test_nonpositive_capacity_raises(capacity):
    with pytest.raises(ValueError, match="capacity"):
        make_buffer(capacity)


def test_sample_from_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        make_buffer(5).sample(1)


def test_sampling_only_returns_stored_transitions_before_wrap():
    buffer = make_buffer(50)
    ids = fill(buffer, num_envs=4, num_steps=3)  # ids 1..12 in slots 0..11; 38 slots unwritten
    batch = buffer.sample(1200)
    assert batch.obs.shape == (1200, *OBS_SHAPE)
    id_B = ids_of(batch)
    assert set(id_B.tolist()) == set(ids)  # never an unwritten zero slot, and every stored one
    counts = torch.bincount(id_B, minlength=13)[1:]
    assert counts.min() >= 60 and counts.max() <= 140  # uniform: 100 expected for each


def test_sampling_after_wrap_returns_only_surviving_transitions():
    buffer = make_buffer(10)
    ids = fill(buffer, num_envs=3, num_steps=9)  # 27 ids; the newest 10 survive
    surviving = set(ids[-10:])
    sampled = set(ids_of(buffer.sample(1000)).tolist())
    assert sampled == surviving


def test_same_seed_same_batches_and_different_seed_different():
    buffers = [make_buffer(40, seed=s) for s in (5, 5, 6)]
    for buffer in buffers:
        fill(buffer, num_envs=4, num_steps=8)
    a, b, c = ([buffer.sample(32).action for _ in range(3)] for buffer in buffers)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not all(torch.equal(x, z) for x, z in zip(a, c))
    assert not torch.equal(a[0], a[1])  # successive draws advance the generator


@pytest.mark.parametrize("num_steps", [3, 9])  # partly filled; full after wrapping
def test_state_dict_round_trip_continues_identically(num_steps):
    buffer = make_buffer(16, seed=1)
    fill(buffer, num_envs=3, num_steps=num_steps)
    buffer.sample(8)  # advance the sampler so its state is not the initial one
    saved = io.BytesIO()
    torch.save(buffer.state_dict(), saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)

    resumed = make_buffer(16, seed=99)
    fill(resumed, num_envs=2, num_steps=2, first_id=500)  # stale contents, to be replaced
    resumed.load_state_dict(state)
    assert (len(resumed), resumed.pos) == (len(buffer), buffer.pos)
    for _ in range(3):
        x, y = buffer.sample(32), resumed.sample(32)
        for field_x, field_y in zip(x, y):
            assert torch.equal(field_x, field_y)
    # The ring pointer came back too: further adds land in the same slots.
    add_ids(buffer, [1000, 1001, 1002])
    add_ids(resumed, [1000, 1001, 1002])
    assert (len(resumed), resumed.pos) == (len(buffer), buffer.pos)
    assert torch.equal(
        buffer.action[: len(buffer)], resumed.action[: len(resumed)]
    )
    assert torch.equal(buffer.sample(64).action, resumed.sample(64).action)


def test_state_dict_holds_only_the_stored_prefix():
    buffer = make_buffer(16)
    fill(buffer, num_envs=3, num_steps=2)
    state = buffer.state_dict()
    assert state["obs"].shape == (6, *OBS_SHAPE)
    assert state["action"].tolist() == [1, 2, 3, 4, 5, 6]


def test_load_with_capacity_mismatch_raises():
    buffer = make_buffer(16)
    fill(buffer, num_envs=2, num_steps=2)
    with pytest.raises(ValueError, match="capacity"):
        make_buffer(8).load_state_dict(buffer.state_dict())


def test_nbytes_counts_every_storage_tensor():
    # float32 obs: 2 x (10 x 4 x 4 B) + int64 action 10 x 8 B + float32 reward 10 x 4 B
    # + bool terminated 10 x 1 B
    assert make_buffer(10, obs_shape=(4,)).nbytes == 320 + 80 + 40 + 10
    assert make_buffer(10, obs_shape=(2, 3), obs_dtype=torch.uint8).nbytes == 120 + 80 + 40 + 10
