"""Every torch env's `torch.compile`d step against its eager step (CartPole's is in
test_cartpole_parity.py, in the default run). Slow: about 20 s of compiling per env on CPU."""

import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the rlplay/ ids)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                       reason="torch.compile on CPU needs a C++ compiler"),
]


def trajectory(env_id: str, compile: bool, num_envs: int = 16, steps: int = 250):
    """(observations, final observations and rewards; terminated and truncated flags) of a seeded
    random-action run long enough to cross the time limit (Pendulum's 200 steps)."""
    # counter_rng: the eager env draws its resets as the compiled one does by default
    env = gym.make_vec(
        env_id, num_envs=num_envs, compile=compile, counter_rng=True, dtype=torch.float64
    )
    obs, _ = env.reset(seed=3)
    env.action_space.seed(0)
    values, flags = [], []
    for _ in range(steps):
        action = torch.as_tensor(np.asarray(env.action_space.sample()))
        obs, reward, terminated, truncated, info = env.step(action)
        values.append(torch.cat([obs, info["final_obs"], reward[:, None].to(obs.dtype)], dim=1))
        flags.append(torch.stack([terminated, truncated], dim=1))
    return torch.stack(values), torch.stack(flags)


@pytest.mark.parametrize("env_id", [
    "rlplay/Acrobot-v1", "rlplay/MountainCar-v0", "rlplay/MountainCarContinuous-v0",
    "rlplay/Pendulum-v1",
])
def test_compiled_step_matches_eager(env_id):
    compiled_values, compiled_flags = trajectory(env_id, True)
    eager_values, eager_flags = trajectory(env_id, False)
    # Fused kernels round differently (FMA). In float32 that rounding grows along Acrobot's and
    # Pendulum's trajectories (to ~5e-5 after 150 steps), so compare in float64, to the issue's
    # 1e-9; the episode boundaries must not move at all.
    torch.testing.assert_close(compiled_values, eager_values, rtol=0, atol=1e-9)
    assert torch.equal(compiled_flags, eager_flags)
