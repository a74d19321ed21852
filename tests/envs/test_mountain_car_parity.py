"""rlplay's MountainCar-v0 and MountainCarContinuous-v0 against Gymnasium's own, step by step."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from envs.mountain_car import (
    ContinuousMountainCarParams,
    ContinuousMountainCarVectorEnv,
    MountainCarParams,
    MountainCarVectorEnv,
    continuous_mountain_car_step,
    mountain_car_step,
)

P = MountainCarParams()
C = ContinuousMountainCarParams()
DISCRETE, CONTINUOUS = "MountainCar-v0", "MountainCarContinuous-v0"


def gym_env(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    return env


def gym_step(env, state, action):
    """Gymnasium's env from `state` (float64): (its next state, obs, reward, terminated)."""
    env.state = np.array(state, dtype=np.float64)
    obs, reward, terminated, _, _ = env.step(action)
    return np.array(env.state, dtype=np.float64), obs, reward, terminated


def random_states(n, seed, p):
    """States over the whole range, velocities past ±max_speed, and the edge cases: the left
    wall moving left, and the goal with zero velocity."""
    rng = np.random.default_rng(seed)
    position = rng.uniform(p.min_position - 0.05, p.max_position + 0.05, size=n)
    velocity = rng.uniform(-1.5 * p.max_speed, 1.5 * p.max_speed, size=n)
    k = n // 10
    position[:k], velocity[:k] = p.min_position, -rng.uniform(0, 1.5 * p.max_speed, size=k)
    position[k:2 * k], velocity[k:2 * k] = p.goal_position, 0.0
    return np.stack([position, velocity], axis=1)


def discrete_actions(n, seed):
    return np.random.default_rng(seed).integers(0, 3, size=n)


def continuous_actions(n, seed):
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=(n, 1))  # half of them clipped


def test_constants_are_gymnasiums():
    env = gym_env(DISCRETE)
    for name in ("min_position", "max_position", "max_speed", "goal_position", "goal_velocity",
                 "force", "gravity"):
        assert getattr(P, name) == getattr(env, name), name
    assert P.max_episode_steps == gym.spec(DISCRETE).max_episode_steps == 200
    env = gym_env(CONTINUOUS)
    for name in ("min_action", "max_action", "min_position", "max_position", "max_speed",
                 "goal_position", "goal_velocity", "power"):
        assert getattr(C, name) == getattr(env, name), name
    assert C.max_episode_steps == gym.spec(CONTINUOUS).max_episode_steps == 999
    assert MountainCarVectorEnv(2).single_action_space == gym_env(DISCRETE).action_space
    assert ContinuousMountainCarVectorEnv(2).single_action_space == gym_env(CONTINUOUS).action_space
    assert MountainCarVectorEnv(2).single_observation_space == gym_env(DISCRETE).observation_space


def test_discrete_float64_single_steps_match_from_random_states():
    states, actions = random_states(2_000, 0, P), discrete_actions(2_000, 0)
    ours, terminated = mountain_car_step(torch.tensor(states), torch.tensor(actions), P)
    env = gym_env(DISCRETE)
    for i in range(len(states)):
        expected, _, reward, expected_term = gym_step(env, states[i], int(actions[i]))
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=0, atol=1e-9)
        assert bool(terminated[i]) == expected_term, (states[i], actions[i])
        assert reward == -1.0
    assert terminated.any() and not terminated.all()
    wall = (ours[:, 0] == P.min_position) & (torch.tensor(states[:, 1]) < 0)
    assert wall.any() and (ours[wall, 1] == 0).all()  # the left wall stops the car dead


def test_continuous_float64_single_steps_match_from_random_states():
    states, actions = random_states(2_000, 1, C), continuous_actions(2_000, 1)
    ours, reward, terminated = continuous_mountain_car_step(
        torch.tensor(states), torch.tensor(actions), C
    )
    env = gym_env(CONTINUOUS)
    for i in range(len(states)):
        expected, _, expected_reward, expected_term = gym_step(env, states[i], actions[i])
        # Gymnasium stores the continuous state as float32 after every step, so compare ours
        # rounded the same way; the goal test and the reward come before that rounding.
        np.testing.assert_allclose(ours[i].numpy().astype(np.float32), expected, rtol=0, atol=1e-9)
        assert bool(terminated[i]) == expected_term, (states[i], actions[i])
        assert abs(float(reward[i]) - expected_reward) <= 1e-9
    assert terminated.any() and not terminated.all()


