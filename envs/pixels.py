"""Pixel envs: Atari (ale-py) with the DQN preprocessing, and MinAtar's 10×10 grids.

Gymnasium's own wrappers do the work wherever one exists (`AtariPreprocessing`,
`FrameStackObservation`, `ClipReward`, `RecordEpisodeStatistics`); the two Atari wrappers it
lacks (episodic life, fire on reset) are written here after the DQN paper and OpenAI Baselines'
`atari_wrappers.py`.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    AtariPreprocessing, ClipReward, FrameStackObservation, RecordEpisodeStatistics,
)

FRAME_STACK = 4
ALE_ENTRY_POINT = "ale_py.env:AtariEnv"
MINATAR_ENTRY_POINT = "minatar.gym:BaseEnv"


def is_atari(spec: gym.envs.registration.EnvSpec) -> bool:
    return spec.entry_point == ALE_ENTRY_POINT


def is_minatar(spec: gym.envs.registration.EnvSpec) -> bool:
    return spec.entry_point == MINATAR_ENTRY_POINT


def pixel_family(env_id: str) -> str | None:
    """"atari" or "minatar" for a registered id of theirs, else None."""
    spec = gym.spec(env_id)
    return "atari" if is_atari(spec) else "minatar" if is_minatar(spec) else None


def atari_wrappers(*, training: bool) -> list[Callable[[gym.Env], gym.Env]]:
    """The DQN preprocessing (Mnih et al. 2015; Machado et al. 2018), one env at a time.

    From the emulator up: 30 random no-ops at reset, 4-frame skip with a max over the last two
    frames, 84×84 grayscale (`AtariPreprocessing`); the true episode statistics (whole games,
    unclipped rewards); FIRE after reset and after a lost life where the game needs it; for
    training only, a lost life ends the episode and rewards are clipped to [-1, 1]; last, a stack
    of the 4 latest frames (the first frame repeated at reset). Statistics sit below life loss and
    clipping, so logged returns are the game's own.
    """
    layers: list[Callable[[gym.Env], gym.Env]] = [
        lambda env: AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84),
        RecordEpisodeStatistics,
        FireOnLifeStart,
    ]
    if training:
        layers += [EpisodicLife, lambda env: ClipReward(env, -1.0, 1.0)]
    layers.append(lambda env: FrameStackObservation(env, FRAME_STACK, padding_type="reset"))
    return layers


def atari_kwargs(spec: gym.envs.registration.EnvSpec) -> dict[str, Any]:
    """`AtariPreprocessing` does the frame skip, so the emulator must not skip too (ALE/*-v5
    skips 4 by default; *NoFrameskip-v4 does not)."""
    return {"frameskip": 1} if spec.kwargs.get("frameskip", 1) != 1 else {}


def lives(env: gym.Env) -> int:
    return env.unwrapped.ale.lives()


class FireOnLifeStart(gym.Wrapper):
    """Press FIRE at reset and after each lost life, in games that wait for it (Breakout, ...).

    Baselines' `FireResetEnv` fires at reset only; with episodic life that covers every life in
    training, but a greedy evaluation (full games) that never learned to fire would stall after
    the first lost life until the 108,000-frame limit. Firing after every life keeps training and
    evaluation the same game.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.fire = env.unwrapped.get_action_meanings().index("FIRE") if _needs_fire(env) else None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.fire is None:
            return obs, info
        obs, _, terminated, truncated, info = self.env.step(self.fire)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info

    def step(self, action):
        before = lives(self.env)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.fire is not None and not (terminated or truncated) and 0 < lives(self.env) < before:
            obs, fire_reward, terminated, truncated, info = self.env.step(self.fire)
            reward += fire_reward
        return obs, reward, terminated, truncated, info


def _needs_fire(env: gym.Env) -> bool:
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


class EpisodicLife(gym.Wrapper):
    """A lost life ends the training episode (no bootstrap past it) but not the game: the next
    reset continues the same game with a no-op step (Mnih et al. 2015; Baselines' EpisodicLifeEnv).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives, self.game_over = 0, True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        now = lives(self.env)
        if 0 < now < self.lives:
            terminated = True
        self.lives = now
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the no-op itself ended the game
                obs, info = self.env.reset(**kwargs)
        self.lives, self.game_over = lives(self.env), False
        return obs, info


class MinAtarFrames(gym.ObservationWrapper):
    """MinAtar's (10, 10, C) bool grids as channels-first (C, 10, 10) uint8 for convolutions;
    `rgb_array` frames as uint8, each cell `cell` pixels wide (MinAtar renders floats, one pixel
    per cell)."""

    def __init__(self, env: gym.Env, cell: int = 16):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, (c, h, w), np.uint8)
        self.cell = cell

    def observation(self, observation):
        return np.ascontiguousarray(np.moveaxis(observation, -1, 0), dtype=np.uint8)

    def render(self):
        frame = self.env.render()
        if self.render_mode != "rgb_array" or frame is None:
            return frame
        frame = (np.asarray(frame) * 255).round().astype(np.uint8)
        return frame.repeat(self.cell, axis=0).repeat(self.cell, axis=1)
