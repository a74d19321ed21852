"""MountainCar-v0 and MountainCarContinuous-v0 as batched torch envs: Gymnasium's dynamics,
N envs per tensor op, any device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


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


def _reset_states(reset_u_N, p):
    """Gymnasium's reset: position uniform on [reset_low, reset_high), velocity 0."""
    position_N = reset_u_N * (p.reset_high - p.reset_low) + p.reset_low
    return torch.stack((position_N, torch.zeros_like(position_N)), dim=-1)


def _autoreset(final_N2, terminated, elapsed_N, return_N, reward_N, reset_u_N, p):
    """Time limit, episode stats and same-step autoreset, shared by both transitions."""
    elapsed_N = elapsed_N + 1
    return_N = return_N + reward_N
    truncated = elapsed_N >= p.max_episode_steps  # as TimeLimit: can coincide with terminated
    done = terminated | truncated
    # Same-step autoreset without branching on tensor values: keep the fresh state where done.
    state_N2 = torch.where(done[:, None], _reset_states(reset_u_N, p), final_N2)
    ended_return, ended_length = torch.where(done, return_N, 0.0), torch.where(done, elapsed_N, 0)
    return (
        state_N2, torch.where(done, 0, elapsed_N), torch.where(done, 0.0, return_N), final_N2,
        terminated, truncated, done, ended_return, ended_length,
    )


def mountain_car_transition(state_N2, elapsed_N, return_N, action_N, reset_u_N, p, reward_N):
    """A whole MountainCar vector step with same-step autoreset, as one pure function: returns
    (state, elapsed, episode return, final obs, terminated, truncated, done, return and length
    of the episodes that ended). `reward_N` is the constant -1 batch."""
    final_N2, terminated = mountain_car_step(state_N2, action_N, p)
    return _autoreset(final_N2, terminated, elapsed_N, return_N, reward_N, reset_u_N, p)


def continuous_mountain_car_transition(state_N2, elapsed_N, return_N, action_N1, reset_u_N, p):
    """A whole MountainCarContinuous vector step with same-step autoreset, as one pure function:
    returns the reward, then the same tuple as `mountain_car_transition`."""
    final_N2, reward_N, terminated = continuous_mountain_car_step(state_N2, action_N1, p)
    return (reward_N, *_autoreset(final_N2, terminated, elapsed_N, return_N, reward_N,
                                  reset_u_N, p))


def _observation_space(p, dtype):
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    low = np.array([p.min_position, -p.max_speed], dtype=np_dtype)
    high = np.array([p.max_position, p.max_speed], dtype=np_dtype)
    return gym.spaces.Box(low, high, dtype=np_dtype)


def _render(env, gym_cls):
    """Env 0 as an RGB frame, drawn by Gymnasium's own renderer for `gym_cls`."""
    if env._renderer is None:
        env._renderer = gym_cls(render_mode="rgb_array")
    env._renderer.state = env.state[0].double().cpu().numpy()  # sync: rendering only
    return (env._renderer.render(),)


