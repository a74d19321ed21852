"""`rlplay bench ppo-scaling`: data-parallel PPO on CartPole-v1 over 1, 2, … processes (issue 7).

Each (processes, seed) is a real `rlplay train ppo --nproc P` run in a subprocess, so the numbers
include everything a user's run pays: gradient all-reduces, gathering episode statistics, rank 0
evaluating while the others wait. Read from the run's checkpoint: env steps/s of training (all
ranks' env steps over rank 0's training clock, evaluation excluded) and time to solve.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from train.bench import SOLVED, RunSummary, summarize
from train.checkpoint import load_checkpoint
from train.errors import UserError
from train.session import EvalPoint


@dataclass
class ScalingBench:
    """Options of `rlplay bench ppo-scaling`."""

    nprocs: tuple[int, ...] = (1, 2)
    """process counts to compare (each a `--nproc` run)"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds to run for each process count"""
    num_envs: int = 32
    """envs over all processes (the preset's 32; a multiple of every process count)"""
    total_steps: int = 100_000
    """env steps per run at most (the run stops once solved)"""
    eval_every: int = 2_048
    """env steps between greedy evaluations (10 episodes)"""
    device: str = "cpu"
    """--device of the runs (cuda: one GPU per process, nccl)"""


def run_once(opts: ScalingBench, nproc: int, seed: int, runs_dir: str) -> tuple[RunSummary, float]:
    """One `rlplay train ppo` run; its summary and env steps per training second."""
    name = f"p{nproc}-s{seed}"
    argv = [
        sys.executable, "-m", "train", "train", "ppo", "--env", "CartPole-v1",
        "--nproc", str(nproc), "--num-envs", str(opts.num_envs), "--seed", str(seed),
        "--total-steps", str(opts.total_steps), "--eval-every", str(opts.eval_every),
        "--target-return", str(SOLVED), "--checkpoint-every", "0", "--device", opts.device,
        "--runs-dir", runs_dir, "--run-name", name, "--no-progress",
    ]
    proc = subprocess.run(argv, text=True, capture_output=True)
    if proc.returncode != 0:
        raise UserError(f"{' '.join(argv[2:])} failed:\n{proc.stderr[-2000:]}")
    ckpt, _ = load_checkpoint(Path(runs_dir) / name)
    evals = [EvalPoint(*e) for e in ckpt["evals"]]
    counters = ckpt["counters"]
    return summarize(evals), counters["global_step"] / counters["train_seconds"]


def scaling_command(argv: list[str]) -> int:
    opts = tyro.cli(ScalingBench, args=argv, prog="rlplay bench ppo-scaling")
    if any(opts.num_envs % n for n in opts.nprocs):
        raise UserError(f"--num-envs {opts.num_envs} must be a multiple of every --nprocs")
    print(f"torch {torch.__version__}; PPO CartPole-v1 preset, {opts.num_envs} envs over all "
          f"processes, 1 torch thread per process, device {opts.device}")
    rows: dict[int, list[tuple[RunSummary, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rlplay-scaling-") as runs_dir:
        for nproc in opts.nprocs:
            for seed in opts.seeds:
                summary, sps = run_once(opts, nproc, seed, runs_dir)
                rows.setdefault(nproc, []).append((summary, sps))
                solved = ("never" if summary.reach_seconds is None else
                          f"{summary.reach_steps} steps, {summary.reach_seconds:.1f} s")
                print(f"nproc {nproc} seed {seed}: {sps:,.0f} env steps/s, "
                      f"{SOLVED:.0f} at {solved}", file=sys.stderr, flush=True)
    print(f"\n{'nproc':>5}  {'env steps/s':>11}  {'steps to 475':>12}  {'s to 475':>8}  "
          f"{'solved':>6}  (medians over seeds {', '.join(map(str, opts.seeds))})")
    base = None
    for nproc, runs in rows.items():
        sps = statistics.median(r[1] for r in runs)
        solved = [r[0] for r in runs if r[0].reach_seconds is not None]
        steps = int(statistics.median(s.reach_steps for s in solved)) if solved else None
        secs = statistics.median(s.reach_seconds for s in solved) if solved else None
        base = base or sps
        print(f"{nproc:>5}  {sps:>11,.0f}  {steps if steps is not None else 'never':>12}  "
              f"{f'{secs:.1f}' if secs is not None else 'never':>8}  "
              f"{len(solved)}/{len(runs):<4}  ({sps / base:.2f}x env steps/s)")
    print("s to 475: training seconds (evaluation excluded) to the first greedy eval >= 475, "
          "medians over the seeds that solved")
    return 0
