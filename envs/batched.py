"""What every torch-native env shares: the time limit and same-step autoreset as one pure
function, and the VectorEnv plumbing (setup, reset, step, render) as plain functions that each
env class's methods call, so the envs differ only in their physics."""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

METADATA = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}

# SplitMix64's constants (Steele, Lea & Flood 2014), as the signed int64s torch computes with.
_GOLDEN = 0x9E3779B97F4A7C15 - 2**64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64


class Step(NamedTuple):
    """A whole vector step, as the pure transitions return it."""

    state: torch.Tensor  # (N, S) after autoreset
    obs: torch.Tensor  # (N, O) of that state
    reward: torch.Tensor  # (N,)
    final_obs: torch.Tensor  # (N, O): the true next obs, before autoreset
    terminated: torch.Tensor  # (N,) bool
    truncated: torch.Tensor  # (N,) bool
    done: torch.Tensor  # (N,) bool
    elapsed: torch.Tensor  # (N,) steps into the current episode
    episode_return: torch.Tensor  # (N,) return of the current episode so far
    ended_return: torch.Tensor  # (N,) return of the episodes that ended (0 elsewhere)
    ended_length: torch.Tensor  # (N,) length of the episodes that ended (0 elsewhere)


def autoreset(
    final_NS, reset_NS, terminated, reward_N, elapsed_N, return_N, max_steps: int,
    obs: Callable[[torch.Tensor], torch.Tensor] = lambda s: s,
) -> Step:
    """Time limit, episode statistics and same-step autoreset after the physics' step.

    Truncation is Gymnasium's TimeLimit: elapsed ≥ max_steps, which can coincide with
    termination. Envs that finished take their fresh state `reset_NS` without any branching on
    tensor values (no host sync), and `final_obs` keeps where they ended.
    """
    elapsed_N = elapsed_N + 1
    return_N = return_N + reward_N
    truncated = elapsed_N >= max_steps
    done = terminated | truncated
    state_NS = torch.where(done[:, None], reset_NS, final_NS)
    return Step(
        state_NS, obs(state_NS), reward_N, obs(final_NS), terminated, truncated, done,
        torch.where(done, 0, elapsed_N), torch.where(done, 0.0, return_N),
        torch.where(done, return_N, 0.0), torch.where(done, elapsed_N, 0),
    )


def setup(
    env, *, num_envs: int, device, dtype: torch.dtype, params: Any, render_mode: str | None,
    observation_space: gym.Space, action_space: gym.Space, state_dim: int,
    uniform_shape: tuple[int, ...], transition: Callable[..., Step],
    reset: Callable[[torch.Tensor, Any], torch.Tensor],
    obs: Callable[[torch.Tensor], torch.Tensor] = lambda s: s,
    return_dtype: torch.dtype | None = None, compile: bool = False,
    counter_rng: bool | None = None,
) -> None:
    """The attributes every torch env has: spaces, its own generator, state, counters."""
    env.num_envs, env.device, env.dtype = num_envs, torch.device(device), dtype
    env.params, env.render_mode = params, render_mode
    env.single_observation_space, env.single_action_space = observation_space, action_space
    env.observation_space = batch_space(observation_space, num_envs)
    env.action_space = batch_space(action_space, num_envs)
    env.generator = torch.Generator(device=env.device)
    env.state = torch.zeros(num_envs, state_dim, dtype=dtype, device=env.device)
    env.elapsed = torch.zeros(num_envs, dtype=torch.int64, device=env.device)
    env.episode_return = torch.zeros(
        num_envs, dtype=return_dtype or dtype, device=env.device
    )
    env._uniform_shape, env._reset, env._obs, env._renderer = uniform_shape, reset, obs, None
    # The reset uniforms of a step come from torch.rand (eager), or from a counter-based
    # generator keyed by one draw per step (the compiled default): torch.compile cannot fuse
    # torch.rand with a generator of ours, and drawing N·S uniforms apart took ~50 µs of a
    # 220 µs compiled step at N = 4,096 on CPU. Both are streams of the env's own generator.
    env.counter_rng = compile if counter_rng is None else counter_rng
    if env.counter_rng:
        env._offsets = counter_offsets((num_envs, *uniform_shape), env.device)
        transition = _with_counter_uniforms(transition)
    # torch.compile fuses the whole step into one kernel: ~4x faster for small N on CPU, after
    # a one-time compile of ~20 s (needs a C++ compiler on CPU). Off by default.
    env.compiled = compile
    if compile:
        transition = torch.compile(_keep_column_major(transition), dynamic=False)
    env._transition = transition


