"""MountainCar-v0 and MountainCarContinuous-v0 as batched torch envs: Gymnasium's dynamics,
N envs per tensor op, any device."""

from __future__ import annotations

from dataclasses import dataclass
import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from envs import batched


@dataclass(frozen=True)
class MountainCarParams:
    """Gymnasium MountainCar-v0's constants, kept apart from the state."""

    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    gravity: float = 0.0025
    max_episode_steps: int = 200
    reset_low: float = -0.6
    reset_high: float = -0.4


@dataclass(frozen=True)
class ContinuousMountainCarParams:
    """Gymnasium MountainCarContinuous-v0's constants, kept apart from the state."""

    min_action: float = -1.0
    max_action: float = 1.0
    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.45  # not 0.5 as in the discrete env (Gymnasium's comment says so)
    goal_velocity: float = 0.0
    power: float = 0.0015
    gravity: float = 0.0025  # a literal in Gymnasium's step, not an attribute
    max_episode_steps: int = 999
    reset_low: float = -0.6
    reset_high: float = -0.4


def _move(position_N, velocity_N, p):
    """Clip velocity, move, clip position, stop dead at the left wall; then the goal test.

    Shared by both envs, in Gymnasium's order. The wall test is exact equality with
    min_position, which holds after the clamp because the clamp returns min_position itself.
    """
    velocity_N = velocity_N.clamp(-p.max_speed, p.max_speed)
    position_N = (position_N + velocity_N).clamp(p.min_position, p.max_position)
    velocity_N = torch.where((position_N == p.min_position) & (velocity_N < 0), 0.0, velocity_N)
    terminated_N = (position_N >= p.goal_position) & (velocity_N >= p.goal_velocity)
    return torch.stack((position_N, velocity_N), dim=-1), terminated_N


