"""Snapshots of a sync vector env's plain-data state, so that a resumed run continues exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv, VectorEnv

_SCALARS = (bool, int, float, str, type(None))


def get_env_state(envs: VectorEnv) -> dict | None:
    """Plain-data state of every layer of a sync vector env and its sub-envs; None if async.

    Classic-control and most pure-Python envs keep their whole state in plain attributes
    (numpy arrays, numbers, the `np.random.Generator`), which we copy. Envs whose state lives in
    foreign objects (Box2D worlds, emulators) or in other processes cannot be captured this way.
    """
    vector_layers = _layers(envs)
    base = vector_layers[-1]
    if not isinstance(base, SyncVectorEnv):
        return None
    return {
        "vector": [_snapshot(layer) for layer in vector_layers],
        "envs": [[_snapshot(layer) for layer in _layers(env)] for env in base.envs],
    }


def set_env_state(envs: VectorEnv, state: dict) -> None:
    """Restore what `get_env_state` captured onto an env built the same way."""
    vector_layers = _layers(envs)
    base = vector_layers[-1]
    if not isinstance(base, SyncVectorEnv) or len(state["envs"]) != len(base.envs):
        raise ValueError("env state does not match this vector env (sync, same num_envs expected)")
    for layer, snap in zip(vector_layers, state["vector"], strict=True):
        _restore(layer, snap)
    for env, snaps in zip(base.envs, state["envs"], strict=True):
        for layer, snap in zip(_layers(env), snaps, strict=True):
            _restore(layer, snap)


def _layers(env: Any) -> list[Any]:
    """The wrapper chain from the outermost wrapper down to the bare env."""
    layers = [env]
    while hasattr(layers[-1], "env"):
        layers.append(layers[-1].env)
    return layers


def _snapshot(obj: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for key, value in vars(obj).items():
        if isinstance(value, np.random.Generator):
            snap[key] = {"numpy_generator": value.bit_generator.state}
        elif isinstance(value, np.ndarray) and value.dtype != object:
            snap[key] = {"numpy_array": torch.from_numpy(value.copy())}
        elif isinstance(value, np.generic):
            snap[key] = {"numpy_scalar": value.item(), "dtype": str(value.dtype)}
        elif isinstance(value, _SCALARS):
            snap[key] = {"value": value}
    return snap


def _restore(obj: Any, snap: dict[str, Any]) -> None:
    for key, entry in snap.items():
        if "numpy_generator" in entry:
            rng = np.random.default_rng()
            rng.bit_generator.state = entry["numpy_generator"]
            setattr(obj, key, rng)
        elif "numpy_array" in entry:
            setattr(obj, key, entry["numpy_array"].numpy().copy())
        elif "numpy_scalar" in entry:
            setattr(obj, key, np.dtype(entry["dtype"]).type(entry["numpy_scalar"]))
        else:
            setattr(obj, key, entry["value"])