def np_dtype(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def uniform(env) -> torch.Tensor:
    """Uniforms on [0, 1) from the env's own generator, shaped for its reset function."""
    return torch.rand(
        (env.num_envs, *env._uniform_shape), generator=env.generator, device=env.device,
        dtype=env.dtype,
    )


def column_major(x_NS: torch.Tensor) -> torch.Tensor:
    """The same (N, S) values, stored component by component (each one's N values contiguous).

    The compiled step keeps its state so: inductor then vectorises the physics across envs,
    where a row-major (N, S) state has it load strided scalars (on CPU at N = 4,096 the step
    took 180 µs instead of 220).
    """
    return x_NS.T.contiguous().T


def _keep_column_major(transition: Callable[..., Step]) -> Callable[..., Step]:
    def column_major_transition(*args) -> Step:
        s = transition(*args)
        return s._replace(state=column_major(s.state))
    return column_major_transition


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64s (torch's >> is arithmetic: it copies the sign bit)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def counter_offsets(shape: tuple[int, ...], device) -> torch.Tensor:
    """SplitMix64's state increments (i + 1)·γ for every element i of `shape` (int64, wrapped).

    Made once per env and passed in: inside torch.compile, arange · γ would become an index
    expression that overflows inductor's int64 index arithmetic.
    """
    count = math.prod(shape)
    return (torch.arange(1, count + 1, dtype=torch.int64, device=device) * _GOLDEN).view(shape)


def counter_uniform(key: torch.Tensor, offsets: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Uniforms on [0, 1) shaped as `offsets`: element i is SplitMix64's output for the state
    key + (i + 1)·γ, i.e. the stream SplitMix64 seeded with `key` yields, computed for all i at
    once as pure tensor ops (so one fused kernel under torch.compile, on any device).

    The top 24 (float32) or 53 (float64) bits give the float, as torch.rand and NumPy do.
    int64 products wrap modulo 2^64 as SplitMix64's unsigned arithmetic does.
    """
    z = key + offsets
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    z = z ^ _shift_right(z, 31)
    bits = 53 if dtype == torch.float64 else 24
    return _shift_right(z, 64 - bits).to(dtype) * 2.0**-bits


def _with_counter_uniforms(transition: Callable[..., Step]) -> Callable[..., Step]:
    """The transition taking (key, offsets) in place of its reset uniforms, which it draws
    with `counter_uniform` inside (one per env and state component)."""
    def keyed_transition(state, elapsed, episode_return, action, noise, params) -> Step:
        key, offsets = noise
        u = counter_uniform(key, offsets, state.dtype)
        return transition(state, elapsed, episode_return, action, u, params)
    return keyed_transition


def step_noise(env):
    """What a step draws from the env's generator: its reset uniforms, or one key for them."""
    if env.counter_rng:
        key = torch.randint(
            -(2**63), 2**63 - 1, (), generator=env.generator, device=env.device,
            dtype=torch.int64,
        )
        return key, env._offsets
    return uniform(env)


def _set_state(env, state_NS: torch.Tensor) -> None:
    """Replace the state, in the layout the compiled step was specialised for (if compiled)."""
    env.state = column_major(state_NS) if env.compiled else state_NS


def reset(env, seed: int | None):
    """Reseed if asked, draw fresh states for every env, zero the counters; (obs, info)."""
    if seed is not None:
        env.generator.manual_seed(seed)
    _set_state(env, env._reset(uniform(env), env.params))
    env.elapsed = torch.zeros_like(env.elapsed)
    env.episode_return = torch.zeros_like(env.episode_return)
    return env._obs(env.state), {}


def step(env, action: torch.Tensor):
    """One vector step through the env's transition; the Gymnasium 5-tuple, our info contract."""
    s: Step = env._transition(
        env.state, env.elapsed, env.episode_return, action, step_noise(env), env.params
    )
    env.state, env.elapsed, env.episode_return = s.state, s.elapsed, s.episode_return
    info = {
        "final_obs": s.final_obs,
        "episode": {"r": s.ended_return, "l": s.ended_length},
        "_episode": s.done,
    }
    # The state is replaced, never written in place, so handing it out needs no copy.
    return s.obs, s.reward, s.terminated, s.truncated, info


def snapshot(env) -> dict[str, torch.Tensor]:
    """Everything a torch env's future depends on, as CPU tensors (a checkpoint's env state)."""
    return {
        "state": env.state.contiguous().cpu(), "elapsed": env.elapsed.cpu(),
        "episode_return": env.episode_return.cpu(), "generator": env.generator.get_state(),
    }


def restore(env, snap: dict[str, torch.Tensor]) -> None:
    """Put a `snapshot` back; the generator only if it is of this env's device type (as the
    agents' generators: a run moved between CPU and CUDA continues with its fresh stream)."""
    if snap["state"].shape != env.state.shape:
        raise ValueError(f"env state does not match this vector env: {tuple(snap['state'].shape)} "
                         f"saved, {tuple(env.state.shape)} here (same num_envs expected)")
    _set_state(env, snap["state"].to(env.device, env.dtype))
    env.elapsed = snap["elapsed"].to(env.device)
    env.episode_return = snap["episode_return"].to(env.device, env.episode_return.dtype)
    if snap["generator"].numel() == env.generator.get_state().numel():
        env.generator.set_state(snap["generator"])


def render(env, make_renderer: Callable[[], Any], **attributes):
    """Env 0 as an RGB frame, drawn by Gymnasium's own renderer (made once, given our state)."""
    if env._renderer is None:
        env._renderer = make_renderer()
    env._renderer.state = env.state[0].double().cpu().numpy()  # sync: rendering only
    for name, value in attributes.items():
        setattr(env._renderer, name, value)
    return (env._renderer.render(),)


def close(env) -> None:
    if env._renderer is not None:
        env._renderer.close()
