"""Snapshots of a vector env's state (a sync vector env's plain data, or our torch envs'
tensors), so that a resumed run continues exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import SyncVectorEnv, VectorEnv

from envs import batched

_SCALARS = (bool, int, float, str, type(None))


def get_env_state(envs: VectorEnv) -> dict | None:
    """Plain-data state of every layer of a sync vector env and its sub-envs, or the tensors and
    generator state of one of our torch-native envs; None if async.

    Classic-control and most pure-Python envs keep their whole state in plain attributes
    (numpy arrays, numbers, the `np.random.Generator`), which we copy. Envs whose state lives in
    foreign objects (Box2D worlds, emulators) or in other processes cannot be captured this way;
    the factory marks Atari's and MinAtar's with `metadata["opaque_state"]` and they get None.
    """
    if envs.metadata.get("opaque_state"):
        return None
    if _is_torch_native(envs):
        return {"torch_env": batched.snapshot(envs.unwrapped)}
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
    if _is_torch_native(envs) != ("torch_env" in state):
        raise ValueError("env state does not match this vector env (torch-native vs Gymnasium's)")
    if "torch_env" in state:
        batched.restore(envs.unwrapped, state["torch_env"])
        return
    vector_layers = _layers(envs)
    base = vector_layers[-1]
    if not isinstance(base, SyncVectorEnv) or len(state["envs"]) != len(base.envs):
        raise ValueError("env state does not match this vector env (sync, same num_envs expected)")
    for layer, snap in zip(vector_layers, state["vector"], strict=True):
        _restore(layer, snap)
    for env, snaps in zip(base.envs, state["envs"], strict=True):
        for layer, snap in zip(_layers(env), snaps, strict=True):
            _restore(layer, snap)


def _is_torch_native(envs: VectorEnv) -> bool:
    """Our batched torch envs (envs/batched.py): their state is a few tensors and a generator."""
    return hasattr(envs.unwrapped, "_transition")


def _layers(env: Any) -> list[Any]:
    """The wrapper chain from the outermost wrapper down to the bare env."""
    layers = [env]
    while hasattr(layers[-1], "env"):
        layers.append(layers[-1].env)
    return layers


class _Foreign(Exception):
    """A value that is not plain data (a space, a pygame surface, another env...)."""


def _encode(value: Any) -> dict[str, Any]:
    if isinstance(value, np.random.Generator):
        return {"numpy_generator": value.bit_generator.state}
    if isinstance(value, np.ndarray) and value.dtype.kind in "SU":  # text: FrozenLake's map
        return {"numpy_text": value.tolist(), "dtype": value.dtype.str, "shape": value.shape}
    if isinstance(value, np.ndarray) and value.dtype != object:
        try:
            return {"numpy_array": torch.from_numpy(value.copy())}
        except (TypeError, ValueError):  # no tensor for its dtype (datetime64) or byte order
            raise _Foreign from None
    if isinstance(value, np.generic):
        return {"numpy_scalar": value.item(), "dtype": str(value.dtype)}
    if isinstance(value, _SCALARS):
        return {"value": value}
    if isinstance(value, (tuple, list)):
        return {"sequence": [_encode(v) for v in value], "tuple": isinstance(value, tuple)}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"mapping": {k: _encode(v) for k, v in value.items()}}
    raise _Foreign


def _decode(entry: dict[str, Any]) -> Any:
    if "numpy_generator" in entry:
        rng = np.random.default_rng()
        rng.bit_generator.state = entry["numpy_generator"]
        return rng
    if "numpy_array" in entry:
        return entry["numpy_array"].numpy().copy()
    if "numpy_text" in entry:
        return np.array(entry["numpy_text"], dtype=entry["dtype"]).reshape(entry["shape"])
    if "numpy_scalar" in entry:
        return np.dtype(entry["dtype"]).type(entry["numpy_scalar"])
    if "sequence" in entry:
        items = [_decode(e) for e in entry["sequence"]]
        return tuple(items) if entry["tuple"] else items
    if "mapping" in entry:
        return {k: _decode(e) for k, e in entry["mapping"].items()}
    return entry["value"]


def _snapshot(obj: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for key, value in vars(obj).items():
        try:
            snap[key] = _encode(value)
        except _Foreign:
            pass  # not state we can (or need to) carry: spaces, wrapped envs, render handles
    return snap


def _restore(obj: Any, snap: dict[str, Any]) -> None:
    for key, entry in snap.items():
        setattr(obj, key, _decode(entry))
