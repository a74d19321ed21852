"""Pendulum-v1 as a batched torch env: Gymnasium's dynamics, N envs per tensor op, any device."""

from __future__ import annotations

import math
from dataclasses import dataclass
import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

from envs import batched


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
    under torch.compile)."""
    final_N2, reward_N = pendulum_step(state_N2, action_N, p)
    never = torch.zeros_like(elapsed_N, dtype=torch.bool)  # Pendulum never terminates
    return batched.autoreset(
        final_N2, pendulum_reset(reset_u_N2, p), never, reward_N, elapsed_N, return_N,
        p.max_episode_steps, obs=pendulum_obs,
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

    metadata = {**batched.METADATA, "render_fps": 30}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        render_mode: str | None = None,
        params: PendulumParams = PendulumParams(),
        compile: bool = False,
        counter_rng: bool | None = None,
    ):
        np_dtype = batched.np_dtype(dtype)
        high = np.array([1.0, 1.0, params.max_speed], dtype=np_dtype)
        batched.setup(
            self, num_envs=num_envs, device=device, dtype=dtype, params=params,
            render_mode=render_mode,
            observation_space=gym.spaces.Box(-high, high, dtype=np_dtype),
            action_space=gym.spaces.Box(
                -params.max_torque, params.max_torque, shape=(1,), dtype=np_dtype
            ),
            state_dim=2, uniform_shape=(2,), transition=pendulum_transition,
            reset=pendulum_reset, obs=pendulum_obs, compile=compile, counter_rng=counter_rng,
        )
        self._last_u = None  # env 0's torque arrow, for rendering

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._last_u = None
        return batched.reset(self, seed)

    def step(self, actions: torch.Tensor):
        action_N = torch.as_tensor(actions, device=self.device).reshape(self.num_envs)
        self._last_u = action_N
        return batched.step(self, action_N)

    def render(self):
        """Env 0 as an RGB frame, drawn by Gymnasium's own Pendulum renderer."""
        from gymnasium.envs.classic_control.pendulum import PendulumEnv

        last_u = (
            None if self._last_u is None
            else float(self._last_u[0].clamp(-self.params.max_torque, self.params.max_torque))
        )
        return batched.render(
            self, lambda: PendulumEnv(render_mode="rgb_array", g=self.params.g), last_u=last_u
        )

    def close(self, **kwargs):
        batched.close(self)
