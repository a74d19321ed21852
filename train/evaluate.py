"""Greedy evaluation: one episode per eval env, all envs in parallel."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from train.common import EPISODE_STEP_LIMIT


def eval_seed(seed: int, num_evals: int) -> int:
    """Reset seed of run `seed`'s k-th evaluation (`num_evals`), whose env i resets with it + i.

    A hash of (seed, k) in [2**31, 2**32 - 2**16): evaluations and runs start from unrelated
    states (consecutive seeds would give consecutive evaluations all but one start state in
    common), never from a training env's (below 2**31: config.check_seed), and NumPy's legacy
    seeding (MinAtar's games) still takes seed + i.
    """
    digest = int(np.random.SeedSequence([seed, num_evals]).generate_state(1)[0])
    return 2**31 + digest % (2**31 - 2**16)


@torch.no_grad()
def evaluate(
    policy: Callable[[torch.Tensor], torch.Tensor],
    envs: VectorEnv,
    *,
    seed: int,
    max_steps: int = EPISODE_STEP_LIMIT,
) -> torch.Tensor:
    """Run one episode in each of `envs`' N envs; returns their undiscounted returns (N,) on CPU.

    Envs that finish early keep stepping (same-step autoreset) but their rewards are masked out.
    `max_steps` guards envs without a time limit: episodes still running then are cut, and a note
    says so. Syncs once a step to know when all are done.
    """
    obs, _ = envs.reset(seed=seed)
    n = obs.shape[0]
    returns_N = torch.zeros(n, dtype=torch.float64, device=obs.device)
    running_N = torch.ones(n, dtype=torch.bool, device=obs.device)
    for _ in range(max_steps):
        obs, reward, terminated, truncated, _ = envs.step(policy(obs))
        returns_N += reward.to(returns_N.device, torch.float64) * running_N
        running_N &= ~(terminated | truncated).to(running_N.device)
        if not running_N.any():  # sync
            break
    else:
        print(f"note: evaluation cut {int(running_N.sum())} of {n} episodes at {max_steps:,} "
              "steps (their returns so far count): the env's time limit, if any, is longer")
    return returns_N.cpu()


@torch.no_grad()
def record_episode(
    policy: Callable[[torch.Tensor], torch.Tensor], env: VectorEnv, *, seed: int, max_frames: int
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one episode of a 1-env `rgb_array` vector env, T ≤ max_frames
    (a longer episode is cut: the cap bounds the memory). Syncs once a step."""
    obs, _ = env.reset(seed=seed)
    frames = [env.render()[0]]
    while len(frames) < max_frames:
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        if terminated[0] or truncated[0]:  # sync; the env has already reset: no more frames
            break
        frames.append(env.render()[0])
    return np.stack(frames)
