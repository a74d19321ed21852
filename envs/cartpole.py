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


def cartpole_transition(state_N4, elapsed_N, return_N, action_N, reset_u_N4, p: CartPoleParams):
    """A whole vector step with same-step autoreset, as one pure function (one fused kernel
    under torch.compile): returns (state, elapsed, episode return, final obs, terminated,
    truncated, done, return and length of the episodes that ended)."""
    final_N4, terminated = cartpole_step(state_N4, action_N, p)
    elapsed_N = elapsed_N + 1
    return_N = return_N + 1.0  # CartPole-v1 pays 1 per step, the terminating one included
    truncated = elapsed_N >= p.max_episode_steps  # as TimeLimit: can coincide with terminated
    done = terminated | truncated
    reset_N4 = reset_u_N4 * (2 * p.reset_bound) - p.reset_bound  # Gymnasium's reset range
    # Same-step autoreset without branching on tensor values: keep the fresh state where done.
    state_N4 = torch.where(done[:, None], reset_N4, final_N4)
    ended_return, ended_length = torch.where(done, return_N, 0.0), torch.where(done, elapsed_N, 0)
    return (
        state_N4, torch.where(done, 0, elapsed_N), torch.where(done, 0.0, return_N), final_N4,
        terminated, truncated, done, ended_return, ended_length,
    )


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
        compile: bool = False,
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
        # torch.compile fuses the step into one kernel: ~4x faster for small N on CPU, after a
        # one-time compile of ~20 s (needs a C++ compiler on CPU). Off by default.
        self._transition = (
            torch.compile(cartpole_transition, dynamic=False) if compile else cartpole_transition
        )
        self._reward = torch.ones(num_envs, dtype=torch.float32, device=self.device)

    def _reset_states(self) -> torch.Tensor:
        b = self.params.reset_bound
        u = torch.rand(self.num_envs, 4, generator=self.generator, device=self.device,
                       dtype=self.dtype)
        return u * (2 * b) - b  # uniform on [-b, b), Gymnasium's reset range

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = self._reset_states()
        self.elapsed = torch.zeros_like(self.elapsed)
        self.episode_return = torch.zeros_like(self.episode_return)
        return self.state, {}

    def step(self, actions: torch.Tensor):
        reset_u = torch.rand(
            self.num_envs, 4, generator=self.generator, device=self.device, dtype=self.dtype
        )
        (self.state, self.elapsed, self.episode_return, final_obs, terminated, truncated, done,
         ended_return, ended_length) = self._transition(
            self.state, self.elapsed, self.episode_return,
            torch.as_tensor(actions, device=self.device), reset_u, self.params,
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
        """Env 0 as an RGB frame, drawn by Gymnasium's own CartPole renderer."""
        if self._renderer is None:
            from gymnasium.envs.classic_control.cartpole import CartPoleEnv

            self._renderer = CartPoleEnv(render_mode="rgb_array")
        self._renderer.state = self.state[0].double().cpu().numpy()  # sync: rendering only
        return (self._renderer.render(),)

    def close(self, **kwargs):
        if self._renderer is not None:
            self._renderer.close()
