"""`rlplay replay`: play a saved policy greedily; print returns, show a window or write a video."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import torch
import tyro

from train.checkpoint import BEST, LATEST, load_checkpoint
from train.common import EPISODE_STEP_LIMIT, make_envs
from train.config import RunConfig, check_seed, default_is, resolve_device
from train.errors import UserError
from train.offpolicy import dqn_from_checkpoint
from train.onpolicy import env_policy, pg_from_checkpoint


def _dqn_policy(ckpt, device, action_space):
    return dqn_from_checkpoint(ckpt, device).act


def _pg_policy(ckpt, device, action_space):
    return env_policy(pg_from_checkpoint(ckpt, device), action_space)


def _cloned_policy(ckpt, device, action_space):
    from train.pretrain import greedy_policy, pretrained_net

    return greedy_policy(pretrained_net(ckpt, device), action_space)


POLICY_LOADERS = {
    "dqn": _dqn_policy, "ppo": _pg_policy, "a2c": _pg_policy, "reinforce": _pg_policy,
    "pretrain": _cloned_policy,
}


@dataclass
class ReplayArgs:
    path: Annotated[str, tyro.conf.Positional]
    """a run folder (runs/<run>) or a checkpoint file"""
    episodes: Annotated[int | None, default_is("10, or 1 with --render human / --video")] = None
    """episodes to play"""
    checkpoint: Literal["best", "latest"] = "best"
    """which checkpoint of a run folder: the best evaluation's or the latest"""
    render: Literal["none", "human"] = "none"
    """human opens a window (needs a display)"""
    video: str | None = None
    """write the episodes to this .gif or .mp4, rendered headlessly from rgb_array frames"""
    fps: Annotated[int | None, default_is("the env's render_fps")] = None
    """video frame rate"""
    seed: int = 0
    """seed of the first episode's reset (episode k uses seed + k)"""
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    """where the policy runs"""
    threads: int = 1
    """torch CPU threads (one frame at a time runs fastest on 1; 0 keeps torch's default)"""
    max_steps: int = EPISODE_STEP_LIMIT
    """steps an episode may last before it is cut (and said to be): a greedy policy can loop
    forever in an env without a time limit, such as CliffWalking-v1"""

    def __post_init__(self) -> None:
        check_seed(self.seed)


def has_display() -> bool:
    """Whether a window can open: always on macOS and Windows, with an X or Wayland display on
    Linux (pygame would print an error and play on without a window)."""
    return not sys.platform.startswith("linux") or any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")
    )


def env_of(ckpt: dict) -> str:
    """The env a checkpoint's policy plays: its run's, or its dataset's for a pretrained one."""
    return ckpt["dataset"]["env_id"] if ckpt["algo"] == "pretrain" else ckpt["config"]["run"]["env"]


def replay_command(argv: list[str]) -> int:
    args = tyro.cli(ReplayArgs, args=argv, prog="rlplay replay")
    returns, cut = replay(args)
    for i, (r, was_cut) in enumerate(zip(returns, cut)):
        note = f" (cut at {args.max_steps:,} steps)" if was_cut else ""
        print(f"episode {i + 1}: return {r:.1f}{note}")
    mean = sum(returns) / len(returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns))
    print(f"mean return over {len(returns)} episodes: {mean:.1f} ± {std:.1f}")
    if args.video:
        print(f"video: {args.video}")
    return 0


class Played(NamedTuple):
    returns: list[float]  # each episode's return
    cut: list[bool]  # whether it was cut at --max-steps


def replay(args: ReplayArgs) -> Played:
    """Play the checkpoint's greedy policy for `args.episodes` episodes."""
    if args.episodes is not None and args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if args.max_steps < 1:
        raise UserError(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.video and Path(args.video).suffix.lower() not in (".gif", ".mp4"):
        raise UserError(f"--video must end in .gif or .mp4, got {args.video}")
    if args.fps is not None and args.fps < 1:
        raise UserError(f"--fps must be at least 1, got {args.fps}")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0, got {args.threads}")
    if args.render == "human" and not args.video and not has_display():
        raise UserError("--render human needs a display (neither DISPLAY nor WAYLAND_DISPLAY is "
                        "set); write the episodes to a file instead with --video out.gif")
    ckpt, file = load_checkpoint(args.path, prefer=BEST if args.checkpoint == "best" else LATEST)
    if ckpt["algo"] not in POLICY_LOADERS:
        raise UserError(f"{file}: replay does not know algorithm '{ckpt['algo']}'")
    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    run = RunConfig(env=env_of(ckpt))
    render_mode = "rgb_array" if args.video else ("human" if args.render == "human" else None)
    if render_mode == "rgb_array":
        # Off-screen frames need no display; without this, pygame complains about a missing one.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    episodes = args.episodes or (1 if render_mode else 10)
    try:
        envs = make_envs(run, device, 1, render_mode=render_mode)
    except Exception as e:  # pygame without a display, missing renderer, ...
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot render {run.env} ({args.render}): {e}; try --video out.gif") from None
    policy = POLICY_LOADERS[ckpt["algo"]](ckpt, device, envs.single_action_space)
    frames: list = []
    played = Played([], [])
    with torch.no_grad():
        for k in range(episodes):
            obs, _ = envs.reset(seed=args.seed + k)
            total, done = 0.0, False
            for _ in range(args.max_steps):
                if args.video:
                    frames.append(envs.render()[0])
                obs, reward, terminated, truncated, _ = envs.step(policy(obs))
                total += float(reward[0])  # sync: one env, played for people to watch
                done = bool(terminated[0] or truncated[0])
                if done:
                    break
            played.returns.append(total)
            played.cut.append(not done)
    fps = args.fps or envs.metadata.get("render_fps") or 30
    envs.close()
    if args.video:
        write_video(args.video, frames, fps)
    return played


def write_video(path: str, frames: list, fps: int) -> None:
    """Frames (H, W, 3) uint8 to a GIF (Pillow) or MP4 (ffmpeg from imageio-ffmpeg)."""
    import imageio.v2 as imageio

    if not frames:
        raise UserError("no frames were rendered; does the env support render_mode='rgb_array'?")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if path.lower().endswith(".gif"):
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    else:
        imageio.mimsave(path, frames, fps=fps, macro_block_size=1)
