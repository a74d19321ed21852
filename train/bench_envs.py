"""`rlplay bench cartpole-envs`: env steps/s of rlplay/CartPole-v1 against Gymnasium's own
NumPy-vectorised CartPole, random actions, same process, for a range of batch sizes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import gymnasium as gym
import numpy as np
import torch
import tyro

from envs import CartPoleVectorEnv
from train.config import resolve_device


@dataclass
class EnvSpeedBench:
    sizes: tuple[int, ...] = (1, 64, 1024, 4096, 65536)
    """numbers of envs N to measure"""
    seconds: float = 1.0
    """time spent stepping per (library, N)"""
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    """device of our env (Gymnasium's is NumPy on the CPU)"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    compile: bool = True
    """also measure our env with torch.compile (one fused kernel per step; compiles once per N)"""


def steps_per_second(step: Callable[[int], None], n: int, seconds: float, sync=lambda: None) -> float:
    """Env steps per second (N per call) of `step(k)` run for about `seconds` after a warm-up."""
    for k in range(10):
        step(k)
    sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(16):
            step(calls)
            calls += 1
        sync()  # sync: the clock must include queued device work
    return calls * n / (time.perf_counter() - start)


def measure(n: int, opts: EnvSpeedBench, device: torch.device, compile: bool) -> tuple[float, float]:
    """(ours, Gymnasium's) env steps per second with N envs and random actions."""
    pool = 64  # pre-drawn random actions, so neither side pays for sampling inside the loop
    ours = CartPoleVectorEnv(n, device=device, compile=compile)
    ours.reset(seed=0)
    actions = torch.randint(0, 2, (pool, n), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ours_sps = steps_per_second(lambda k: ours.step(actions[k % pool]), n, opts.seconds, sync)

    ref = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    ref.reset(seed=0)
    np_actions = np.random.default_rng(0).integers(0, 2, size=(pool, n))
    ref_sps = steps_per_second(lambda k: ref.step(np_actions[k % pool]), n, opts.seconds)
    ref.close()
    return ours_sps, ref_sps


def env_speed_command(argv: list[str]) -> int:
    opts = tyro.cli(EnvSpeedBench, args=argv, prog="rlplay bench cartpole-envs")
    device = resolve_device(opts.device)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    print(f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads), "
          f"gymnasium {gym.__version__}")
    # Our columns (eager, and compiled with --compile), then Gymnasium's, then ours / Gymnasium's.
    ours_heads = ["ours, eager", *(["ours, compiled"] if opts.compile else [])]
    ratio_heads = [("eager/gym", 9), *([("compiled/gym", 12)] if opts.compile else [])]
    print(f"{'N':>8}" + "".join(f"  {head:>16}" for head in [*ours_heads, "Gymnasium"])
          + "".join(f"  {head:>{width}}" for head, width in ratio_heads))
    for n in opts.sizes:
        eager, ref = measure(n, opts, device, compile=False)
        ours = [eager, *([measure(n, opts, device, compile=True)[0]] if opts.compile else [])]
        print(f"{n:>8}" + "".join(f"  {sps:>14,.0f}/s" for sps in [*ours, ref])
              + "".join(f"  {sps / ref:>{width}.2f}" for sps, (_, width) in zip(ours, ratio_heads)),
              flush=True)
    return 0
