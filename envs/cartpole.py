"""CartPole-v1 as a batched torch env: Gymnasium's dynamics, N envs per tensor op, any device."""

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
class CartPoleParams:
    """Gymnasium CartPole-v1's constants, kept apart from the state."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length
    force_mag: float = 10.0
    tau: float = 0.02  # seconds per step
    theta_threshold: float = 12 * 2 * math.pi / 360
    x_threshold: float = 2.4
    max_episode_steps: int = 500
    reset_bound: float = 0.05

    @property
    def total_mass(self) -> float:
        return self.masspole + self.masscart

    @property
    def polemass_length(self) -> float:
        return self.masspole * self.length


def cartpole_step(
    state_N4: torch.Tensor, action_N: torch.Tensor, p: CartPoleParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step of every env: (next state (N, 4), terminated (N,)). Pure; no host sync.

    The same equations, in the same order, as gymnasium.envs.classic_control.CartPoleEnv.step
    (Florian 2007, "Correct equations for the dynamics of the cart-pole system").
    """
    x, x_dot, theta, theta_dot = state_N4.unbind(-1)
    force = torch.where(action_N == 1, p.force_mag, -p.force_mag).to(state_N4.dtype)
    costheta, sintheta = torch.cos(theta), torch.sin(theta)
    temp = (force + p.polemass_length * theta_dot.square() * sintheta) / p.total_mass
    thetaacc = (p.gravity * sintheta - costheta * temp) / (
        p.length * (4.0 / 3.0 - p.masspole * costheta.square() / p.total_mass)
    )
    xacc = temp - p.polemass_length * thetaacc * costheta / p.total_mass
    next_N4 = torch.stack(
        (x + p.tau * x_dot, x_dot + p.tau * xacc, theta + p.tau * theta_dot,
         theta_dot + p.tau * thetaacc), dim=-1,
    )
    x, theta = next_N4[:, 0], next_N4[:, 2]
    terminated = (
        (x < -p.x_threshold) | (x > p.x_threshold)
        | (theta < -p.theta_threshold) | (theta > p.theta_threshold)
    )
    return next_N4, terminated


class CartPoleVectorEnv(VectorEnv):
    """N CartPole-v1 envs stepping as tensor ops on `device`, with the project's env contract.

    Same-step autoreset: envs that finish are reset within the same `step`, their true last
    observation in `info["final_obs"]` (a dense (N, 4) batch, equal to the next obs elsewhere).
    Truncation at 500 steps per env, as Gymnasium's TimeLimit does it (a step can be both
    terminated and truncated). Resets draw from the env's own `torch.Generator`. `info`
    always holds `episode` (`r`, `l`) and the mask `_episode`, so no step needs a host sync.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"],
                "render_fps": 50}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: CartPoleParams = CartPoleParams(),
    ):
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        self.params, self.render_mode = params, render_mode
        high = np.array(
            [params.x_threshold * 2, np.inf, params.theta_threshold * 2, np.inf], dtype=np.float32
        )
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np_dtype)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.generator = torch.Generator(device=self.device)
        self.state = torch.zeros(num_envs, 4, dtype=dtype, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.episode_return = torch.zeros(num_envs, dtype=torch.float32, device=self.device)
        self._renderer = None

    def _reset_states(self) -> torch.Tensor:
        b = self.params.reset_bound
        u = torch.rand(self.num_envs, 4, generator=self.generator, device=self.device,
                       dtype=self.dtype)
        return u * (2 * b) - b  # uniform on [-b, b), Gymnasium's reset range

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = self._reset_states()
        self.elapsed.zero_()
        self.episode_return.zero_()
        return self.state.clone(), {}

    def step(self, actions: torch.Tensor):
        next_state, terminated = cartpole_step(
            self.state, torch.as_tensor(actions, device=self.device), self.params
        )
        self.elapsed += 1
        truncated = self.elapsed >= self.params.max_episode_steps
        reward = torch.ones(self.num_envs, dtype=torch.float32, device=self.device)
        self.episode_return += reward
        done = terminated | truncated
        info: dict[str, Any] = {
            "final_obs": next_state,
            "episode": {
                "r": torch.where(done, self.episode_return, 0.0),
                "l": torch.where(done, self.elapsed, 0),
            },
            "_episode": done,
        }
        # Same-step autoreset without branching on tensor values: draw fresh states for all,
        # keep them where an episode ended.
        self.state = torch.where(done[:, None], self._reset_states(), next_state)
        self.elapsed = torch.where(done, 0, self.elapsed)
        self.episode_return = torch.where(done, 0.0, self.episode_return)
        return self.state.clone(), reward, terminated, truncated, info

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own CartPole renderer."""
        if self._renderer is None:
            from gymnasium.envs.classic_control.cartpole import CartPoleEnv

            self._renderer = CartPoleEnv(render_mode="rgb_array")
        self._renderer.state = self.state[0].double().cpu().numpy()  # sync: rendering only
        return (self._renderer.render(),)

    def close(self, **kwargs):
        if self._renderer is not None:
            self._renderer.close()