@pytest.mark.parametrize("env_id", [DISCRETE, CONTINUOUS])
def test_float32_single_steps_match_to_1e_5(env_id):
    p, step = (P, mountain_car_step) if env_id == DISCRETE else (C, continuous_mountain_car_step)
    states = random_states(500, 2, p)
    actions = discrete_actions(500, 2) if env_id == DISCRETE else continuous_actions(500, 2)
    out = step(torch.tensor(states, dtype=torch.float32),
               torch.tensor(actions, dtype=torch.int64 if env_id == DISCRETE else torch.float32), p)
    env = gym_env(env_id)
    for i in range(len(states)):
        action = int(actions[i]) if env_id == DISCRETE else actions[i].astype(np.float32)
        _, obs, reward, _ = gym_step(env, states[i], action)
        np.testing.assert_allclose(out[0][i].numpy(), obs, rtol=0, atol=1e-5)
        if env_id == CONTINUOUS:
            assert abs(float(out[1][i]) - reward) <= 1e-5


def test_goal_is_inclusive_at_zero_velocity():
    # Start exactly at the goal with the velocity that the step cancels to exactly 0: the car
    # stays on goal_position with velocity 0, and `>=` on both makes that a termination.
    env = gym_env(DISCRETE)
    for action in range(3):
        x = (action - 1) * P.force + math.cos(3 * P.goal_position) * (-P.gravity)
        state = np.array([P.goal_position, -x])
        nxt, terminated = mountain_car_step(torch.tensor(state[None]), torch.tensor([action]), P)
        expected, _, _, expected_term = gym_step(env, state, action)
        assert tuple(expected) == (P.goal_position, 0.0) and expected_term
        assert tuple(nxt[0].tolist()) == (P.goal_position, 0.0) and bool(terminated[0])
    env = gym_env(CONTINUOUS)
    for a in (-1.0, 0.25, 1.0):
        state = np.array([C.goal_position, -(a * C.power - 0.0025 * math.cos(3 * C.goal_position))])
        nxt, reward, terminated = continuous_mountain_car_step(
            torch.tensor(state[None]), torch.tensor([[a]]), C
        )
        _, _, expected_reward, expected_term = gym_step(env, state, np.array([a]))
        assert expected_term and bool(terminated[0]) and float(nxt[0, 1]) == 0.0
        assert float(reward[0]) == expected_reward == 100.0 - a * a * 0.1


def test_continuous_clips_the_force_but_charges_the_raw_action():
    # Gymnasium clips the action for the physics only; the control cost uses the action given.
    state = torch.tensor([[-0.5, 0.01]], dtype=torch.float64)
    for a, clipped in [(3.0, 1.0), (-2.5, -1.0), (0.5, 0.5)]:
        nxt, reward, _ = continuous_mountain_car_step(state, torch.tensor([[a]]), C)
        ref, _, _ = continuous_mountain_car_step(state, torch.tensor([[clipped]]), C)
        assert torch.equal(nxt, ref)
        assert float(reward[0]) == -(a * a) * 0.1
        _, _, expected_reward, _ = gym_step(gym_env(CONTINUOUS), state[0].numpy(), np.array([a]))
        assert float(reward[0]) == expected_reward


def energy_pumping(rng, velocity, noise=0.3):
    """Push along the velocity (reaches the goal) with some random actions mixed in."""
    return 2 * (velocity >= 0) - 1 if rng.random() > noise else rng.uniform(-1.5, 1.5)


@pytest.mark.parametrize("env_id", [DISCRETE, CONTINUOUS])
def test_long_trajectories_match_gymnasium_including_time_limit(env_id):
    rng = np.random.default_rng(3)
    ref = gym.make(env_id)  # with its TimeLimit
    limit = gym.spec(env_id).max_episode_steps
    if env_id == DISCRETE:
        ours = MountainCarVectorEnv(1, dtype=torch.float64)
    else:
        ours = ContinuousMountainCarVectorEnv(1, dtype=torch.float64)
    # Gymnasium rounds the continuous state to float32 every step; ours stays float64.
    atol = 1e-9 if env_id == DISCRETE else 1e-5
    ours.reset(seed=0)
    outcomes = []
    for episode in range(4):
        ref.reset(seed=episode)
        ours.state = torch.tensor(np.array(ref.unwrapped.state, dtype=np.float64)[None])
        pump = episode % 2 == 1  # even episodes: random actions into the time limit
        for t in range(limit):
            position, velocity = ref.unwrapped.state
            if env_id == DISCRETE:
                action = int(rng.integers(3)) if not pump else (
                    int(1 + energy_pumping(rng, velocity)) if rng.random() > 0.2 else 1)
                a_ours = torch.tensor([action])
            else:
                a = energy_pumping(rng, velocity) if pump else rng.uniform(-1.5, 1.5)
                action = np.array([a], dtype=np.float32)
                a_ours = torch.tensor(action[None], dtype=torch.float64)
            _, r_ref, term_ref, trunc_ref, _ = ref.step(action)
            _, r, term, trunc, info = ours.step(a_ours)
            np.testing.assert_allclose(
                info["final_obs"][0].numpy(), np.array(ref.unwrapped.state, np.float64),
                rtol=0, atol=atol,
            )
            assert abs(float(r[0]) - r_ref) <= atol
            assert (bool(term[0]), bool(trunc[0])) == (term_ref, trunc_ref), t
            if term_ref or trunc_ref:
                assert bool(info["_episode"][0]) and int(info["episode"]["l"][0]) == t + 1
                outcomes.append("terminated" if term_ref else "truncated")
                break
    assert outcomes.count("truncated") >= 1 and outcomes.count("terminated") >= 1, outcomes


