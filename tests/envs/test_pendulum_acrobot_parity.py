"""rlplay's Pendulum-v1 and Acrobot-v1 against Gymnasium's own envs, step by step."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control import pendulum as gym_pendulum

from envs.acrobot import AcrobotParams, AcrobotVectorEnv, acrobot_obs, acrobot_step
from envs.pendulum import PendulumParams, PendulumVectorEnv, pendulum_obs, pendulum_step

PP, AP = PendulumParams(), AcrobotParams()


def gym_pendulum_step(env, state, u):
    """Gymnasium's PendulumEnv from float64 `state` with torque `u`: (next state, obs, reward)."""
    env.state = np.array(state, dtype=np.float64)
    obs, reward, terminated, truncated, _ = env.step(np.array([u], dtype=np.float64))
    assert not terminated and not truncated
    return env.state.copy(), obs, reward


def gym_acrobot_step(env, state, action):
    """Gymnasium's AcrobotEnv from float64 `state`: (next state, obs, reward, terminated)."""
    env.state = np.array(state, dtype=np.float64)
    obs, reward, terminated, _, _ = env.step(int(action))
    return env.state.copy(), obs, reward, terminated


def pendulum_states(n, seed):
    """Angles far outside [-π, π] (exact odd multiples of π among them, where angle_normalize
    flips), speeds beyond max_speed, torques beyond max_torque."""
    rng = np.random.default_rng(seed)
    states = rng.uniform([-30.0, -12.0], [30.0, 12.0], size=(n, 2))
    states[: n // 10, 0] = np.pi * rng.integers(-9, 10, size=n // 10)
    return states, rng.uniform(-4.0, 4.0, size=n)


def acrobot_states(n, seed):
    """A third near the terminal boundary -cos θ1 - cos(θ1 + θ2) = 1, a third with angles near
    ±π (so the step wraps them), the rest anywhere; velocities beyond ±MAX_VEL_1/2."""
    rng = np.random.default_rng(seed)
    states = rng.uniform([-np.pi, -np.pi, -16.0, -32.0], [np.pi, np.pi, 16.0, 32.0], size=(n, 4))
    k = n // 3
    # On the boundary: θ1 ∈ (π/3, 5π/3) and θ2 = arccos(-1 - cos θ1) - θ1, then a small velocity.
    theta1 = rng.uniform(np.pi / 3 + 1e-3, 5 * np.pi / 3 - 1e-3, size=k)
    theta2 = np.arccos(np.clip(-1.0 - np.cos(theta1), -1, 1)) * rng.choice([-1, 1], size=k) - theta1
    states[:k] = np.stack([theta1, theta2, rng.uniform(-0.3, 0.3, (2, k))[0],
                           rng.uniform(-0.3, 0.3, (2, k))[1]], axis=1)
    states[:k, :2] = (states[:k, :2] + np.pi) % (2 * np.pi) - np.pi
    states[k : 2 * k, :2] = rng.choice([-1, 1], (k, 2)) * rng.uniform(np.pi - 0.3, np.pi, (k, 2))
    return states, rng.integers(0, 3, size=n)


# --- Pendulum --------------------------------------------------------------------------------


def test_pendulum_constants_are_gymnasiums():
    env = gym.make("Pendulum-v1").unwrapped
    for name in ("g", "m", "l", "dt", "max_speed", "max_torque"):
        assert getattr(PP, name) == getattr(env, name), name
    assert PP.max_episode_steps == gym.spec("Pendulum-v1").max_episode_steps == 200
    assert (PP.reset_theta, PP.reset_theta_dot) == (gym_pendulum.DEFAULT_X, gym_pendulum.DEFAULT_Y)
    ours = PendulumVectorEnv(2)
    assert ours.single_action_space == env.action_space
    assert ours.single_observation_space == env.observation_space


def test_pendulum_float64_single_steps_match_from_random_states():
    env = gym.make("Pendulum-v1").unwrapped
    env.reset(seed=0)
    states, torques = pendulum_states(2_000, seed=0)
    ours, reward = pendulum_step(torch.tensor(states), torch.tensor(torques), PP)
    obs = pendulum_obs(ours)
    for i in range(len(states)):
        expected, expected_obs, expected_reward = gym_pendulum_step(env, states[i], torques[i])
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(obs[i].numpy(), expected_obs, rtol=0, atol=1e-6)  # its obs is f32
        assert abs(float(reward[i]) - expected_reward) <= 1e-9, (states[i], torques[i])


def test_pendulum_float32_single_steps_match_to_1e_5():
    env = gym.make("Pendulum-v1").unwrapped
    env.reset(seed=0)
    states, torques = pendulum_states(500, seed=1)
    # |θ| within 3π: float32 itself spaces values ~4e-6 apart near |θ| = 30, which alone puts
    # the cost angle_normalize(θ)² off by ~1e-5 (Gymnasium keeps θ unwrapped, in float64).
    states[:, 0] = (states[:, 0] + 3 * np.pi) % (6 * np.pi) - 3 * np.pi
    states, torques = states.astype(np.float32), torques.astype(np.float32)
    ours, reward = pendulum_step(torch.tensor(states), torch.tensor(torques), PP)
    assert ours.dtype == reward.dtype == torch.float32
    for i in range(len(states)):
        expected, _, expected_reward = gym_pendulum_step(env, states[i], torques[i])
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=0, atol=1e-5)
        assert abs(float(reward[i]) - expected_reward) <= 1e-5


