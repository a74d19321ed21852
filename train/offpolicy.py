"""The off-policy training loop (DQN): seed -> envs -> agent -> loop -> log -> checkpoint."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import torch

import envs as envs_lib
from agents import DQNAgent, DQNConfig, ReplayBuffer, linear_schedule
from nets import space_sizes
from train.checkpoint import BEST, LATEST, rng_state, save_checkpoint, set_rng_state
from train.common import StopFlag, make_envs, make_run_dir, seed_everything, stop_on_signals
from train.config import RunConfig, resolve_device
from train.errors import TrainingDiverged, UserError
from train.evaluate import eval_seed, evaluate
from train.logger import RunLogger

class EvalPoint(NamedTuple):
    global_step: int
    train_seconds: float  # wall-clock in the loop so far, evaluation excluded
    mean_return: float


class TrainResult(NamedTuple):
    run_dir: Path
    global_step: int
    evals: list[EvalPoint]
    best_return: float | None
    stopped_by: str  # "total_steps", "target_return" or a signal name


def build_dqn(run: RunConfig, cfg: DQNConfig, space: gym.vector.VectorEnv, device) -> DQNAgent:
    """The agent for these env spaces, or a clear error if DQN cannot handle them."""
    if not isinstance(space.single_action_space, gym.spaces.Discrete):
        raise UserError(
            f"DQN needs a discrete action space; {run.env} has {space.single_action_space} "
            "(use ppo or a2c for continuous actions)"
        )
    try:
        sizes = space_sizes(space.single_observation_space, space.single_action_space)
    except TypeError as e:
        raise UserError(f"{run.env}: {e}") from None
    if cfg.buffer_size < run.num_envs:
        raise UserError(f"--buffer-size {cfg.buffer_size} cannot hold one step of {run.num_envs} envs")
    if cfg.learning_starts > cfg.buffer_size:
        raise UserError(
            f"--learning-starts {cfg.learning_starts} exceeds --buffer-size {cfg.buffer_size}: "
            "training would never start"
        )
    return DQNAgent(cfg, **sizes, device=device, seed=run.seed)


def train_dqn(
    run: RunConfig, cfg: DQNConfig, *, resume: dict | None = None, stop: StopFlag | None = None
) -> TrainResult:
    """Train DQN as `run` and `cfg` say; continue from a loaded checkpoint if `resume` is given."""
    device = resolve_device(run.device)
    if run.threads > 0:
        torch.set_num_threads(run.threads)
    seed_everything(run.seed)
    envs = make_envs(run, device, run.num_envs, vectorization=run.vectorization)
    eval_envs = make_envs(run, device, run.eval_episodes)
    agent = build_dqn(run, cfg, envs, device)
    obs_space = envs.single_observation_space
    buffer = ReplayBuffer(
        capacity=cfg.buffer_size, obs_shape=obs_space.shape,
        obs_dtype=torch.from_numpy(obs_space.sample()[None]).dtype, device=device,
        seed=run.seed + 1,
    )
    obs, _ = envs.reset(seed=run.seed)
    counters = {
        "global_step": 0, "steps_since_train": 0, "num_evals": 0, "train_seconds": 0.0,
        "next_eval": run.eval_every or run.total_steps, "next_log": run.log_every,
        "next_checkpoint": run.checkpoint_every or run.total_steps, "best_return": None,
    }
    evals: list[EvalPoint] = []
    if resume is not None:
        run_dir = Path(resume["run_dir"])
        obs = _restore(resume, agent, buffer, envs, counters, device, log=print)
        evals = [EvalPoint(*e) for e in resume["evals"]]
    else:
        run_dir = make_run_dir(run, "dqn")
    config = {"algo": "dqn", "run": dataclasses.asdict(run), "dqn": dataclasses.asdict(cfg)}
    logger = RunLogger(
        run_dir, total_steps=run.total_steps, start_step=counters["global_step"],
        progress=run.progress,
    )
    logger.write_config(config, run_dir)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)  # any NaN/inf loss since last check
    metrics: dict[str, torch.Tensor] = {}
    n = run.num_envs

    def checkpoint(name: str) -> Path:
        if nonfinite.item():  # sync: never write a diverged agent over a good checkpoint
            raise _diverged(run_dir, counters["global_step"])
        payload = {
            "algo": "dqn", "config": config, "net_kwargs": agent.net_kwargs,
            "agent": agent.state_dict(), "counters": dict(counters),
            "evals": [tuple(e) for e in evals], "rng": rng_state(), "obs": obs.cpu(),
            "env_state": envs_lib.get_env_state(envs),
            "buffer": buffer.state_dict() if run.save_buffer else None,
        }
        save_checkpoint(run_dir / name, payload)
        return run_dir / name

    try:
        stopped_by = "total_steps"
        start = time.perf_counter() - counters["train_seconds"]
        with stop_on_signals() as signals:
            stop = stop or signals
            while counters["global_step"] < run.total_steps:
                if stop.requested:
                    stopped_by = stop.signal or "stop"
                    break
                global_step = counters["global_step"]
                epsilon = linear_schedule(
                    cfg.start_epsilon, cfg.end_epsilon, cfg.exploration_steps, global_step
                )
                action = agent.act(obs, epsilon)
                next_obs, reward, terminated, truncated, info = envs.step(action)
                # final_obs is the true next observation, also where an episode just ended, so a
                # truncated transition bootstraps from its real last state (terminated ones never).
                buffer.add(obs, action, reward, info["final_obs"], terminated)
                obs = next_obs
                logger.stash_episodes(info)
                global_step = counters["global_step"] = global_step + n

                if len(buffer) >= cfg.learning_starts:
                    counters["steps_since_train"] += n
                    while counters["steps_since_train"] >= cfg.train_frequency:
                        counters["steps_since_train"] -= cfg.train_frequency
                        agent.set_learning_rate(agent.learning_rate(global_step))
                        for _ in range(cfg.gradient_steps):
                            metrics = agent.update(buffer.sample(cfg.batch_size))
                            nonfinite |= ~torch.isfinite(metrics["td_loss"])

                if global_step >= counters["next_log"]:
                    counters["next_log"] = global_step + run.log_every
                    if nonfinite.item():  # sync
                        raise _diverged(run_dir, global_step)
                    scalars = {"charts/epsilon": epsilon,
                               "charts/learning_rate": agent.learning_rate(global_step)}
                    scalars.update({f"losses/{k}": v for k, v in metrics.items()})
                    logger.log(global_step, scalars)

                eval_due = global_step >= counters["next_eval"] or global_step >= run.total_steps
                checkpoint_due = run.checkpoint_every and global_step >= counters["next_checkpoint"]
                if eval_due or checkpoint_due:
                    # The training clock stops while we evaluate and write files.
                    counters["train_seconds"] = time.perf_counter() - start
                    if checkpoint_due:
                        counters["next_checkpoint"] = global_step + run.checkpoint_every
                    if eval_due:
                        counters["next_eval"] = global_step + (run.eval_every or run.total_steps)
                        mean = _evaluate(agent, eval_envs, run, counters, logger, evals)
                        if counters["best_return"] is None or mean > counters["best_return"]:
                            counters["best_return"] = mean
                            checkpoint(BEST)
                    checkpoint(LATEST)
                    start = time.perf_counter() - counters["train_seconds"]
                    if eval_due and run.target_return is not None and mean >= run.target_return:
                        stopped_by = "target_return"
                        break

        counters["train_seconds"] = time.perf_counter() - start
        if stopped_by not in ("total_steps", "target_return"):
            path = checkpoint(LATEST)
            logger.message(
                f"{stopped_by} at step {counters['global_step']}: saved {path}; continue with "
                f"rlplay train dqn --resume {run_dir}"
            )
    finally:
        logger.close()
        envs.close()
        eval_envs.close()
    return TrainResult(run_dir, counters["global_step"], evals, counters["best_return"], stopped_by)


def _evaluate(agent, eval_envs, run, counters, logger, evals) -> float:
    returns = evaluate(agent.act, eval_envs, seed=eval_seed(run.seed, counters["num_evals"]))
    counters["num_evals"] += 1
    logger.log_eval(counters["global_step"], returns)
    mean = float(returns.mean())
    evals.append(EvalPoint(counters["global_step"], counters["train_seconds"], mean))
    logger.message(
        f"step {counters['global_step']}: eval return {mean:.1f} ± {float(returns.std()):.1f} "
        f"over {len(returns)} episodes"
    )
    return mean


def _restore(ckpt, agent, buffer, envs, counters, device, log) -> torch.Tensor:
    """Put a checkpoint's state back into a freshly built loop; returns the current obs."""
    same_rng = agent.load_state_dict(ckpt["agent"])
    counters.update(ckpt["counters"])
    set_rng_state(ckpt["rng"])
    if ckpt["buffer"] is not None:
        same_rng = buffer.load_state_dict(ckpt["buffer"]) and same_rng
    else:
        log("note: the checkpoint has no replay buffer (train with --save-buffer for an exact "
            "resume); refilling it before updates continue")
    if not same_rng:
        log("note: the checkpoint was written on another device type; exploration and sampling "
            "continue from fresh RNG streams (resume is not exact)")
    if ckpt["env_state"] is not None and envs_lib.get_env_state(envs) is not None:
        envs_lib.set_env_state(envs, ckpt["env_state"])
        return ckpt["obs"].to(device)
    log("note: env state not restorable here; envs were reset with a fresh seed")
    obs, _ = envs.reset(seed=ckpt["config"]["run"]["seed"] + ckpt["counters"]["global_step"])
    return obs


def _diverged(run_dir: Path, global_step: int) -> TrainingDiverged:
    kept = (
        f"the last good checkpoint was kept ({run_dir / LATEST})" if (run_dir / LATEST).exists()
        else "no checkpoint had been written yet"
    )
    return TrainingDiverged(
        f"the TD loss became NaN or infinite before step {global_step}; training stopped and "
        f"{kept}; try a lower --learning-rate or --max-grad-norm"
    )


def dqn_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu") -> DQNAgent:
    """Rebuild a DQN agent (nets, optimizer, RNG) from a checkpoint alone."""
    cfg = DQNConfig(**{**ckpt["config"]["dqn"], "hidden": tuple(ckpt["config"]["dqn"]["hidden"])})
    sizes = {k: ckpt["net_kwargs"][k] for k in ("obs_dim", "num_actions", "discrete_obs")}
    agent = DQNAgent(cfg, **sizes, device=device, seed=ckpt["config"]["run"]["seed"])
    agent.load_state_dict(ckpt["agent"])
    return agent
