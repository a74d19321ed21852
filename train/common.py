"""Plumbing every training loop shares: run folders, env construction, seeding, signals."""

from __future__ import annotations

import random
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import gymnasium as gym
import numpy as np
import torch

import envs
from train.config import RunConfig
from train.errors import UserError

# Steps an episode may last in evaluations and `replay` before it is cut, in `collect` before it
# is refused: a greedy policy can loop forever in an env without a time limit (CliffWalking-v1).
# ALE/*-v5's own limit: 108,000 frames at 4 a step.
EPISODE_STEP_LIMIT = 27_000


def make_run_dir(run: RunConfig, algo: str, *, resumable: bool = True) -> Path:
    """runs/{env}__{algo}__{seed}__{time} (or runs/{run_name}); must not exist yet."""
    name = run.run_name or (
        f"{run.env.replace('/', '-').replace(':', '-')}__{algo}__{run.seed}__{int(time.time())}"
    )
    run_dir = Path(run.runs_dir) / name
    check_new_run_dir(run_dir, resumable=resumable)
    _mkdir(run_dir)
    return run_dir


def check_run_dir_free(run: RunConfig) -> None:
    """make_run_dir's errors without the run folder (a named one that exists, a runs_dir that
    cannot be made), for a launcher whose ranks make it later: rank 0 alone would fail, and the
    other ranks, waiting for it, with tracebacks."""
    if run.run_name is not None:
        check_new_run_dir(Path(run.runs_dir) / run.run_name)
    _mkdir(Path(run.runs_dir))


def check_new_run_dir(run_dir: Path, *, resumable: bool = True) -> None:
    if run_dir.exists() and any(run_dir.iterdir()):
        again = f" or continue it with --resume {run_dir}" if resumable else " or remove it"
        raise UserError(f"run folder {run_dir} already exists; pick another --run-name{again}")


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a folder should be, no permission, a read-only disk
        raise UserError(f"cannot create the folder {folder}: {e.strerror}; "
                        "pick another --runs-dir") from None


def check_env(env_id: str) -> None:
    """An unknown env id as a one-line user error, before anything is built for it."""
    try:
        envs.check_env_id(env_id)
    except envs.UnknownEnvError as e:
        raise UserError(str(e)) from None


def make_envs(
    run: RunConfig, device: torch.device, num_envs: int, *, render_mode: str | None = None,
    vectorization: str = "sync", training: bool = False,
) -> gym.vector.VectorEnv:
    """`envs.make` with its failures turned into one-line user errors; `training` envs may
    differ from evaluation's (Atari: a lost life ends the episode, rewards are clipped)."""
    try:
        return envs.make(
            run.env, num_envs, device=device, vectorization=vectorization, render_mode=render_mode,
            training=training,
        )
    except envs.UnknownEnvError as e:
        raise UserError(str(e)) from None
    except gym.error.DependencyNotInstalled as e:
        raise UserError(f"{run.env} needs a package that is not installed: {e}") from None
    except gym.error.Error as e:
        raise UserError(f"cannot make {run.env}: {e}") from None


def saved_sizes(net_kwargs: dict, *keys: str) -> dict:
    """The observation sizes (and the named action sizes) an agent was built with, from its
    checkpoint's net_kwargs; checkpoints from before image observations lack obs_shape."""
    names = ("obs_dim", "discrete_obs", "obs_shape", "obs_scale", *keys)
    sizes = {k: net_kwargs[k] for k in names if k in net_kwargs}
    if sizes.get("obs_shape") is not None:
        sizes["obs_shape"] = tuple(sizes["obs_shape"])
    return sizes


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between steps and then saves and exits."""

    def __init__(self) -> None:
        self.signal: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """SIGINT or SIGTERM ask the loop to stop cleanly; a second SIGINT interrupts at once."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum, frame):
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signal = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
