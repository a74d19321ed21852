"""One factory for vectors of Gymnasium envs that take and return torch tensors on a device."""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Literal

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from envs import pixels
from envs.wrappers import DenseFinalObs, NumpyToTorchFast

# Packages that register an id namespace with Gymnasium when imported, and the extra that
# installs each (Gymnasium 1.x no longer loads plugins by itself).
NAMESPACES = {
    "ALE": ("ale_py", "atari"),
    "MinAtar": ("minatar.gym:register_envs", "minatar"),
}


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
    namespace = name.split("/")[0] if "/" in name else None
    if namespace in NAMESPACES:
        _import_namespace(namespace, env_id)
    else:  # Atari's old ids (BreakoutNoFrameskip-v4) have no namespace
        _import_installed_namespaces()
    if name in gym.registry:
        return name
    ids = list(gym.registry)
    # Case-insensitive first (cartpole-v1 -> CartPole-v1), then close spellings.
    lowered = {i.lower(): i for i in ids}
    close = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=3, cutoff=0.6)]
    hint = f"; did you mean {', '.join(close)}?" if close else "; `python -c \"import gymnasium; gymnasium.pprint_registry()\"` lists them"
    raise UnknownEnvError(f"unknown environment '{env_id}'{hint}")


def _import_namespace(namespace: str, env_id: str) -> None:
    if any(i.startswith(namespace + "/") for i in gym.registry):
        return
    target, extra = NAMESPACES[namespace]
    module, _, register = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise UnknownEnvError(
            f"{env_id} needs the '{module.split('.')[0]}' package: pip install -e \".[{extra}]\""
        ) from None
    if register:
        getattr(mod, register)()


def _import_installed_namespaces() -> None:
    for namespace in NAMESPACES:
        try:
            _import_namespace(namespace, namespace)
        except UnknownEnvError:
            pass


def make(
    env_id: str,
    num_envs: int = 1,
    *,
    device: str | Any = "cpu",
    vectorization: Literal["sync", "async"] = "sync",
    render_mode: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    training: bool = False,
) -> VectorEnv:
    """Build `num_envs` copies of `env_id` as one vector env speaking torch tensors on `device`.

    Contract (shared with our torch-native envs): same-step autoreset; `info["final_obs"]` is the
    true next observation of every env (the last one of an episode where it just ended);
    `info["episode"]` holds returns `r` and lengths `l` where `info["_episode"]` is set.
    Seeding is by `reset(seed=s)`: Gymnasium's envs seed env i with s + i; our torch-native envs
    seed one generator for the whole batch with s (so their N envs are not two N/2 batches
    seeded s and s + N/2).
    Atari ids get the DQN preprocessing (envs/pixels.py), with episodic life and clipped rewards
    where `training` (logged returns stay the game's own); MinAtar's grids come channels-first.
    `metadata["frame_stack"]` names the stack size of frame-stacked observations.
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
    spec = gym.spec(name)
    family = pixels.pixel_family(name)
    wrappers: list = []
    if family == "atari":
        kwargs = {**pixels.atari_kwargs(spec), **kwargs}
        wrappers = pixels.atari_wrappers(training=training)
    elif family == "minatar":
        wrappers = [pixels.MinAtarFrames]
    envs = gym.make_vec(
        name,
        num_envs=num_envs,
        vectorization_mode=vectorization,
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        wrappers=wrappers,
        **kwargs,
    )
    if family == "atari":
        # Episode statistics are recorded inside each env (below life loss and clipping).
        envs.metadata = {**envs.metadata, "frame_stack": pixels.FRAME_STACK}
    else:
        envs = RecordEpisodeStatistics(envs)
    if family is not None:
        # Their state lives in an emulator / game object that get_env_state cannot copy.
        envs.metadata = {**envs.metadata, "opaque_state": True}
    envs = DenseFinalObs(envs)
    return NumpyToTorchFast(envs, device=device)
