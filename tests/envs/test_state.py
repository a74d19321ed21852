"""get_env_state/set_env_state: a restored env continues exactly, across autoresets."""

from __future__ import annotations

import io

import pytest
import torch

import envs


def step_all(vec, actions_TN: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Everything a step returns that must match after a restore (episode wall time aside)."""
    out = []
    for action_N in actions_TN:
        obs, reward, terminated, truncated, info = vec.step(action_N)
        episode = info.get("episode", {})
        out.append((
            obs, reward, terminated, truncated, info["final_obs"],
            info.get("_episode", torch.zeros(0, dtype=torch.bool)),
            episode.get("r", torch.zeros(0)), episode.get("l", torch.zeros(0)),
        ))
    return out


def save_and_load(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("env_kwargs", [None, {"max_episode_steps": 15}])
def test_restored_env_continues_identically_across_autoresets(env_kwargs):
    num_envs, num_steps = 3, 200
    g = torch.Generator().manual_seed(0)
    vec = envs.make("CartPole-v1", num_envs, device="cpu", env_kwargs=env_kwargs)
    vec.reset(seed=4)
    for _ in range(int(torch.randint(5, 40, (1,), generator=g))):
        vec.step(torch.randint(0, 2, (num_envs,), generator=g))
    state = save_and_load(envs.get_env_state(vec))  # must load with weights_only=True
    actions_TN = torch.randint(0, 2, (num_steps, num_envs), generator=g)
    expected = step_all(vec, actions_TN)

    fresh = envs.make("CartPole-v1", num_envs, device="cpu", env_kwargs=env_kwargs)
    envs.set_env_state(fresh, state)  # never reset: the snapshot is all it gets
    got = step_all(fresh, actions_TN)
    for t, (x, y) in enumerate(zip(expected, got, strict=True)):
        for a, b in zip(x, y, strict=True):
            assert torch.equal(a, b), f"step {t}"

    # The comparison crossed episode ends of both kinds it was built for.
    terminated = torch.stack([step[2] for step in expected])
    truncated = torch.stack([step[3] for step in expected])
    assert terminated.sum() >= 5
    if env_kwargs:
        assert truncated.sum() >= 5
    vec.close()
    fresh.close()


@pytest.mark.parametrize("steps_before_snapshot", [0, 1, 2, 7])
def test_snapshot_taken_early_restores_onto_a_fresh_env(steps_before_snapshot):
    vec = envs.make("CartPole-v1", 2, device="cpu")
    vec.reset(seed=5)
    for _ in range(steps_before_snapshot):
        vec.step(torch.tensor([0, 1]))
    state = save_and_load(envs.get_env_state(vec))
    actions_TN = torch.randint(0, 2, (40, 2), generator=torch.Generator().manual_seed(2))
    expected = step_all(vec, actions_TN)
    fresh = envs.make("CartPole-v1", 2, device="cpu")
    envs.set_env_state(fresh, state)
    got = step_all(fresh, actions_TN)
    assert_same_steps(expected, got)
    vec.close()
    fresh.close()


def test_restoring_rewinds_the_same_env():
    vec = envs.make("CartPole-v1", 2, device="cpu")
    vec.reset(seed=1)
    for _ in range(3):
        vec.step(torch.tensor([1, 0]))
    state = envs.get_env_state(vec)
    actions_TN = torch.randint(0, 2, (60, 2), generator=torch.Generator().manual_seed(1))
    first = step_all(vec, actions_TN)
    envs.set_env_state(vec, state)
    second = step_all(vec, actions_TN)
    assert_same_steps(first, second)
    vec.close()


def assert_same_steps(first, second):
    """Two recorded trajectories (lists of per-step tensor tuples) are bitwise equal."""
    for x, y in zip(first, second, strict=True):
        for a, b in zip(x, y, strict=True):
            assert torch.equal(a, b)


def assert_same_entry(a, b, key):
    """Encoded snapshot entries are nested dicts/lists of plain values and tensors."""
    assert type(a) is type(b), key
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), key
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), key
        for k in a:
            assert_same_entry(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_entry(x, y, f"{key}[{i}]")
    else:
        assert a == b, key


def test_snapshot_does_not_change_when_the_env_steps_on():
    vec = envs.make("CartPole-v1", 2, device="cpu")
    vec.reset(seed=2)
    state = envs.get_env_state(vec)
    before = save_and_load(state)
    for _ in range(5):
        vec.step(torch.tensor([0, 1]))
    after = save_and_load(state)
    # In-place updates (the vector env's observation batch, the running episode returns) and
    # replaced attributes (CartPole's state) alike must leave the snapshot as it was.
    layers_before = [*before["vector"], *(layer for env in before["envs"] for layer in env)]
    layers_after = [*after["vector"], *(layer for env in after["envs"] for layer in env)]
    num_arrays = 0
    for layer_before, layer_after in zip(layers_before, layers_after, strict=True):
        assert layer_before.keys() == layer_after.keys()
        for key, entry in layer_before.items():
            num_arrays += "numpy_array" in entry
            assert_same_entry(entry, layer_after[key], key)
    assert num_arrays >= 5
    vec.close()


def test_async_vector_env_has_no_state():
    vec = envs.make("CartPole-v1", 2, device="cpu", vectorization="async")
    try:
        assert envs.get_env_state(vec) is None
        sync = envs.make("CartPole-v1", 2, device="cpu")
        sync.reset(seed=0)
        with pytest.raises(ValueError, match="sync"):
            envs.set_env_state(vec, envs.get_env_state(sync))
        sync.close()
    finally:
        vec.close()


def test_set_env_state_rejects_a_different_num_envs():
    vec = envs.make("CartPole-v1", 2, device="cpu")
    vec.reset(seed=0)
    other = envs.make("CartPole-v1", 3, device="cpu")
    with pytest.raises(ValueError, match="num_envs"):
        envs.set_env_state(other, envs.get_env_state(vec))
    vec.close()
    other.close()


@pytest.mark.parametrize("env_id", ["rlplay/CartPole-v1", "rlplay/Pendulum-v1"])
def test_torch_native_env_restores_exactly_across_autoresets(env_id):
    num_envs = 4
    vec = envs.make(env_id, num_envs, device="cpu")
    vec.reset(seed=9)
    space_g = torch.Generator().manual_seed(1)
    sample = lambda: (  # noqa: E731  discrete or continuous actions, from our own generator
        torch.randint(0, 2, (num_envs,), generator=space_g) if env_id.endswith("CartPole-v1")
        else 4 * torch.rand(num_envs, 1, generator=space_g) - 2
    )
    for _ in range(150):  # into the run: mid-episode, some envs already reset once
        vec.step(sample())
    state = save_and_load(envs.get_env_state(vec))  # must load with weights_only=True
    actions_TN = torch.stack([sample() for _ in range(300)])  # Pendulum truncates at 200
    expected = step_all(vec, actions_TN)
    fresh = envs.make(env_id, num_envs, device="cpu")
    envs.set_env_state(fresh, state)  # never reset: the snapshot is all it gets
    got = step_all(fresh, actions_TN)
    assert_same_steps(expected, got)
    done = torch.stack([s[2] | s[3] for s in expected])
    assert done.sum() >= num_envs  # the comparison crossed resets, which use the generator


def test_torch_native_state_does_not_restore_onto_a_gymnasium_env():
    state = envs.get_env_state(envs.make("rlplay/CartPole-v1", 2, device="cpu"))
    with pytest.raises(ValueError, match="torch-native"):
        envs.set_env_state(envs.make("CartPole-v1", 2, device="cpu"), state)
    with pytest.raises(ValueError, match="num_envs"):
        envs.set_env_state(envs.make("rlplay/CartPole-v1", 3, device="cpu"), state)


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "Taxi-v4", "CliffWalking-v1"])
def test_toy_text_envs_with_text_maps_restore_exactly(env_id):
    # Their maps are numpy arrays of bytes, which torch has no tensor for; FrozenLake is
    # slippery, so the restored env must carry its generator too.
    num_envs, num_steps = 2, 300
    vec = envs.make(env_id, num_envs, device="cpu")
    vec.reset(seed=3)
    g = torch.Generator().manual_seed(1)
    actions_TN = torch.randint(0, int(vec.single_action_space.n), (num_steps, num_envs), generator=g)
    step_all(vec, actions_TN[:20])
    state = save_and_load(envs.get_env_state(vec))
    expected = step_all(vec, actions_TN[20:])

    fresh = envs.make(env_id, num_envs, device="cpu")
    envs.set_env_state(fresh, state)
    got = step_all(fresh, actions_TN[20:])
    for t, (x, y) in enumerate(zip(expected, got, strict=True)):
        for a, b in zip(x, y, strict=True):
            assert torch.equal(a, b), f"step {t}"
    desc = fresh.unwrapped.envs[0].unwrapped.__dict__.get("desc")
    if desc is not None:  # the map came back as the same bytes array, not a list
        assert desc.dtype.kind == "S" and (desc == vec.unwrapped.envs[0].unwrapped.desc).all()
    vec.close()
    fresh.close()
