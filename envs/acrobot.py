"""Acrobot-v1 as a batched torch env: Gymnasium's dynamics, N envs per tensor op, any device."""

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
    under torch.compile): returns (state, obs, elapsed, episode return, reward, final obs,
    terminated, truncated, done, return and length of the episodes that ended)."""
    final_N4, reward_N, terminated = acrobot_step(state_N4, action_N, p)
    elapsed_N = elapsed_N + 1
    return_N = return_N + reward_N
    truncated = elapsed_N >= p.max_episode_steps  # as TimeLimit: can coincide with terminated
    done = terminated | truncated
    reset_N4 = acrobot_reset(reset_u_N4, p)
    # Same-step autoreset without branching on tensor values: keep the fresh state where done.
    state_N4 = torch.where(done[:, None], reset_N4, final_N4)
    ended_return, ended_length = torch.where(done, return_N, 0.0), torch.where(done, elapsed_N, 0)
    return (
        state_N4, acrobot_obs(state_N4), torch.where(done, 0, elapsed_N),
        torch.where(done, 0.0, return_N), reward_N, acrobot_obs(final_N4), terminated,
        truncated, done, ended_return, ended_length,
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

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"],
                "render_fps": 15}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: AcrobotParams = AcrobotParams(),
        compile: bool = False,
    ):
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        self.params, self.render_mode = params, render_mode
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        high = np.array([1.0, 1.0, 1.0, 1.0, params.max_vel_1, params.max_vel_2], dtype=np_dtype)
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np_dtype)
        self.single_action_space = gym.spaces.Discrete(len(params.avail_torque))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.generator = torch.Generator(device=self.device)
        self.state = torch.zeros(num_envs, 4, dtype=dtype, device=self.device)
        self.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.episode_return = torch.zeros(num_envs, dtype=dtype, device=self.device)
        self._renderer = None
        self._transition = (
            torch.compile(acrobot_transition, dynamic=False) if compile else acrobot_transition
        )

    def _uniform(self) -> torch.Tensor:
        return torch.rand(self.num_envs, 4, generator=self.generator, device=self.device,
                          dtype=self.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.generator.manual_seed(seed)
        self.state = acrobot_reset(self._uniform(), self.params)
        self.elapsed = torch.zeros_like(self.elapsed)
        self.episode_return = torch.zeros_like(self.episode_return)
        return acrobot_obs(self.state), {}

    def step(self, actions: torch.Tensor):
        (self.state, obs, self.elapsed, self.episode_return, reward, final_obs, terminated,
         truncated, done, ended_return, ended_length) = self._transition(
            self.state, self.elapsed, self.episode_return,
            torch.as_tensor(actions, device=self.device).reshape(self.num_envs), self._uniform(),
            self.params,
        )
        info: dict[str, Any] = {
            "final_obs": final_obs,
            "episode": {"r": ended_return, "l": ended_length},
            "_episode": done,
        }
        return obs, reward, terminated, truncated, info

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own Acrobot renderer."""
        if self._renderer is None:
            from gymnasium.envs.classic_control.acrobot import AcrobotEnv

            self._renderer = AcrobotEnv(render_mode="rgb_array")
        self._renderer.state = self.state[0].double().cpu().numpy()  # sync: rendering only
        return (self._renderer.render(),)

    def close(self, **kwargs):
        if self._renderer is not None:
            self._renderer.close()