def test_pendulum_long_trajectories_match_gymnasium_including_time_limit():
    rng = np.random.default_rng(3)
    for episode in range(3):
        ref = gym.make("Pendulum-v1")
        ref.reset(seed=episode)
        ours = PendulumVectorEnv(1, dtype=torch.float64)
        ours.reset(seed=0)
        ours.state = torch.tensor(ref.unwrapped.state[None], dtype=torch.float64)
        total = 0.0
        for t in range(250):
            u = rng.uniform(-2.5, 2.5, size=1).astype(np.float32)  # beyond ±2 at times: clipped
            obs_ref, r_ref, term_ref, trunc_ref, _ = ref.step(u)
            obs, r, term, trunc, info = ours.step(torch.tensor(u[None]))
            state_ref = torch.tensor(ref.unwrapped.state[None])
            torch.testing.assert_close(info["final_obs"], pendulum_obs(state_ref), rtol=0, atol=1e-9)
            assert abs(float(r[0]) - r_ref) <= 1e-9
            assert (bool(term[0]), bool(trunc[0])) == (term_ref, trunc_ref)
            total += r_ref
            if trunc_ref:
                break
        assert t + 1 == 200  # truncated by the time limit, never terminated
        assert int(info["episode"]["l"][0]) == 200
        assert abs(float(info["episode"]["r"][0]) - total) <= 1e-6


def test_pendulum_autoreset_truncation_and_final_obs():
    env = PendulumVectorEnv(3, params=PendulumParams(max_episode_steps=5))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 3) and obs.dtype == torch.float32
    total = torch.zeros(3)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(torch.full((3, 1), 2.0))
        total += reward
        assert not terminated.any()
    assert truncated.all()
    assert not torch.equal(info["final_obs"], obs)
    assert obs[:, 2].abs().max() <= 1.0  # fresh θ̇ ~ U[-1, 1]
    assert torch.equal(info["_episode"], truncated)
    assert torch.equal(info["episode"]["l"], torch.full((3,), 5))
    torch.testing.assert_close(info["episode"]["r"], total)
    obs, *_, info = env.step(torch.zeros(3, 1))
    assert not info["_episode"].any() and torch.equal(info["final_obs"], obs)


def test_pendulum_seeding_and_per_env_resets():
    def trajectory(seed):
        env = PendulumVectorEnv(4, params=PendulumParams(max_episode_steps=20))
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for t in range(60):
            obs, *_ = env.step(torch.tensor([[-2.0], [2.0], [0.0], [1.0]]))
            out.append(obs)
        return torch.stack(out)

    a, b, c = trajectory(1), trajectory(1), trajectory(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a[0]}) == 4
    assert not torch.equal(a[20], a[40])  # each autoreset draws new states


