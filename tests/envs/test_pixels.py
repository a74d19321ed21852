"""Pixel envs: Atari's DQN preprocessing and MinAtar's grids, by env id through envs.make."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs

pytest.importorskip("ale_py")
pytest.importorskip("minatar")

ATARI = "ALE/SpaceInvaders-v5"  # rewards of 5-30 per alien: clipping is visible


def play_one_game(vec, seed=0):
    """Random actions in env 0 until its episode statistics arrive; every step's data, stacked."""
    obs, _ = vec.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    steps = []
    for _ in range(5_000):
        action = torch.randint(0, vec.single_action_space.n, (vec.num_envs,), generator=gen)
        next_obs, reward, terminated, truncated, info = vec.step(action)
        steps.append((obs, reward, terminated, truncated, info["final_obs"]))
        obs = next_obs
        if "episode" in info and info["_episode"][0]:
            return steps, float(info["episode"]["r"][0]), int(info["episode"]["l"][0])
    raise AssertionError("no game finished in 5,000 steps")


def test_atari_obs_are_84x84_uint8_stacks_of_four():
    vec = envs.make(ATARI, 2)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == torch.uint8
    assert vec.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert vec.metadata["frame_stack"] == 4
    # The stack at reset is the reset frame repeated; a step shifts it by one frame.
    assert all(torch.equal(obs[:, k], obs[:, 3]) for k in range(3))
    next_obs, *_ = vec.step(torch.zeros(2, dtype=torch.int64))
    assert torch.equal(next_obs[:, :3], obs[:, 1:])
    assert envs.get_env_state(vec) is None  # the emulator's state cannot be copied: say so
    vec.close()


def test_atari_training_clips_rewards_ends_lives_but_logs_true_game_returns():
    train, evaluate = envs.make(ATARI, 1, training=True), envs.make(ATARI, 1)
    steps, logged, length = play_one_game(train)
    rewards = torch.cat([r for _, r, *_ in steps])
    terminated = torch.cat([t for _, _, t, *_ in steps])
    assert set(rewards.tolist()) <= {0.0, 1.0}
    assert logged > rewards.sum() > 0  # the log has the game's 5-30 points, training sees 1s
    assert terminated.sum() == 3 and terminated[-1]  # each of 3 lives ends a training episode
    # Hidden steps, counted in the game's length: FIRE at reset, and after each of the 2 lives
    # lost before the last, a FIRE and the no-op that continues the game.
    assert length == len(steps) + 1 + 2 * 2
    steps, logged, length = play_one_game(evaluate)
    rewards = torch.cat([r for _, r, *_ in steps])
    assert rewards.max() > 1 and logged == rewards.sum() and length == len(steps) + 1 + 2
    terminated = torch.cat([t for _, _, t, *_ in steps])
    assert terminated.sum() == 1  # evaluation plays whole games
    train.close(), evaluate.close()


def test_atari_final_obs_is_the_last_frame_stack_of_the_episode():
    steps, *_ = play_one_game(envs.make(ATARI, 1, training=True))
    for (obs, _, terminated, truncated, final_obs), nxt in zip(steps, steps[1:]):
        if terminated[0] or truncated[0]:
            assert torch.equal(final_obs[0, :3], obs[0, 1:])  # the episode's own frames
            assert all(torch.equal(nxt[0][0, k], nxt[0][0, 3]) for k in range(3))  # a fresh stack
        else:
            assert torch.equal(final_obs, nxt[0])


def test_minatar_ids_work_and_grids_come_channels_first():
    vec = envs.make("MinAtar/Breakout-v1", 2)
    obs, _ = vec.reset(seed=3)
    assert obs.shape == (2, 4, 10, 10) and obs.dtype == torch.uint8
    assert vec.single_observation_space == gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)
    assert vec.single_action_space == gym.spaces.Discrete(3)  # v1: the minimal action set
    raw = gym.make("MinAtar/Breakout-v1")
    raw_obs, _ = raw.reset(seed=3)
    np.testing.assert_array_equal(obs[0].numpy(), np.moveaxis(raw_obs, -1, 0))
    assert envs.get_env_state(vec) is None
    vec.close()


def test_minatar_renders_uint8_frames_for_video():
    vec = envs.make("MinAtar/Breakout-v1", 1, render_mode="rgb_array")
    vec.reset(seed=0)
    frame = vec.render()[0]
    assert frame.dtype == np.uint8 and frame.shape == (160, 160, 3) and frame.max() > 0
    vec.close()


def test_namespaced_ids_import_their_package_and_suggest_close_ones():
    assert envs.check_env_id("MinAtar/SpaceInvaders-v1") == "MinAtar/SpaceInvaders-v1"
    with pytest.raises(envs.UnknownEnvError, match="did you mean MinAtar/Breakout-v1"):
        envs.check_env_id("MinAtar/Breakout-v9")
    assert envs.check_env_id("PongNoFrameskip-v4") == "PongNoFrameskip-v4"  # ale_py's old ids
