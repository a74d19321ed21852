"""envs.make: torch tensors out, same-step autoreset with dense final_obs, seeding, env ids."""

from __future__ import annotations

import math
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs import UnknownEnvError, check_env_id

CARTPOLE_THETA_LIMIT = 12 * 2 * math.pi / 360  # Gymnasium's CartPole termination angle
CARTPOLE_X_LIMIT = 2.4
CARTPOLE_RESET_BOUND = 0.05  # reset draws every state component from U(-0.05, 0.05)


def single_env_last_obs(seed: int, actions: list[int], **kwargs) -> np.ndarray:
    """Gymnasium's own CartPole stepped alone: the observation after `actions`."""
    env = gym.make("CartPole-v1", **kwargs)
    obs, _ = env.reset(seed=seed)
    for a in actions:
        obs, *_ = env.step(a)
    env.close()
    return obs


def test_make_speaks_torch():
    vec = envs.make("CartPole-v1", 3, device="cpu")
    obs, info = vec.reset(seed=0)
    assert isinstance(obs, torch.Tensor)
    assert obs.shape == (3, 4) and obs.dtype == torch.float32 and obs.device.type == "cpu"
    assert info == {}  # object-valued infos are dropped
    obs, reward, terminated, truncated, info = vec.step(torch.tensor([0, 1, 0]))
    assert obs.shape == (3, 4) and obs.dtype == torch.float32
    assert reward.shape == (3,) and reward.dtype.is_floating_point
    torch.testing.assert_close(reward, torch.ones(3, dtype=reward.dtype))
    assert terminated.shape == (3,) and terminated.dtype == torch.bool
    assert truncated.shape == (3,) and truncated.dtype == torch.bool
    assert isinstance(info["final_obs"], torch.Tensor)
    assert info["final_obs"].shape == (3, 4) and info["final_obs"].dtype == torch.float32
    assert vec.num_envs == 3
    assert vec.single_observation_space.shape == (4,) and vec.single_action_space.n == 2
    vec.close()


def assert_same_tree(ours, theirs, values: bool = True) -> None:
    """Equal tensors (values, dtypes, devices) in equal nested-dict structures; episode
    statistics' wall-clock times (`t`) only alike in dtype and shape."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys()
        for key in theirs:
            assert_same_tree(ours[key], theirs[key], values=key != "t")
        return
    assert isinstance(ours, torch.Tensor) and isinstance(theirs, torch.Tensor)
    assert ours.dtype == theirs.dtype and ours.device == theirs.device
    assert ours.shape == theirs.shape
    assert not values or torch.equal(ours, theirs)


def test_fast_conversion_returns_what_gymnasiums_numpy_to_torch_returns():
    """NumpyToTorchFast only skips the generic Array API path: step for step, across episode
    ends (final_obs, episode statistics), it returns what Gymnasium's wrapper returns."""
    from gymnasium.wrappers.vector import NumpyToTorch

    ours = envs.make("CartPole-v1", 4)
    theirs = NumpyToTorch(envs.make("CartPole-v1", 4).env)
    assert_same_tree(ours.reset(seed=3)[0], theirs.reset(seed=3)[0])
    g = torch.Generator().manual_seed(0)
    episodes, with_statistics = 0, 0
    for _ in range(300):
        action = torch.randint(0, 2, (4,), generator=g)
        a, b = ours.step(action), theirs.step(action.clone())
        for x, y in zip(a, b, strict=True):
            assert_same_tree(x, y)
        episodes += int(a[2].sum() + a[3].sum())
        with_statistics += "episode" in a[4]
    assert episodes > 10 and with_statistics > 10  # the comparison crossed episode ends


def test_fast_conversion_survives_a_deep_copy():
    import copy

    vec = copy.deepcopy(envs.make("CartPole-v1", 2))
    vec.reset(seed=0)
    obs, *_ = vec.step(torch.tensor([0, 1]))
    assert isinstance(obs, torch.Tensor) and obs.shape == (2, 4)


def test_fast_conversion_copies_read_only_arrays():
    from envs.wrappers import NumpyToTorchFast

    vec = envs.make("CartPole-v1", 2)
    assert isinstance(vec, NumpyToTorchFast)
    frozen = np.arange(4.0)
    frozen.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it shares a read-only buffer
        out = vec._to_torch({"x": frozen, "n": 3})
    assert torch.equal(out["x"], torch.arange(4.0, dtype=torch.float64))
    assert out["n"].item() == 3