def test_pendulum_render():
    env = PendulumVectorEnv(2, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(torch.ones(2, 1))
    frame = env.render()[0]
    assert frame.shape == (500, 500, 3) and frame.std() > 0
    env.close()


# --- Acrobot ---------------------------------------------------------------------------------


def test_acrobot_constants_are_gymnasiums():
    env = gym.make("Acrobot-v1").unwrapped
    names = {"dt": "dt", "link_length_1": "LINK_LENGTH_1", "link_length_2": "LINK_LENGTH_2",
             "link_mass_1": "LINK_MASS_1", "link_mass_2": "LINK_MASS_2",
             "link_com_pos_1": "LINK_COM_POS_1", "link_com_pos_2": "LINK_COM_POS_2",
             "link_moi": "LINK_MOI", "max_vel_1": "MAX_VEL_1", "max_vel_2": "MAX_VEL_2",
             "book_or_nips": "book_or_nips"}
    for ours, theirs in names.items():
        assert getattr(AP, ours) == getattr(env, theirs), ours
    assert list(AP.avail_torque) == env.AVAIL_TORQUE
    assert env.torque_noise_max == 0.0  # not modelled
    assert AP.max_episode_steps == gym.spec("Acrobot-v1").max_episode_steps == 500
    ours = AcrobotVectorEnv(2)
    assert ours.single_action_space == env.action_space
    assert ours.single_observation_space == env.observation_space


def test_acrobot_float64_single_steps_match_from_random_states():
    env = gym.make("Acrobot-v1").unwrapped
    env.reset(seed=0)
    states, actions = acrobot_states(1_500, seed=0)
    ours, reward, terminated = acrobot_step(torch.tensor(states), torch.tensor(actions), AP)
    obs = acrobot_obs(ours)
    n_terminal = 0
    for i in range(len(states)):
        expected, expected_obs, expected_reward, expected_term = gym_acrobot_step(
            env, states[i], actions[i]
        )
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(obs[i].numpy(), expected_obs, rtol=0, atol=1e-5)  # its obs is f32
        assert bool(terminated[i]) == expected_term, (states[i], actions[i])
        assert float(reward[i]) == expected_reward
        n_terminal += expected_term
    assert 100 < n_terminal < 1_400  # both sides of the boundary were exercised
    assert ours[:, :2].abs().max() <= np.pi  # wrapped
    assert ours[:, 2].abs().max() == AP.max_vel_1 and ours[:, 3].abs().max() == AP.max_vel_2


def test_acrobot_wrap_is_gymnasiums_loop():
    from gymnasium.envs.classic_control.acrobot import wrap as gym_wrap

    from envs.acrobot import wrap

    x = np.concatenate([np.linspace(-25, 25, 2001), np.pi * np.arange(-7, 8), [np.pi, -np.pi]])
    ours = wrap(torch.tensor(x), -np.pi, np.pi).numpy()
    np.testing.assert_allclose(ours, [gym_wrap(v, -np.pi, np.pi) for v in x], rtol=0, atol=1e-12)


def test_acrobot_float32_single_steps_match_to_1e_5():
    env = gym.make("Acrobot-v1").unwrapped
    env.reset(seed=0)
    states, actions = acrobot_states(500, seed=1)
    # Velocities up to half the bounds: near ±MAX_VEL the dt = 0.2 RK4 step amplifies float32
    # rounding (the θ̇² terms reach ~800) to ~1e-4, float32's limit there, not a bug.
    states[:, 2:] = np.clip(states[:, 2:], -np.array([6.0, 12.0]), [6.0, 12.0])
    states = states.astype(np.float32)
    ours, reward, terminated = acrobot_step(torch.tensor(states), torch.tensor(actions), AP)
    assert ours.dtype == reward.dtype == torch.float32
    for i in range(len(states)):
        expected, _, _, expected_term = gym_acrobot_step(env, states[i], actions[i])
        # The one wrap at exactly ±π can land on either side in float32; compare on the circle.
        diff = ours[i].double().numpy() - expected
        diff[:2] = (diff[:2] + np.pi) % (2 * np.pi) - np.pi
        np.testing.assert_allclose(diff, 0.0, rtol=0, atol=1e-5)
        margin = -np.cos(expected[0]) - np.cos(expected[1] + expected[0]) - 1.0
        if abs(margin) > 1e-5:  # float32 rounding may flip the flag only right on the boundary
            assert bool(terminated[i]) == expected_term


def pump(state):
    """Energy pumping: torque along θ̇2, so the acrobot swings up and terminates in ~100 steps."""
    return 2 if state[3] > 0 else 0


@pytest.mark.parametrize("policy", ["pump", "random"])
def test_acrobot_long_trajectories_match_gymnasium_including_time_limit(policy):
    rng = np.random.default_rng(3)
    lengths = []
    for episode in range(3):
        ref = gym.make("Acrobot-v1")
        ref.reset(seed=episode)
        ours = AcrobotVectorEnv(1, dtype=torch.float64)
        ours.reset(seed=0)
        ours.state = torch.tensor(ref.unwrapped.state[None], dtype=torch.float64)
        total = 0.0
        for t in range(600):
            action = pump(ref.unwrapped.state) if policy == "pump" else int(rng.integers(3))
            obs_ref, r_ref, term_ref, trunc_ref, _ = ref.step(action)
            obs, r, term, trunc, info = ours.step(torch.tensor([action]))
            state_ref = torch.tensor(ref.unwrapped.state[None])
            torch.testing.assert_close(info["final_obs"], acrobot_obs(state_ref), rtol=0, atol=1e-9)
            assert (float(r[0]), bool(term[0]), bool(trunc[0])) == (r_ref, term_ref, trunc_ref)
            total += r_ref
            if term_ref or trunc_ref:
                break
        lengths.append(t + 1)
        assert bool(info["_episode"][0]) and int(info["episode"]["l"][0]) == t + 1
        assert float(info["episode"]["r"][0]) == total
    if policy == "pump":
        assert max(lengths) < 500  # terminated
    else:
        assert 500 in lengths  # a random policy runs into the time limit


def near_terminal_state():
    """θ1 = π (link 1 straight up), θ2 = 0: the tip is at height 2 and stays above 1 after a step."""
    return torch.tensor([np.pi - 0.05, 0.0, 0.0, 0.0])


def test_acrobot_autoreset_termination_and_final_obs():
    env = AcrobotVectorEnv(2, dtype=torch.float64)
    env.reset(seed=0)
    env.state = torch.stack([near_terminal_state().double(), env.state[1]])
    before = env.state.clone()
    obs, reward, terminated, truncated, info = env.step(torch.tensor([1, 1]))
    assert terminated.tolist() == [True, False] and not truncated.any()
    assert reward.tolist() == [0.0, -1.0]
    expected = acrobot_step(before, torch.tensor([1, 1]), AP)[0]
    torch.testing.assert_close(info["final_obs"], acrobot_obs(expected), rtol=0, atol=0)
    assert torch.equal(obs[1], info["final_obs"][1])
    assert env.state[0].abs().max() <= AP.reset_bound  # env 0 started afresh
    assert info["_episode"].tolist() == [True, False]
    assert info["episode"]["l"].tolist() == [1, 0] and info["episode"]["r"].tolist() == [0.0, 0.0]
    assert env.elapsed.tolist() == [0, 1]


def test_acrobot_terminated_and_truncated_can_coincide():
    env = AcrobotVectorEnv(1, params=AcrobotParams(max_episode_steps=1))
    env.reset(seed=0)
    env.state = near_terminal_state()[None]
    _, _, terminated, truncated, info = env.step(torch.tensor([0]))
    assert bool(terminated[0]) and bool(truncated[0]) and bool(info["_episode"][0])


def test_acrobot_seeding_and_per_env_resets():
    def trajectory(seed):
        env = AcrobotVectorEnv(4, params=AcrobotParams(max_episode_steps=20))
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for t in range(60):
            obs, *_ = env.step(torch.tensor([0, 1, 2, 1]))
            out.append(obs)
        return torch.stack(out)

    a, b, c = trajectory(1), trajectory(1), trajectory(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a[0]}) == 4
    assert not torch.equal(a[20], a[40])