@pytest.mark.parametrize("cls", [MountainCarVectorEnv, ContinuousMountainCarVectorEnv])
def test_autoreset_truncation_and_final_obs(cls):
    p = cls(1).params
    env = cls(3, params=type(p)(max_episode_steps=5))
    obs, _ = env.reset(seed=0)
    action = torch.ones(3, dtype=torch.int64) if cls is MountainCarVectorEnv else torch.zeros(3, 1)
    total = torch.zeros(3)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
    assert truncated.all() and not terminated.any()  # the 5th step of every env hits the limit
    # final_obs holds where the episode ended; obs is a fresh reset within Gymnasium's range.
    assert not torch.equal(info["final_obs"], obs)
    assert ((obs[:, 0] >= p.reset_low) & (obs[:, 0] <= p.reset_high)).all()
    assert (obs[:, 1] == 0).all()
    assert torch.equal(info["_episode"], truncated | terminated)
    assert torch.equal(info["episode"]["l"], torch.full((3,), 5))
    torch.testing.assert_close(info["episode"]["r"], total)
    obs, *_, info = env.step(action)
    assert not info["_episode"].any()  # counters restarted
    assert torch.equal(info["final_obs"], obs)  # equal to the next obs where nothing ended


def test_termination_resets_only_that_env_and_pays_100():
    env = ContinuousMountainCarVectorEnv(2, dtype=torch.float64)
    env.reset(seed=0)
    env.state = torch.tensor([[C.goal_position - 0.01, 0.05], [-0.5, 0.0]], dtype=torch.float64)
    obs, reward, terminated, truncated, info = env.step(torch.tensor([[1.0], [0.0]]))
    assert terminated.tolist() == [True, False] and not truncated.any()
    assert reward.tolist() == [100.0 - 0.1, 0.0]
    assert info["_episode"].tolist() == [True, False]
    assert info["episode"]["r"].tolist() == [100.0 - 0.1, 0.0]
    assert float(info["final_obs"][0, 0]) >= C.goal_position and float(obs[0, 1]) == 0.0
    assert torch.equal(info["final_obs"][1], obs[1])


@pytest.mark.parametrize("cls", [MountainCarVectorEnv, ContinuousMountainCarVectorEnv])
def test_seeding_and_per_env_resets(cls):
    def trajectory(seed):
        env = cls(4, params=type(cls(1).params)(max_episode_steps=7))
        obs, _ = env.reset(seed=seed)
        out = [obs]
        action = (torch.tensor([0, 1, 2, 1]) if cls is MountainCarVectorEnv
                  else torch.tensor([[-1.0], [0.0], [1.0], [0.3]]))
        for t in range(30):  # through several autoresets
            obs, *_ = env.step(action)
            out.append(obs)
        return torch.stack(out)

    a, b, c = trajectory(1), trajectory(1), trajectory(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a[0]}) == 4  # envs start from different states
    assert a.dtype == torch.float32


@pytest.mark.parametrize("cls", [MountainCarVectorEnv, ContinuousMountainCarVectorEnv])
def test_dtypes_and_render(cls):
    env = cls(2, dtype=torch.float64, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.dtype == torch.float64 and obs.shape == (2, 2)
    assert env.observation_space.shape == (2, 2)
    pytest.importorskip("pygame")
    frame = env.render()[0]
    assert frame.shape == (400, 600, 3) and frame.std() > 0
    env.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    states, actions = torch.tensor(random_states(1_000, 4, C)), torch.tensor(continuous_actions(1_000, 4))
    cpu = continuous_mountain_car_step(states, actions, C)
    gpu = continuous_mountain_car_step(states.cuda(), actions.cuda(), C)
    for g, c in zip(gpu, cpu):
        torch.testing.assert_close(g.cpu(), c, rtol=0, atol=1e-9)
