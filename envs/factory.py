"""One factory for vectors of Gymnasium envs that take and return torch tensors on a device."""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Literal

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.wrappers.vector import NumpyToTorch, RecordEpisodeStatistics

from envs.wrappers import DenseFinalObs


class UnknownEnvError(ValueError):
    """An env id that Gymnasium's registry does not hold."""


def check_env_id(env_id: str) -> str:
    """Import the `module:` prefix if any and check the id is registered; returns the bare id."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UnknownEnvError(f"cannot import module '{module}' for env '{env_id}': {e}") from None
    if name in gym.registry:
        return name
    ids = list(gym.registry)
    # Case-insensitive first (cartpole-v1 -> CartPole-v1), then close spellings.
    lowered = {i.lower(): i for i in ids}
    close = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=3, cutoff=0.6)]
    hint = f"; did you mean {', '.join(close)}?" if close else "; `python -c \"import gymnasium; gymnasium.pprint_registry()\"` lists them"
    raise UnknownEnvError(f"unknown environment '{env_id}'{hint}")


def make(
    env_id: str,
    num_envs: int = 1,
    *,
    device: str | Any = "cpu",
    vectorization: Literal["sync", "async"] = "sync",
    render_mode: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> VectorEnv:
    """Build `num_envs` copies of `env_id` as one vector env speaking torch tensors on `device`.

    Contract (shared with our torch-native envs): same-step autoreset; `info["final_obs"]` is the
    true next observation of every env (the last one of an episode where it just ended);
    `info["episode"]` holds returns `r` and lengths `l` where `info["_episode"]` is set.
    Seeding is by `reset(seed=s)`, which seeds env i with s + i.
    """
    name = check_env_id(env_id)
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if name.startswith("rlplay/"):
        # Our torch-native envs already speak tensors on `device` and keep the contract.
        return gym.make_vec(
            name, num_envs=num_envs, vectorization_mode="vector_entry_point", device=device,
            **kwargs,
        )
    envs = gym.make_vec(
        name,
        num_envs=num_envs,
        vectorization_mode=vectorization,
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **kwargs,
    )
    envs = RecordEpisodeStatistics(envs)
    envs = DenseFinalObs(envs)
    return NumpyToTorch(envs, device=device)
