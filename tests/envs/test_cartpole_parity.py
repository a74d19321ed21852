"""rlplay/CartPole-v1 against Gymnasium's own CartPole-v1, step by step.

A re-implemented CartPole in a well-known library shipped a wrong constant for years because
nobody compared trajectories; these tests are the point of having our own.
"""

import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs.cartpole import CartPoleParams, CartPoleVectorEnv, cartpole_step

P = CartPoleParams()


def gym_step(state, action):
    """Gymnasium's CartPoleEnv from `state` (float64): (its float64 next state, reward, terminated)."""
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = np.array(state, dtype=np.float64)
    obs, reward, terminated, _, _ = env.step(int(action))
    return env.state.copy(), obs, reward, terminated


def random_states(n, seed):
    """States all over and just past the termination region (|x| ≤ 2.6, |θ| ≤ 0.25)."""
    rng = np.random.default_rng(seed)
    bounds = np.array([2.6, 3.0, 0.25, 3.5])
    return rng.uniform(-bounds, bounds, size=(n, 4)), rng.integers(0, 2, size=n)


def test_constants_are_gymnasiums():
    env = gym.make("CartPole-v1").unwrapped
    for name in ("gravity", "masscart", "masspole", "length", "force_mag", "tau", "x_threshold"):
        assert getattr(P, name) == getattr(env, name), name
    assert P.theta_threshold == env.theta_threshold_radians
    assert P.total_mass == env.total_mass and P.polemass_length == env.polemass_length
    assert P.max_episode_steps == gym.spec("CartPole-v1").max_episode_steps


def test_float64_single_steps_match_from_random_states():
    states, actions = random_states(2_000, seed=0)
    ours, terminated = cartpole_step(
        torch.tensor(states, dtype=torch.float64), torch.tensor(actions), P
    )
    for i in range(len(states)):
        expected, _, reward, expected_term = gym_step(states[i], actions[i])
        np.testing.assert_allclose(ours[i].numpy(), expected, rtol=0, atol=1e-9)
        assert bool(terminated[i]) == expected_term, (states[i], actions[i])
        assert reward == 1.0


def test_float32_single_steps_match_to_1e_5():
    states, actions = random_states(500, seed=1)
    ours, _ = cartpole_step(torch.tensor(states, dtype=torch.float32), torch.tensor(actions), P)
    for i in range(len(states)):
        _, obs, _, _ = gym_step(states[i], actions[i])
        np.testing.assert_allclose(ours[i].numpy(), obs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("index, threshold", [(0, P.x_threshold), (2, P.theta_threshold)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_termination_is_strict_at_the_thresholds(index, threshold, sign):
    # Exactly at the threshold with no velocity (x and θ only move by their velocity): not
    # terminated, like Gymnasium's strict `x > x_threshold`; a hair beyond it: terminated.
    for offset, expected in [(0.0, False), (1e-12, True)]:
        state = np.zeros(4)
        state[index] = sign * (threshold + offset)
        _, terminated = cartpole_step(torch.tensor(state[None]), torch.tensor([1]), P)
        assert gym_step(state, 1)[3] == expected
        assert bool(terminated[0]) == expected


def test_long_trajectories_match_gymnasium_including_time_limit():
    rng = np.random.default_rng(3)
    for episode in range(5):
        ref = gym.make("CartPole-v1")
        obs_ref, _ = ref.reset(seed=episode)
        ours = CartPoleVectorEnv(1, dtype=torch.float64)
        ours.reset(seed=0)
        ours.state = torch.tensor(ref.unwrapped.state[None], dtype=torch.float64)
        # Mostly a balancing controller, so some episodes run into the 500-step time limit.
        for t in range(500):
            x, x_dot, theta, theta_dot = ref.unwrapped.state
            action = int(theta + 0.5 * theta_dot > 0) if rng.random() > 0.05 else int(rng.integers(2))
            obs_ref, r_ref, term_ref, trunc_ref, _ = ref.step(action)
            obs, r, term, trunc, info = ours.step(torch.tensor([action]))
            np.testing.assert_allclose(info["final_obs"][0].numpy(), ref.unwrapped.state, atol=1e-9)
            assert (float(r[0]), bool(term[0]), bool(trunc[0])) == (r_ref, term_ref, trunc_ref)
            if term_ref or trunc_ref:
                break
        assert t > 0


def test_autoreset_truncation_and_final_obs():
    env = CartPoleVectorEnv(3, params=CartPoleParams(max_episode_steps=5))
    obs, _ = env.reset(seed=0)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(3, dtype=torch.int64))
    assert truncated.all()  # the 5th step of every env hits the limit
    # final_obs holds where the episode ended; obs is a fresh reset within Gymnasium's range.
    assert not torch.equal(info["final_obs"], obs)
    assert obs.abs().max() <= P.reset_bound
    assert torch.equal(info["_episode"], truncated | terminated)
    assert torch.equal(info["episode"]["l"], torch.full((3,), 5))
    obs, *_ , info = env.step(torch.zeros(3, dtype=torch.int64))
    assert not info["_episode"].any()  # counters restarted


def test_seeding_and_per_env_resets():
    def trajectory(seed):
        env = CartPoleVectorEnv(4)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for t in range(60):
            obs, *_ = env.step(torch.tensor([0, 1, 0, 1]))
            out.append(obs)
        return torch.stack(out)

    a, b, c = trajectory(1), trajectory(1), trajectory(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row.tolist()) for row in a[0]}) == 4  # envs start from different states


def test_registered_with_gymnasium_and_reachable_through_the_factory():
    vec = gym.make_vec("rlplay/CartPole-v1", num_envs=16, device="cpu")
    assert isinstance(vec, CartPoleVectorEnv) and vec.num_envs == 16
    made = envs.make("rlplay/CartPole-v1", 8)
    obs, _ = made.reset(seed=0)
    assert obs.shape == (8, 4) and obs.dtype == torch.float32
    frame = made.render()[0]
    assert frame.shape == (400, 600, 3) and frame.std() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    states, actions = random_states(1_000, seed=4)
    cpu, term_cpu = cartpole_step(torch.tensor(states), torch.tensor(actions), P)
    gpu, term_gpu = cartpole_step(torch.tensor(states).cuda(), torch.tensor(actions).cuda(), P)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-9)
    assert torch.equal(term_gpu.cpu(), term_cpu)


@pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on CPU needs a C++ compiler"
)
def test_compiled_env_steps_exactly_like_the_eager_one():
    def trajectory(compile):
        # counter_rng: the eager env draws its resets as the compiled one does by default
        env = CartPoleVectorEnv(64, compile=compile, counter_rng=True)
        obs, _ = env.reset(seed=3)
        actions = torch.randint(0, 2, (120, 64), generator=torch.Generator().manual_seed(0))
        out = []
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(a)
            out.append(torch.cat([obs, info["final_obs"], terminated[:, None], truncated[:, None],
                                  info["episode"]["r"][:, None]], dim=1))
        return torch.stack(out)

    # The fused kernel rounds differently (FMA): float32 agrees to the 1e-5, and a flipped
    # terminated/truncated flag or episode return would show as a difference of 1 or more.
    torch.testing.assert_close(trajectory(True), trajectory(False), rtol=0, atol=1e-5)
