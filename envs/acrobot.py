"""Acrobot-v1 as a batched torch env: Gymnasium's dynamics, N envs per tensor op, any device."""

from __future__ import annotations

import math
from dataclasses import dataclass
import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from envs import batched


@dataclass(frozen=True)
class AcrobotParams:
    """Gymnasium Acrobot-v1's constants, kept apart from the state.

    Acrobot-v1's torque noise is 0 (`torque_noise_max = 0.0`), so it is not modelled here.
    """

    dt: float = 0.2  # seconds per step (one RK4 step over [0, dt])
    link_length_1: float = 1.0
    link_length_2: float = 1.0  # unused by the dynamics, as in Gymnasium (rendering only)
    link_mass_1: float = 1.0
    link_mass_2: float = 1.0
    link_com_pos_1: float = 0.5
    link_com_pos_2: float = 0.5
    link_moi: float = 1.0  # moment of inertia of both links
    max_vel_1: float = 4 * math.pi
    max_vel_2: float = 9 * math.pi
    avail_torque: tuple[float, float, float] = (-1.0, 0.0, 1.0)
    g: float = 9.8  # hard-coded inside Gymnasium's _dsdt
    book_or_nips: str = "book"  # Sutton & Barto's equations; "nips" drops one term
    max_episode_steps: int = 500
    reset_bound: float = 0.1


def _dsdt(s_N5: torch.Tensor, p: AcrobotParams) -> torch.Tensor:
    """Time derivative of the augmented state (θ1, θ2, θ̇1, θ̇2, torque): AcrobotEnv._dsdt."""
    m1, m2, l1 = p.link_mass_1, p.link_mass_2, p.link_length_1
    lc1, lc2, I1, I2, g = p.link_com_pos_1, p.link_com_pos_2, p.link_moi, p.link_moi, p.g
    theta1, theta2, dtheta1, dtheta2, a = s_N5.unbind(-1)
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * torch.cos(theta2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * torch.cos(theta2)) + I2
    phi2 = m2 * lc2 * g * torch.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * torch.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * torch.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * torch.cos(theta1 - math.pi / 2)
        + phi2
    )
    if p.book_or_nips == "nips":  # a Python constant, not a tensor value: no host sync
        ddtheta2 = (a + d2 / d1 * phi1 - phi2) / (m2 * lc2**2 + I2 - d2**2 / d1)
    else:
        ddtheta2 = (
            a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * torch.sin(theta2) - phi2
        ) / (m2 * lc2**2 + I2 - d2**2 / d1)
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2, torch.zeros_like(a)), dim=-1)


def rk4(s_N5: torch.Tensor, dt: float, p: AcrobotParams) -> torch.Tensor:
    """Gymnasium's `rk4(derivs, y0, [0, dt])`: one classic RK4 step of the augmented state."""
    dt2 = dt / 2.0
    k1 = _dsdt(s_N5, p)
    k2 = _dsdt(s_N5 + dt2 * k1, p)
    k3 = _dsdt(s_N5 + dt2 * k2, p)
    k4 = _dsdt(s_N5 + dt * k3, p)
    return s_N5 + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def wrap(x: torch.Tensor, m: float, M: float) -> torch.Tensor:
    """Gymnasium's `wrap`: subtract/add (M - m) until m ≤ x ≤ M, in closed form.

    Gymnasium loops `while x > M: x -= diff`; ceil((x - M) / diff) is that loop's count, so a
    single wrap (the usual case) is the very same subtraction. Values already in [m, M] (±π
    included, the comparisons being strict) are left alone.
    """
    diff = M - m
    x = torch.where(x > M, x - diff * torch.ceil((x - M) / diff), x)
    return torch.where(x < m, x + diff * torch.ceil((m - x) / diff), x)


def acrobot_obs(state_N4: torch.Tensor) -> torch.Tensor:
    """Observation (cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2) of every env: (N, 6)."""
    theta1, theta2, dtheta1, dtheta2 = state_N4.unbind(-1)
    return torch.stack((torch.cos(theta1), torch.sin(theta1), torch.cos(theta2),
                        torch.sin(theta2), dtheta1, dtheta2), dim=-1)