def test_same_step_autoreset_on_termination():
    seed, actions = 0, [0, 1, 1]  # env 0 pushes left, envs 1 and 2 right: they fall soon
    vec = envs.make("CartPole-v1", 3, device="cpu")
    obs, _ = vec.reset(seed=seed)
    for t in range(1, 100):
        prev_obs = obs
        obs, reward, terminated, truncated, info = vec.step(torch.tensor(actions))
        if terminated.any():
            break
        assert "_episode" not in info or not info["_episode"].any()
        torch.testing.assert_close(info["final_obs"], obs, rtol=0, atol=0)
    else:
        pytest.fail("no CartPole episode terminated in 100 steps")
    assert not truncated.any() and not terminated.all()
    final_obs = info["final_obs"]
    done = terminated
    # The finished envs: final_obs is past the termination threshold; obs is a fresh reset.
    for i in torch.nonzero(done).flatten().tolist():
        x, theta = float(final_obs[i, 0]), float(final_obs[i, 2])
        assert abs(x) > CARTPOLE_X_LIMIT or abs(theta) > CARTPOLE_THETA_LIMIT
        assert (obs[i].abs() <= CARTPOLE_RESET_BOUND).all()
        assert not torch.equal(obs[i], final_obs[i])
        assert (prev_obs[i] - final_obs[i]).abs().max() < 0.5  # one physics step from prev_obs
        # ...and it is exactly the obs Gymnasium's own env reaches (env i is seeded seed + i).
        expected = single_env_last_obs(seed + i, [actions[i]] * t)
        torch.testing.assert_close(final_obs[i], torch.from_numpy(expected))
    # The others: final_obs is just the next obs.
    torch.testing.assert_close(final_obs[~done], obs[~done], rtol=0, atol=0)
    # Episode statistics for exactly the finished envs: reward 1 per step.
    assert torch.equal(info["_episode"], done)
    assert torch.equal(info["episode"]["l"][done], torch.full((int(done.sum()),), t))
    episode_return = info["episode"]["r"][done]
    torch.testing.assert_close(episode_return, torch.full_like(episode_return, float(t)))
    # The reset env carries on from its fresh obs.
    next_obs, *_ = vec.step(torch.tensor(actions))
    for i in torch.nonzero(done).flatten().tolist():
        assert (next_obs[i] - obs[i]).abs().max() < 0.5
    vec.close()


def test_truncation_by_max_episode_steps():
    seed, limit = 3, 5
    vec = envs.make("CartPole-v1", 2, device="cpu", env_kwargs={"max_episode_steps": limit})
    obs, _ = vec.reset(seed=seed)
    actions = [0, 1, 0, 1, 0]
    for t, a in enumerate(actions, start=1):
        obs, reward, terminated, truncated, info = vec.step(torch.tensor([a, a]))
        assert not terminated.any()
        if t < limit:
            assert not truncated.any()
            torch.testing.assert_close(info["final_obs"], obs, rtol=0, atol=0)
    assert truncated.all()
    # final_obs is the true last obs, equal to Gymnasium's own env's; obs is already reset.
    for i in range(2):
        expected = single_env_last_obs(seed + i, actions)
        torch.testing.assert_close(info["final_obs"][i], torch.from_numpy(expected))
    assert not torch.equal(info["final_obs"], obs)
    assert (obs.abs() <= CARTPOLE_RESET_BOUND).all()
    assert torch.equal(info["_episode"], torch.tensor([True, True]))
    assert info["episode"]["l"].tolist() == [limit, limit]
    assert info["episode"]["r"].tolist() == [float(limit), float(limit)]
    # The next episode is counted afresh.
    obs, reward, terminated, truncated, info = vec.step(torch.tensor([0, 1]))
    assert not truncated.any()
    vec.close()


def rollout(seed: int, num_steps: int = 60):
    vec = envs.make("CartPole-v1", 3, device="cpu")
    obs, _ = vec.reset(seed=seed)
    g = torch.Generator().manual_seed(123)
    steps = [obs]
    for _ in range(num_steps):
        obs, reward, terminated, truncated, info = vec.step(torch.randint(0, 2, (3,), generator=g))
        steps += [obs, reward, terminated, truncated, info["final_obs"]]
    vec.close()
    return steps


def test_same_seed_gives_identical_trajectories():
    a, b = rollout(seed=11), rollout(seed=11)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert any(bool(x.any()) for x in a[3::5])  # the trajectories include episode ends


def test_different_seed_gives_different_trajectories():
    assert not torch.equal(rollout(seed=11, num_steps=1)[0], rollout(seed=12, num_steps=1)[0])


def test_envs_in_a_batch_are_seeded_seed_plus_index():
    vec = envs.make("CartPole-v1", 4, device="cpu")
    obs, _ = vec.reset(seed=20)
    for i in range(4):
        for j in range(i):
            assert not torch.equal(obs[i], obs[j])
        torch.testing.assert_close(obs[i], torch.from_numpy(single_env_last_obs(20 + i, [])))
    vec.close()


@pytest.mark.parametrize("env_id", ["cartpole-v1", "CartPol-v1", "CARTPOLE-V1"])
def test_unknown_id_suggests_a_close_one(env_id):
    with pytest.raises(UnknownEnvError, match=re.escape("did you mean CartPole-v1")):
        envs.make(env_id, 1)
    with pytest.raises(ValueError):  # callers may catch it as a plain ValueError
        check_env_id(env_id)


def test_unknown_id_without_close_match_names_the_registry_listing():
    with pytest.raises(UnknownEnvError, match="pprint_registry") as excinfo:
        check_env_id("Xyzzy-v0")
    assert "did you mean" not in str(excinfo.value)


def test_check_env_id_returns_the_bare_registered_id():
    assert check_env_id("CartPole-v1") == "CartPole-v1"
    assert check_env_id("gymnasium.envs.classic_control:CartPole-v1") == "CartPole-v1"


def test_check_env_id_reports_an_unimportable_module():
    with pytest.raises(UnknownEnvError, match="cannot import module 'no_such_module_xyz'"):
        check_env_id("no_such_module_xyz:CartPole-v1")
