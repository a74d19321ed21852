"""CartPole-v1 as a batched torch env: Gymnasium's dynamics, N envs per tensor op, any device."""

from __future__ import annotations

import math
from dataclasses import dataclass
import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from envs import batched


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
    # Euler: each component plus tau times its derivative, in one op over the (N, 4) state.
    next_N4 = state_N4 + p.tau * torch.stack((x_dot, xacc, theta_dot, thetaacc), dim=-1)
    terminated = (
        (next_N4[:, 0].abs() > p.x_threshold) | (next_N4[:, 2].abs() > p.theta_threshold)
    )
    return next_N4, terminated


def cartpole_reset(u_N4: torch.Tensor, p: CartPoleParams) -> torch.Tensor:
    """Fresh states from uniforms on [0, 1): Gymnasium's uniform(-0.05, 0.05, size=4)."""
    return u_N4 * (2 * p.reset_bound) - p.reset_bound


def cartpole_transition(state_N4, elapsed_N, return_N, action_N, reset_u_N4, p: CartPoleParams):
    """A whole vector step with same-step autoreset, as one pure function (one fused kernel
    under torch.compile)."""
    final_N4, terminated = cartpole_step(state_N4, action_N, p)
    reward_N = torch.ones_like(return_N)  # 1 per step, the terminating one included
    return batched.autoreset(
        final_N4, cartpole_reset(reset_u_N4, p), terminated, reward_N, elapsed_N, return_N,
        p.max_episode_steps,
    )


class CartPoleVectorEnv(VectorEnv):
    """N CartPole-v1 envs stepping as tensor ops on `device`, with the project's env contract.

    Same-step autoreset: envs that finish are reset within the same `step`, their true last
    observation in `info["final_obs"]` (a dense (N, 4) batch, equal to the next obs elsewhere).
    Truncation at 500 steps per env, as Gymnasium's TimeLimit does it (a step can be both
    terminated and truncated). Resets draw from the env's own `torch.Generator`. `info`
    always holds `episode` (`r`, `l`) and the mask `_episode`, so no step needs a host sync.
    """

    metadata = {**batched.METADATA, "render_fps": 50}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: CartPoleParams = CartPoleParams(),
        compile: bool = False,
        counter_rng: bool | None = None,
    ):
        high = np.array(
            [params.x_threshold * 2, np.inf, params.theta_threshold * 2, np.inf], dtype=np.float32
        )
        batched.setup(
            self, num_envs=num_envs, device=device, dtype=dtype, params=params,
            render_mode=render_mode,
            observation_space=gym.spaces.Box(-high, high, dtype=batched.np_dtype(dtype)),
            action_space=gym.spaces.Discrete(2), state_dim=4, uniform_shape=(4,),
            transition=cartpole_transition, reset=cartpole_reset, return_dtype=torch.float32,
            compile=compile, counter_rng=counter_rng,
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return batched.reset(self, seed)

    def step(self, actions: torch.Tensor):
        return batched.step(self, torch.as_tensor(actions, device=self.device))

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own CartPole renderer."""
        from gymnasium.envs.classic_control.cartpole import CartPoleEnv

        return batched.render(self, lambda: CartPoleEnv(render_mode="rgb_array"))

    def close(self, **kwargs):
        batched.close(self)