def acrobot_step(
    state_N4: torch.Tensor, action_N: torch.Tensor, p: AcrobotParams
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One RK4 step of every env: (next state (N, 4), reward (N,), terminated (N,)). Pure; no
    host sync. The same equations, in the same order, as AcrobotEnv.step (book dynamics)."""
    t0, t1, t2 = p.avail_torque
    # AVAIL_TORQUE[a] by selection on Python floats: no lookup table copied to the device.
    torque_N = torch.where(action_N == 0, t0, torch.where(action_N == 1, t1, t2))
    s_N5 = torch.cat((state_N4, torque_N.to(state_N4.dtype)[:, None]), dim=-1)
    ns_N5 = rk4(s_N5, p.dt, p)
    theta1, theta2, dtheta1, dtheta2, _ = ns_N5.unbind(-1)
    next_N4 = torch.stack((
        wrap(theta1, -math.pi, math.pi), wrap(theta2, -math.pi, math.pi),
        dtheta1.clamp(-p.max_vel_1, p.max_vel_1), dtheta2.clamp(-p.max_vel_2, p.max_vel_2),
    ), dim=-1)
    theta1, theta2 = next_N4[:, 0], next_N4[:, 1]
    # Terminal on the wrapped angles: the tip above one link length over the pivot.
    terminated = -torch.cos(theta1) - torch.cos(theta2 + theta1) > 1.0
    reward = torch.where(terminated, 0.0, -1.0).to(state_N4.dtype)
    return next_N4, reward, terminated


def acrobot_transition(state_N4, elapsed_N, return_N, action_N, reset_u_N4, p: AcrobotParams):
    """A whole vector step with same-step autoreset, as one pure function (one fused kernel
    under torch.compile)."""
    final_N4, reward_N, terminated = acrobot_step(state_N4, action_N, p)
    return batched.autoreset(
        final_N4, acrobot_reset(reset_u_N4, p), terminated, reward_N, elapsed_N, return_N,
        p.max_episode_steps, obs=acrobot_obs,
    )


def acrobot_reset(u_N4: torch.Tensor, p: AcrobotParams) -> torch.Tensor:
    """Fresh states from uniforms on [0, 1): Gymnasium's uniform(-0.1, 0.1, size=4), which it
    then casts to float32 (so a float64 env starts from float32-representable states too)."""
    b = p.reset_bound
    return (-b + 2 * b * u_N4).to(torch.float32).to(u_N4.dtype)


class AcrobotVectorEnv(VectorEnv):
    """N Acrobot-v1 envs stepping as tensor ops on `device`, with the project's env contract.

    The internal state is (θ1, θ2, θ̇1, θ̇2) (N, 4); observations are (cos θ1, sin θ1, cos θ2,
    sin θ2, θ̇1, θ̇2) (N, 6). Same-step autoreset: envs that finish are reset within the same
    `step`, their true last observation in `info["final_obs"]` (a dense (N, 6) batch, equal to
    the next obs elsewhere). Truncation at 500 steps per env, as Gymnasium's TimeLimit does it
    (a step can be both terminated and truncated). Resets draw from the env's own
    `torch.Generator`. `info` always holds `episode` (`r`, `l`) and the mask `_episode`.
    """

    metadata = {**batched.METADATA, "render_fps": 15}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: AcrobotParams = AcrobotParams(),
        compile: bool = False,
        counter_rng: bool | None = None,
    ):
        np_dtype = batched.np_dtype(dtype)
        high = np.array([1.0, 1.0, 1.0, 1.0, params.max_vel_1, params.max_vel_2], dtype=np_dtype)
        batched.setup(
            self, num_envs=num_envs, device=device, dtype=dtype, params=params,
            render_mode=render_mode,
            observation_space=gym.spaces.Box(-high, high, dtype=np_dtype),
            action_space=gym.spaces.Discrete(len(params.avail_torque)), state_dim=4,
            uniform_shape=(4,), transition=acrobot_transition, reset=acrobot_reset,
            obs=acrobot_obs, compile=compile, counter_rng=counter_rng,
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return batched.reset(self, seed)

    def step(self, actions: torch.Tensor):
        action_N = torch.as_tensor(actions, device=self.device).reshape(self.num_envs)
        return batched.step(self, action_N)

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own Acrobot renderer."""
        from gymnasium.envs.classic_control.acrobot import AcrobotEnv

        return batched.render(self, lambda: AcrobotEnv(render_mode="rgb_array"))

    def close(self, **kwargs):
        batched.close(self)
