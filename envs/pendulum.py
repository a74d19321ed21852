"""Pendulum-v1 as a batched torch env: Gymnasium's dynamics, N envs per tensor op, any device."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space


@dataclass(frozen=True)
class PendulumParams:
    """Gymnasium Pendulum-v1's constants, kept apart from the state."""

    g: float = 10.0  # Gymnasium's default (`gym.make("Pendulum-v1", g=...)` changes it)
    m: float = 1.0
    l: float = 1.0
    dt: float = 0.05  # seconds per step
    max_speed: float = 8.0
    max_torque: float = 2.0
    max_episode_steps: int = 200
    reset_theta: float = math.pi  # reset θ ~ U[-reset_theta, reset_theta] (Gymnasium's DEFAULT_X)
    reset_theta_dot: float = 1.0  # reset θ̇ ~ U[-reset_theta_dot, reset_theta_dot] (DEFAULT_Y)


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """Gymnasium's ((x + π) mod 2π) − π; torch.remainder takes the divisor's sign, like numpy's %."""
    return torch.remainder(x + math.pi, 2 * math.pi) - math.pi


def pendulum_obs(state_N2: torch.Tensor) -> torch.Tensor:
    """Observation (cos θ, sin θ, θ̇) of every env: (N, 3)."""
    theta, theta_dot = state_N2.unbind(-1)
    return torch.stack((torch.cos(theta), torch.sin(theta), theta_dot), dim=-1)


def pendulum_step(
    state_N2: torch.Tensor, action_N: torch.Tensor, p: PendulumParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step of every env: (next state (θ, θ̇) (N, 2), reward (N,)). Pure; no host sync.

    The same equations, in the same order, as gymnasium.envs.classic_control.PendulumEnv.step:
    the cost is taken from the state *before* the update, and the new θ uses the new (clipped)
    θ̇ (semi-implicit Euler). θ itself is never wrapped; only the cost normalises it.
    """
    th, thdot = state_N2.unbind(-1)
    u = action_N
    if not u.is_floating_point() or torch.finfo(u.dtype).bits > torch.finfo(th.dtype).bits:
        u = u.to(th.dtype)  # (a dtype check, not a tensor value: no host sync)
    u = u.clamp(-p.max_torque, p.max_torque)
    # Like NumPy (NEP 50) in Gymnasium, the torque terms stay in the action's dtype: a float32
    # action (its action_space's dtype) gives float32 0.001·u² and 3/(m l²)·u even when the
    # state is float64, ~1e-8 apart from float64 math per step.
    costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
    newthdot = thdot + (3 * p.g / (2 * p.l) * torch.sin(th) + 3.0 / (p.m * p.l**2) * u) * p.dt
    newthdot = newthdot.clamp(-p.max_speed, p.max_speed)
    newth = th + newthdot * p.dt
    return torch.stack((newth, newthdot), dim=-1), -costs


def pendulum_reset(u_N2: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    """Fresh states from uniforms on [0, 1): Gymnasium's np_random.uniform(-high, high)."""
    high = (p.reset_theta, p.reset_theta_dot)  # Python floats: no host-to-device copy per step
    return torch.stack([-h + 2 * h * u for h, u in zip(high, u_N2.unbind(-1))], dim=-1)


def pendulum_transition(state_N2, elapsed_N, return_N, action_N, reset_u_N2, p: PendulumParams):
    """A whole vector step with same-step autoreset, as one pure function (one fused kernel
    under torch.compile): returns (state, obs, elapsed, episode return, reward, final obs,
    terminated, truncated, done, return and length of the episodes that ended)."""
    final_N2, reward_N = pendulum_step(state_N2, action_N, p)
    elapsed_N = elapsed_N + 1
    return_N = return_N + reward_N
    terminated = torch.zeros_like(elapsed_N, dtype=torch.bool)  # Pendulum never terminates
    truncated = elapsed_N >= p.max_episode_steps  # as TimeLimit
    done = terminated | truncated
    reset_N2 = pendulum_reset(reset_u_N2, p)
    # Same-step autoreset without branching on tensor values: keep the fresh state where done.
    state_N2 = torch.where(done[:, None], reset_N2, final_N2)
    ended_return, ended_length = torch.where(done, return_N, 0.0), torch.where(done, elapsed_N, 0)
    return (
        state_N2, pendulum_obs(state_N2), torch.where(done, 0, elapsed_N),
        torch.where(done, 0.0, return_N), reward_N, pendulum_obs(final_N2), terminated,
        truncated, done, ended_return, ended_length,
    )


class PendulumVectorEnv(VectorEnv):
    """N Pendulum-v1 envs stepping as tensor ops on `device`, with the project's env contract.

    The internal state is (θ, θ̇) (N, 2); observations are (cos θ, sin θ, θ̇) (N, 3). Same-step
    autoreset: envs that finish are reset within the same `step`, their true last observation
    in `info["final_obs"]` (a dense (N, 3) batch, equal to the next obs elsewhere). Pendulum
    never terminates; every episode is truncated at 200 steps, as Gymnasium's TimeLimit does
    it. Resets draw from the env's own `torch.Generator`. `info` always holds `episode`
    (`r`, `l`) and the mask `_episode`, so no step needs a host sync.
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
        params: PendulumParams = PendulumParams(),
        compile: bool = False,
    ):
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        self.params, self.render_mode = params, render_mode
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        high = np.array([1.0, 1.0, params.max_speed], dtype=np_dtype)
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np_dtype)
        self.single_action_space = gym.spaces.Box(
            -params.max_torque, params.max_torque, shape=(1,), dtype=np_dtype
        )
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.generator = torch.Generator(device=self.device)
        self.state = torch.zeros(num_envs, 2, dtype=dtype, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.episode_return = torch.zeros(num_envs, dtype=dtype, device=self.device)
        self._last_u = None  # env 0's torque arrow, for rendering
        self._renderer = None
        self._transition = (
            torch.compile(pendulum_transition, dynamic=False) if compile else pendulum_transition
        )

    def _uniform(self) -> torch.Tensor:
        return torch.rand(self.num_envs, 2, generator=self.generator, device=self.device,
                          dtype=self.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = pendulum_reset(self._uniform(), self.params)
        self.elapsed = torch.zeros_like(self.elapsed)
        self.episode_return = torch.zeros_like(self.episode_return)
        self._last_u = None
        return pendulum_obs(self.state), {}

    def step(self, actions: torch.Tensor):
        action_N = torch.as_tensor(actions, device=self.device).reshape(self.num_envs)
        (self.state, obs, self.elapsed, self.episode_return, reward, final_obs, terminated,
         truncated, done, ended_return, ended_length) = self._transition(
            self.state, self.elapsed, self.episode_return, action_N, self._uniform(), self.params,
        )
        self._last_u = action_N
        info: dict[str, Any] = {
            "final_obs": final_obs,
            "episode": {"r": ended_return, "l": ended_length},
            "_episode": done,
        }
        return obs, reward, terminated, truncated, info

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own Pendulum renderer."""
        if self._renderer is None:
            from gymnasium.envs.classic_control.pendulum import PendulumEnv

            self._renderer = PendulumEnv(render_mode="rgb_array", g=self.params.g)
        self._renderer.state = self.state[0].double().cpu().numpy()  # sync: rendering only
        self._renderer.last_u = (
            None if self._last_u is None
            else float(self._last_u[0].clamp(-self.params.max_torque, self.params.max_torque))
        )
        return (self._renderer.render(),)

    def close(self, **kwargs):
        if self._renderer is not None:
            self._renderer.close()
