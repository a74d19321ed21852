"""Run-level settings shared by every algorithm's loop, and the device choice."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import tyro

from train.errors import UserError


@dataclass
class RunConfig:
    env: str = "CartPole-v1"
    """Gymnasium env id; `module:EnvId` imports `module` first"""
    num_envs: int = 1
    """parallel training environments (N)"""
    seed: int = 1
    """seed for the nets, the envs (Gymnasium env i gets seed + i), exploration and sampling"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where the nets, buffer and env tensors live; auto picks cuda when available"""
    total_steps: int = 100_000
    """env steps to train for, counted over all envs (global_step)"""
    target_return: float | None = None
    """stop once the greedy evaluation's mean return reaches this"""
    eval_every: int = 10_000
    """env steps between greedy evaluations (0: only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation, run in parallel on separate eval envs"""
    eval_video: bool = False
    """at each evaluation, also play one greedy episode on a rendering env and put it in
    TensorBoard as an animated GIF (eval/video), at most eval_video_frames frames"""
    eval_video_frames: int = 500
    """the longest eval video, in frames (bounds its memory: 500 Atari frames are 50 MB)"""
    run_name: str | None = None
    """run folder name under runs_dir; default {env}__{algo}__{seed}__{time}"""
    runs_dir: str = "runs"
    """where run folders are created"""
    resume: str | None = None
    """continue a run: its folder or a checkpoint file"""
    save_buffer: bool = False
    """put the replay buffer in checkpoints so that --resume is exact (larger files)"""
    checkpoint_every: int = 50_000
    """env steps between latest-checkpoint writes (also written at each evaluation and at exit)"""
    log_every: int = 2_000
    """env steps between scalar logs and progress updates (each one is a host sync)"""
    vectorization: Literal["sync", "async"] = "sync"
    """Gymnasium vector env: sync steps envs in this process, async in subprocesses"""
    threads: int = 1
    """torch CPU threads (small nets run fastest on 1; 0 keeps torch's default)"""
    progress: bool = True
    """show a progress bar"""
    init_from: str | None = None
    """start the network from a pretrained one: a run folder or checkpoint of `rlplay pretrain`"""
    init_parts: Literal["all", "trunk"] = "all"
    """with --init-from: load all the tensors the pretraining fitted, or only the trunk's (the
    head stays at initialisation: e.g. DQN from a BC run without its logits as Q-values)"""
    freeze: Literal["trunk"] | None = None
    """with --init-from: keep the loaded trunk's weights fixed during RL updates"""
    unfreeze_after: int | None = None
    """with --freeze: let the trunk learn again from this env step on"""
    nproc: int = 1
    """processes training one agent data-parallel, each on num_envs/nproc envs (launches torchrun)"""
    dist_timeout: float = 300.0
    """seconds a rank waits for the others in a collective before the job fails (nproc > 1)"""

    def __post_init__(self) -> None:
        for name in ("num_envs", "total_steps", "eval_episodes", "log_every", "nproc",
                     "eval_video_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.dist_timeout > 0:
            raise ValueError(f"dist_timeout must be positive, got {self.dist_timeout}")
        for name in ("eval_every", "checkpoint_every", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.target_return is not None and math.isnan(self.target_return):
            raise ValueError("target_return must be a number, got nan")
        check_seed(self.seed)
        check_run_name(self.run_name)
        if self.init_parts != "all" and self.init_from is None:
            raise ValueError("init_parts needs init_from: it chooses what to load from it")
        if self.freeze is not None and self.init_from is None:
            raise ValueError("freeze needs init_from: only pretrained weights are worth freezing")
        if self.unfreeze_after is not None and (self.freeze is None or self.unfreeze_after < 0):
            raise ValueError("unfreeze_after needs freeze and must be >= 0")


def default_is(text: str):
    """Help for a field whose None default means `text`: tyro shows `(default: text)` instead
    of `(default: None)` (annotate the field with it)."""
    return tyro.conf.arg(help_behavior_hint=f"(default: {text})")


MAX_SEED = 2**30 - 1


def check_seed(seed: int) -> None:
    """Training env i resets with seed + i (+ the env steps so far, on a resume without env
    state): below 2**31 for any run shorter than 2**30 steps, where evaluations' seeds start
    (train/evaluate.py), and below 2**32, all NumPy's legacy seeding (MinAtar's games) takes."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")


def check_run_name(run_name: str | None) -> None:
    """A run name is one plain folder name under runs_dir (None: the default name)."""
    if run_name is not None and (not run_name or "/" in run_name or run_name in (".", "..")):
        raise ValueError(f"run_name must be a plain folder name, got {run_name!r}")


def resolve_device(name: str, flag: str = "--device") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' without CUDA is a user error (naming `flag`)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"{flag} cuda requested but CUDA is not available to torch "
            f"(torch {torch.__version__}); use {flag} cpu or install a CUDA build of torch"
        )
    return torch.device(name)
