"""Recorded episodes on disk: a versioned, pickle-free folder of one `.npz` and one JSON file.

Layout (version 1), in Minari's episode layout so that a conversion is a reshuffle of arrays:

    <folder>/metadata.json   format, version, env id, observation and action spaces, source, counts
    <folder>/episodes.npz    observations (M + E, *obs_shape): each episode's L + 1 observations
                             (its last one is the true final observation), then per step
                             actions (M, *action_shape), rewards (M,), terminations (M,),
                             truncations (M,); episode_lengths (E,) marks the boundaries

where E episodes hold M = Σ L steps. Loading uses `np.load(allow_pickle=False)`, so a dataset
cannot run code, and checks every array against the metadata. Why not Minari itself: README.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from train.checkpoint import atomic_write, check_format
from train.errors import UserError
from train.presets import task_of

FORMAT = "rlplay-dataset"
VERSION = 1
METADATA, ARRAYS = "metadata.json", "episodes.npz"
STEP_ARRAYS = ("actions", "rewards", "terminations", "truncations")


@dataclass
class Dataset:
    """Whole episodes of one env: Minari's layout (observations hold L + 1 per episode)."""

    env_id: str
    observation_space: gym.Space
    action_space: gym.Space
    observations: np.ndarray  # (M + E, *obs_shape)
    actions: np.ndarray  # (M, *action_shape)
    rewards: np.ndarray  # (M,) float32
    terminations: np.ndarray  # (M,) bool
    truncations: np.ndarray  # (M,) bool
    episode_lengths: np.ndarray  # (E,) int64
    info: dict[str, Any] = field(default_factory=dict)  # source, seed, epsilon, ... (JSON)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_lengths)

    @property
    def num_steps(self) -> int:
        return int(self.episode_lengths.sum())

    @property
    def episode_index(self) -> np.ndarray:
        """(M,): the episode each step belongs to."""
        return np.repeat(np.arange(self.num_episodes), self.episode_lengths)

    @property
    def obs(self) -> np.ndarray:
        """(M, *obs_shape): the observation each step's action was chosen at."""
        return self.observations[np.arange(self.num_steps) + self.episode_index]

    @property
    def next_obs(self) -> np.ndarray:
        """(M, *obs_shape): the true next observation (the final one where an episode ended)."""
        return self.observations[np.arange(self.num_steps) + self.episode_index + 1]

    @property
    def episode_returns(self) -> np.ndarray:
        """(E,) undiscounted returns."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    @property
    def episode_starts(self) -> np.ndarray:
        """(E,) index of each episode's first step."""
        return np.concatenate([[0], np.cumsum(self.episode_lengths)[:-1]]).astype(np.int64)


def from_episodes(
    env_id: str, observation_space: gym.Space, action_space: gym.Space, episodes: list[dict],
    info: dict[str, Any] | None = None,
) -> Dataset:
    """A Dataset from per-episode dicts of arrays: observations (L + 1), actions, rewards,
    terminations, truncations (L each)."""
    if not episodes:
        raise ValueError("a dataset needs at least one episode")
    cat = {k: np.concatenate([ep[k] for ep in episodes]) for k in ("observations", *STEP_ARRAYS)}
    return Dataset(
        env_id, observation_space, action_space, cat["observations"],
        cat["actions"].astype(_action_dtype(action_space)), cat["rewards"].astype(np.float32),
        cat["terminations"].astype(bool), cat["truncations"].astype(bool),
        np.array([len(ep["actions"]) for ep in episodes], dtype=np.int64), dict(info or {}),
    )


def _action_dtype(space: gym.Space) -> np.dtype:
    return np.dtype(np.int64) if isinstance(space, gym.spaces.Discrete) else space.dtype


# --- spaces as JSON ------------------------------------------------------------------------------


def space_to_json(space: gym.Space) -> dict:
    """Discrete and Box spaces as plain JSON (infinite bounds as the strings "inf"/"-inf")."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        def bound(a):
            return [float(x) if np.isfinite(x) else str(float(x)) for x in np.ravel(a)]

        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": bound(space.low), "high": bound(space.high)}
    raise UserError(f"datasets hold Box or Discrete spaces, not {space}")


def space_from_json(data: dict) -> gym.Space:
    if data["type"] == "Discrete":
        return gym.spaces.Discrete(data["n"], start=data["start"])
    if data["type"] == "Box":
        shape, dtype = tuple(data["shape"]), np.dtype(data["dtype"])
        low = np.array([float(x) for x in data["low"]], dtype=dtype).reshape(shape)
        high = np.array([float(x) for x in data["high"]], dtype=dtype).reshape(shape)
        return gym.spaces.Box(low, high, shape, dtype)
    raise ValueError(f"unknown space type {data['type']!r}")


def check_matches(
    what: str, env_id: str, observation_space: gym.Space, action_space: gym.Space,
    target_env: str, target_obs: gym.Space, target_action: gym.Space,
) -> None:
    """A clear one-line error unless `what` (a dataset, a pretrained net) fits the target env."""
    theirs = f"{env_id} ({observation_space}, {action_space})"
    ours = f"{target_env} ({target_obs}, {target_action})"
    if task_of(env_id) != task_of(target_env):
        raise UserError(f"{what} comes from {theirs}, not from {ours}")
    if observation_space != target_obs or action_space != target_action:
        raise UserError(f"{what} has the spaces of {theirs}; {ours} differs")


# --- save and load -------------------------------------------------------------------------------


def check_new_path(path: str | Path) -> Path:
    """`path` as a dataset folder still to write: absent (or empty), under folders, or a UserError."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} already exists; pick another --out or remove it")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"cannot write {path}: {blocker} is a file, not a folder")
    return path