def test_acrobot_resets_are_float32_like_gymnasiums():
    env = AcrobotVectorEnv(256, dtype=torch.float64)
    env.reset(seed=0)
    assert torch.equal(env.state, env.state.float().double())
    assert env.state.abs().max() <= 0.1 and env.state.std() > 0.05


def test_acrobot_render():
    env = AcrobotVectorEnv(2, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()[0]
    assert frame.shape == (500, 500, 3) and frame.std() > 0
    env.close()


# --- both ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    states, torques = pendulum_states(1_000, seed=4)
    cpu, r_cpu = pendulum_step(torch.tensor(states), torch.tensor(torques), PP)
    gpu, r_gpu = pendulum_step(torch.tensor(states).cuda(), torch.tensor(torques).cuda(), PP)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-9)
    torch.testing.assert_close(r_gpu.cpu(), r_cpu, rtol=0, atol=1e-9)
    states, actions = acrobot_states(1_000, seed=4)
    cpu = acrobot_step(torch.tensor(states), torch.tensor(actions), AP)
    gpu = acrobot_step(torch.tensor(states).cuda(), torch.tensor(actions).cuda(), AP)
    for c, g in zip(cpu, gpu):
        torch.testing.assert_close(g.cpu(), c, rtol=0, atol=1e-9)
    for cls in (PendulumVectorEnv, AcrobotVectorEnv):
        env = cls(8, device="cuda")
        obs, _ = env.reset(seed=0)
        obs, reward, *_ = env.step(torch.zeros(8, dtype=torch.int64, device="cuda")
                                   if cls is AcrobotVectorEnv else torch.zeros(8, 1, device="cuda"))
        assert obs.is_cuda and reward.is_cuda