def mountain_car_step(
    state_N2: torch.Tensor, action_N: torch.Tensor, p: MountainCarParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of every env: (next state (N, 2), terminated (N,)). Pure; no host sync.

    The same operations, in the same order, as gymnasium.envs.classic_control.MountainCarEnv.step
    (Moore 1990); the reward is -1 on every step, the terminating one included.
    """
    position_N, velocity_N = state_N2.unbind(-1)
    push_N = (action_N - 1).to(state_N2.dtype) * p.force
    # velocity += (a - 1)·force + cos(3x)·(-gravity): the sum first, then the add, as Gymnasium.
    velocity_N = velocity_N + (push_N + torch.cos(3 * position_N) * (-p.gravity))
    return _move(position_N, velocity_N, p)


def continuous_mountain_car_step(
    state_N2: torch.Tensor, action_N1: torch.Tensor, p: ContinuousMountainCarParams
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of every env: (next state (N, 2), reward (N,), terminated (N,)). Pure.

    As gymnasium.envs.classic_control.Continuous_MountainCarEnv.step. The physics uses the
    action clipped to [min_action, max_action], but the control cost 0.1·a² uses the action
    as given, unclipped, exactly as Gymnasium does (`math.pow(action[0], 2) * 0.1`).
    """
    position_N, velocity_N = state_N2.unbind(-1)
    action_N = action_N1[..., 0].to(state_N2.dtype)
    force_N = action_N.clamp(p.min_action, p.max_action)
    velocity_N = velocity_N + (force_N * p.power - p.gravity * torch.cos(3 * position_N))
    next_N2, terminated_N = _move(position_N, velocity_N, p)
    reward_N = torch.where(terminated_N, 100.0, 0.0).to(state_N2.dtype) - action_N.square() * 0.1
    return next_N2, reward_N, terminated_N


def mountain_car_reset(reset_u_N, p):
    """Gymnasium's reset: position uniform on [reset_low, reset_high), velocity 0."""
    position_N = reset_u_N * (p.reset_high - p.reset_low) + p.reset_low
    return torch.stack((position_N, torch.zeros_like(position_N)), dim=-1)


def mountain_car_transition(state_N2, elapsed_N, return_N, action_N, reset_u_N, p):
    """A whole MountainCar vector step with same-step autoreset, as one pure function."""
    final_N2, terminated = mountain_car_step(state_N2, action_N, p)
    reward_N = torch.full_like(return_N, -1.0)  # -1 every step, the terminating one included
    return batched.autoreset(
        final_N2, mountain_car_reset(reset_u_N, p), terminated, reward_N, elapsed_N, return_N,
        p.max_episode_steps,
    )


def continuous_mountain_car_transition(state_N2, elapsed_N, return_N, action_N1, reset_u_N, p):
    """A whole MountainCarContinuous vector step with same-step autoreset, as one pure function."""
    final_N2, reward_N, terminated = continuous_mountain_car_step(state_N2, action_N1, p)
    return batched.autoreset(
        final_N2, mountain_car_reset(reset_u_N, p), terminated, reward_N, elapsed_N, return_N,
        p.max_episode_steps,
    )


def _observation_space(p, dtype):
    low = np.array([p.min_position, -p.max_speed], dtype=batched.np_dtype(dtype))
    high = np.array([p.max_position, p.max_speed], dtype=batched.np_dtype(dtype))
    return gym.spaces.Box(low, high, dtype=batched.np_dtype(dtype))


class MountainCarVectorEnv(VectorEnv):
    """N MountainCar-v0 envs stepping as tensor ops on `device`, with the project's env contract.

    Same-step autoreset: envs that finish are reset within the same `step`, their true last
    observation in `info["final_obs"]` (a dense (N, 2) batch, equal to the next obs elsewhere).
    Truncation at 200 steps per env, as Gymnasium's TimeLimit does it (a step can be both
    terminated and truncated). Resets draw from the env's own `torch.Generator`. `info`
    always holds `episode` (`r`, `l`) and the mask `_episode`, so no step needs a host sync.
    Rewards and returns are float32 (-1 is exact in any dtype).
    """

    metadata = {**batched.METADATA, "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: MountainCarParams = MountainCarParams(),
        compile: bool = False,
        counter_rng: bool | None = None,
    ):
        batched.setup(
            self, num_envs=num_envs, device=device, dtype=dtype, params=params,
            render_mode=render_mode, observation_space=_observation_space(params, dtype),
            action_space=gym.spaces.Discrete(3), state_dim=2, uniform_shape=(),
            transition=mountain_car_transition, reset=mountain_car_reset,
            return_dtype=torch.float32, compile=compile, counter_rng=counter_rng,
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return batched.reset(self, seed)

    def step(self, actions: torch.Tensor):
        return batched.step(self, torch.as_tensor(actions, device=self.device))

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own MountainCar renderer."""
        from gymnasium.envs.classic_control.mountain_car import MountainCarEnv

        return batched.render(self, lambda: MountainCarEnv(render_mode="rgb_array"))

    def close(self, **kwargs):
        batched.close(self)


class ContinuousMountainCarVectorEnv(VectorEnv):
    """N MountainCarContinuous-v0 envs as tensor ops on `device`, with the project's env contract.

    As `MountainCarVectorEnv`, with a Box action of shape (1,) per env (actions (N, 1), clipped
    to [-1, 1] for the physics only), truncation at 999 steps, and rewards and returns in the
    env's dtype (100 on reaching the goal minus 0.1·a² every step).
    """

    metadata = {**batched.METADATA, "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: ContinuousMountainCarParams = ContinuousMountainCarParams(),
        compile: bool = False,
        counter_rng: bool | None = None,
    ):
        action_space = gym.spaces.Box(
            params.min_action, params.max_action, shape=(1,), dtype=batched.np_dtype(dtype)
        )
        batched.setup(
            self, num_envs=num_envs, device=device, dtype=dtype, params=params,
            render_mode=render_mode, observation_space=_observation_space(params, dtype),
            action_space=action_space, state_dim=2, uniform_shape=(),
            transition=continuous_mountain_car_transition, reset=mountain_car_reset,
            compile=compile, counter_rng=counter_rng,
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return batched.reset(self, seed)

    def step(self, actions: torch.Tensor):
        actions_N1 = torch.as_tensor(actions, device=self.device).reshape(self.num_envs, 1)
        return batched.step(self, actions_N1)

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own MountainCarContinuous renderer."""
        from gymnasium.envs.classic_control.continuous_mountain_car import (
            Continuous_MountainCarEnv,
        )

        return batched.render(self, lambda: Continuous_MountainCarEnv(render_mode="rgb_array"))

    def close(self, **kwargs):
        batched.close(self)