def save_dataset(path: str | Path, data: Dataset) -> Path:
    """Write the dataset folder atomically: built in a temp folder beside it, then renamed."""
    path = check_new_path(path)
    arrays = {
        "observations": data.observations, "actions": data.actions, "rewards": data.rewards,
        "terminations": data.terminations, "truncations": data.truncations,
        "episode_lengths": data.episode_lengths,
    }
    metadata = {
        "format": FORMAT, "version": VERSION, "env_id": data.env_id,
        "observation_space": space_to_json(data.observation_space),
        "action_space": space_to_json(data.action_space),
        "num_episodes": data.num_episodes, "num_steps": data.num_steps,
        "arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in arrays.items()},
        **data.info,
    }
    with atomic_write(path, folder=True) as tmp:
        np.savez_compressed(tmp / ARRAYS, **arrays)
        (tmp / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def load_dataset(path: str | Path) -> Dataset:
    """Read and check a dataset folder; every problem is a one-line UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"dataset {path} does not exist (`rlplay collect … --out {path}` writes one)")
    try:
        metadata = json.loads((path / METADATA).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is not an rlplay dataset (no {METADATA})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path / METADATA} is not valid JSON; the dataset is corrupt") from None
    check_format(path, metadata, FORMAT, VERSION, "dataset")
    try:
        with np.load(path / ARRAYS, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise UserError(f"{path} has no {ARRAYS}; the dataset is incomplete") from None
    except ValueError as e:  # object arrays need pickle, which we refuse
        raise UserError(f"{path / ARRAYS} cannot be read without pickle; refusing it ({e})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise UserError(f"{path / ARRAYS} is truncated or corrupt ({type(e).__name__})") from None
    try:
        data = Dataset(
            metadata["env_id"], space_from_json(metadata["observation_space"]),
            space_from_json(metadata["action_space"]),
            *(arrays[k] for k in ARRAY_NAMES),
            info={k: v for k, v in metadata.items() if k not in _OWN_KEYS},
        )
        problem = _inconsistency(data, metadata)
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise UserError(f"{path} is incomplete or corrupt (missing or bad {e})") from None
    if problem:
        raise UserError(f"{path} is inconsistent: {problem}")
    return data


_OWN_KEYS = {"format", "version", "env_id", "observation_space", "action_space", "num_episodes",
             "num_steps", "arrays"}


def _inconsistency(data: Dataset, metadata: dict) -> str | None:
    """What does not add up between the arrays, the spaces and the metadata (None: all does)."""
    declared = metadata["arrays"]
    for name in ARRAY_NAMES:
        a, spec = getattr(data, name), declared[name]
        if list(a.shape) != list(spec["shape"]) or str(a.dtype) != spec["dtype"]:
            return (f"{name} is {a.dtype} of shape {a.shape}, the metadata says {spec['dtype']} "
                    f"of shape {tuple(spec['shape'])}")
    kinds = {"terminations": "b", "truncations": "b", "episode_lengths": "iu", "rewards": "f",
             "actions": _kinds(data.action_space), "observations": _kinds(data.observation_space)}
    for name, kind in kinds.items():
        if getattr(data, name).dtype.kind not in kind:
            return f"{name} are {getattr(data, name).dtype}, expected {_KIND_NAMES[kind]}"
    e, m = data.num_episodes, data.num_steps
    if e != metadata["num_episodes"] or m != metadata["num_steps"]:
        return f"{e} episodes of {m} steps, the metadata says {metadata['num_episodes']} of {metadata['num_steps']}"
    if e == 0 or (data.episode_lengths < 1).any():
        return "every episode needs at least one step"
    obs_shape = data.observation_space.shape
    action_shape = () if isinstance(data.action_space, gym.spaces.Discrete) else data.action_space.shape
    expected = {"observations": (m + e, *obs_shape), "actions": (m, *action_shape),
                "rewards": (m,), "terminations": (m,), "truncations": (m,)}
    for name, shape in expected.items():
        if getattr(data, name).shape != shape:
            return f"{name} has shape {getattr(data, name).shape}, expected {shape}"
    ends = data.episode_starts + data.episode_lengths - 1
    if (data.terminations | data.truncations).sum() != e or not (
        data.terminations[ends] | data.truncations[ends]
    ).all():
        return "episodes must end exactly at their last step (terminated or truncated)"
    if not np.isfinite(data.rewards).all():
        return "rewards hold NaN or infinite values"
    for name, space in (("observations", data.observation_space), ("actions", data.action_space)):
        outside = _outside(getattr(data, name), space)
        if outside is not None:
            return f"{name}[{outside}] is NaN or outside {space}"
    return None


ARRAY_NAMES = ("observations", *STEP_ARRAYS, "episode_lengths")
_KIND_NAMES = {"b": "bool", "iu": "integers", "f": "floats"}


def _kinds(space: gym.Space) -> str:
    return "iu" if isinstance(space, gym.spaces.Discrete) else "f"


def _outside(values: np.ndarray, space: gym.Space) -> int | None:
    """The first row of `values` that is not in `space` (NaN never is), or None."""
    if isinstance(space, gym.spaces.Discrete):
        ok = (values >= space.start) & (values < space.start + space.n)
    else:  # comparisons with NaN are False
        ok = (values >= space.low) & (values <= space.high)
    bad = np.flatnonzero(~ok.reshape(len(values), -1).all(axis=1))
    return int(bad[0]) if len(bad) else None
