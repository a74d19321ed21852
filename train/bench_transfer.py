"""`rlplay bench transfer`: RL from scratch against RL started from a pretrained network.

A scripted expert plays a handful of episodes, `pretrain` clones it into the agent's own
network, then each seed trains twice on the same env and budget, once from scratch and once with
`--init-from`, and the table gives env steps and training seconds to the target return.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import gymnasium as gym
import torch
import tyro

from train.bench import describe, interrupted, run_preset, summarize, table
from train.collect import SCRIPTED, CollectArgs, collect
from train.config import default_is, resolve_device
from train.dataset import save_dataset
from train.errors import UserError
from train.presets import task_of
from train.pretrain import PretrainConfig, pretrain


@dataclass
class TransferBench:
    env: str = "MountainCar-v0"
    """an env with a scripted expert: CartPole-v1, MountainCar-v0 or Acrobot-v1"""
    algo: Literal["dqn", "ppo", "a2c"] = "dqn"
    """the agent, with its preset for the env"""
    expert_episodes: int = 5
    """episodes of the scripted expert to pretrain on"""
    task: Literal["bc", "dynamics"] = "bc"
    """pretraining task"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds to run; each seed trains from scratch, then from the pretrained network"""
    total_steps: Annotated[int | None, default_is("the preset's")] = None
    """env steps per run"""
    eval_every: Annotated[int | None, default_is("the preset's")] = None
    """env steps between greedy evaluations"""
    target_return: Annotated[
        float | None, default_is("the env's reward_threshold in Gymnasium's registry")
    ] = None
    """the return to reach"""
    init_parts: Literal["all", "trunk"] = "all"
    """load all the pretrained tensors, or only the trunk's (--init-parts trunk)"""
    freeze: bool = False
    """freeze the transferred trunk (--freeze trunk)"""
    unfreeze_after: int | None = None
    """with --freeze: unfreeze after this many env steps"""
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    """device for the nets (and torch env tensors)"""


def transfer_command(argv: list[str]) -> int:
    opts = tyro.cli(TransferBench, args=argv, prog="rlplay bench transfer",
                    description=__doc__.split("\n\n")[0])
    return run_transfer_bench(opts)


def run_transfer_bench(opts: TransferBench) -> int:
    if task_of(opts.env) not in SCRIPTED:
        raise UserError(f"no scripted expert for {opts.env}; experts: {', '.join(SCRIPTED)}")
    if not opts.seeds or len(set(opts.seeds)) != len(opts.seeds):
        raise UserError("--seeds needs at least one seed, each once")
    if opts.unfreeze_after is not None and not opts.freeze:
        raise UserError("--unfreeze-after needs --freeze: only a frozen trunk can be unfrozen")
    resolve_device(opts.device)
    target = opts.target_return
    if target is None:
        target = gym.spec(task_of(opts.env)).reward_threshold
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, gymnasium {gym.__version__}, torch threads 1")
    settings = {k: v for k, v in (("total_steps", opts.total_steps), ("eval_every", opts.eval_every))
                if v is not None}
    settings["device"] = opts.device
    init_runs: dict[int, object] = {}
    scratch: dict[int, object] = {}
    # The loops print their settings and the transfer report: progress, so to stderr.
    with tempfile.TemporaryDirectory(prefix="rlplay-transfer-") as tmp, \
            contextlib.redirect_stdout(sys.stderr):
        start = time.perf_counter()
        data = collect(CollectArgs("scripted", out=f"{tmp}/data", episodes=opts.expert_episodes,
                                   env=opts.env, device=opts.device))
        save_dataset(Path(tmp) / "data", data)
        pretrained = pretrain(PretrainConfig(
            data=f"{tmp}/data", task=opts.task, net=opts.algo, seed=0, runs_dir=f"{tmp}/runs",
            run_name="pretrained", progress=False, device=opts.device,
        ))
        pretrain_seconds = time.perf_counter() - start
        init = {"init_from": str(pretrained.run_dir), "init_parts": opts.init_parts}
        if opts.freeze:
            init.update(freeze="trunk", unfreeze_after=opts.unfreeze_after)
        try:
            for seed in opts.seeds:
                scratch[seed] = summarize(run_preset(opts.algo, opts.env, seed=seed, **settings), target)
                print(f"seed {seed} scratch: {describe(scratch[seed], target)}")
                init_runs[seed] = summarize(run_preset(opts.algo, opts.env, seed=seed, **init,
                                                       **settings), target)
                print(f"seed {seed} init:    {describe(init_runs[seed], target)}")
        except KeyboardInterrupt:
            return interrupted()

    returns = data.episode_returns
    accuracy = pretrained.val_accuracy
    cloned = pretrained.cloned_return
    print(f"\n{opts.algo.upper()} on {opts.env}, target return {target:g}: scratch vs "
          f"--init-from a {opts.task} pretraining"
          + (" (its trunk only)" if opts.init_parts == "trunk" else "") + (" (trunk frozen"
          + (f" until step {opts.unfreeze_after})" if opts.unfreeze_after is not None else ")")
          if opts.freeze else ""))
    print(f"pretraining: {opts.expert_episodes} scripted episodes ({data.num_steps} steps, "
          f"return {returns.mean():.1f}), {pretrained.epochs} epochs (weights of epoch "
          f"{pretrained.best_epoch} kept)"
          + (f", validation accuracy {accuracy:.3f}" if accuracy is not None else "")
          + (f", cloned policy {cloned[0]:.1f}" if cloned is not None else "")
          + f"; {pretrain_seconds:.1f} s in all, not counted below")
    print(table(opts.seeds, init_runs, scratch, target=target, labels=("init", "scratch")))
    return 0