class MountainCarVectorEnv(VectorEnv):
    """N MountainCar-v0 envs stepping as tensor ops on `device`, with the project's env contract.

    Same-step autoreset: envs that finish are reset within the same `step`, their true last
    observation in `info["final_obs"]` (a dense (N, 2) batch, equal to the next obs elsewhere).
    Truncation at 200 steps per env, as Gymnasium's TimeLimit does it (a step can be both
    terminated and truncated). Resets draw from the env's own `torch.Generator`. `info`
    always holds `episode` (`r`, `l`) and the mask `_episode`, so no step needs a host sync.
    Rewards and returns are float32 (-1 is exact in any dtype).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"],
                "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: MountainCarParams = MountainCarParams(),
        compile: bool = False,
    ):
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        self.params, self.render_mode = params, render_mode
        self.single_observation_space = _observation_space(params, dtype)
        self.single_action_space = gym.spaces.Discrete(3)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.generator = torch.Generator(device=self.device)
        self.state = torch.zeros(num_envs, 2, dtype=dtype, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.episode_return = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self._renderer = None
        # As CartPole: one fused kernel after a one-time compile (needs a C++ compiler on CPU).
        self._transition = (
            torch.compile(mountain_car_transition, dynamic=False) if compile
            else mountain_car_transition
        )
        self._reward = torch.full((num_envs,), -1.0, dtype=torch.float32, device=self.device)

    def _uniform(self) -> torch.Tensor:
        return torch.rand(self.num_envs, generator=self.generator, device=self.device,
                          dtype=self.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = _reset_states(self._uniform(), self.params)
        self.elapsed = torch.zeros_like(self.elapsed)
        self.episode_return = torch.zeros_like(self.episode_return)
        return self.state, {}

    def step(self, actions: torch.Tensor):
        reset_u = self._uniform()
        (self.state, self.elapsed, self.episode_return, final_obs, terminated, truncated, done,
         ended_return, ended_length) = self._transition(
            self.state, self.elapsed, self.episode_return,
            torch.as_tensor(actions, device=self.device), reset_u, self.params, self._reward,
        )
        info: dict[str, Any] = {
            "final_obs": final_obs,
            "episode": {"r": ended_return, "l": ended_length},
            "_episode": done,
        }
        # The state is replaced, never written in place, so handing it out needs no copy; the
        # reward is the same constant tensor every step (treat it as read-only).
        return self.state, self._reward, terminated, truncated, info

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own MountainCar renderer."""
        from gymnasium.envs.classic_control.mountain_car import MountainCarEnv

        return _render(self, MountainCarEnv)

    def close(self, **kwargs):
        if self._renderer is not None:
            self._renderer.close()


class ContinuousMountainCarVectorEnv(VectorEnv):
    """N MountainCarContinuous-v0 envs as tensor ops on `device`, with the project's env contract.

    As `MountainCarVectorEnv`, with a Box action of shape (1,) per env (actions (N, 1), clipped
    to [-1, 1] for the physics only), truncation at 999 steps, and rewards and returns in the
    env's dtype (100 on reaching the goal minus 0.1·a² every step).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"],
                "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: ContinuousMountainCarParams = ContinuousMountainCarParams(),
        compile: bool = False,
    ):
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        self.params, self.render_mode = params, render_mode
        self.single_observation_space = _observation_space(params, dtype)
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.single_action_space = gym.spaces.Box(
            params.min_action, params.max_action, shape=(1,), dtype=np_dtype
        )
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.generator = torch.Generator(device=self.device)
        self.state = torch.zeros(num_envs, 2, dtype=dtype, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.episode_return = torch.zeros(num_envs, dtype=dtype, device=self.device)
        self._renderer = None
        self._transition = (
            torch.compile(continuous_mountain_car_transition, dynamic=False) if compile
            else continuous_mountain_car_transition
        )

    def _uniform(self) -> torch.Tensor:
        return torch.rand(self.num_envs, generator=self.generator, device=self.device,
                          dtype=self.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = _reset_states(self._uniform(), self.params)
        self.elapsed = torch.zeros_like(self.elapsed)
        self.episode_return = torch.zeros_like(self.episode_return)
        return self.state, {}

    def step(self, actions: torch.Tensor):
        reset_u = self._uniform()
        actions_N1 = torch.as_tensor(actions, device=self.device).reshape(self.num_envs, 1)
        (reward, self.state, self.elapsed, self.episode_return, final_obs, terminated, truncated,
         done, ended_return, ended_length) = self._transition(
            self.state, self.elapsed, self.episode_return, actions_N1, reset_u, self.params,
        )
        info: dict[str, Any] = {
            "final_obs": final_obs,
            "episode": {"r": ended_return, "l": ended_length},
            "_episode": done,
        }
        return self.state, reward, terminated, truncated, info

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own MountainCarContinuous renderer."""
        from gymnasium.envs.classic_control.continuous_mountain_car import (
            Continuous_MountainCarEnv,
        )

        return _render(self, Continuous_MountainCarEnv)

    def close(self, **kwargs):
        if self._renderer is not None:
            self._renderer.close()
