"""The plumbing every training loop shares, so that each loop reads as its algorithm alone.

A `Session` owns what a run needs besides its agent: the device, the training and eval envs, the
run folder, the logger, the step counters, evaluations with best/latest checkpoints, SIGINT and
SIGTERM, and the training clock (which stops while evaluating or writing files).

Data-parallel (a process group is up, train/distributed.py), every rank has a Session over its
slice of the envs; they agree on when to log, evaluate, checkpoint and stop (the counters count
all ranks' env steps), rank 0 alone evaluates and writes, and its checkpoints hold every rank's
RNG and env state.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

import envs as envs_lib
from train.checkpoint import BEST, LATEST, rng_state, save_checkpoint, set_rng_state
from train.common import StopFlag, make_envs, make_run_dir, seed_everything, stop_on_signals
from train import distributed
from train.config import RunConfig
from train.errors import TrainingDiverged
from train.evaluate import eval_seed, evaluate, record_episode
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


class Session:
    """One run's envs, folder, logger, counters, evaluations, checkpoints and signals."""

    def __init__(
        self, run: RunConfig, algo: str, algo_config: Any, *, resume: dict | None = None,
        stop: StopFlag | None = None,
    ):
        self.run, self.algo, self.resume = run, algo, resume
        self.dist = dist = distributed.current()
        self.num_envs = distributed.env_slice(run.num_envs, dist.world_size)  # this rank's envs
        self.device = dist.device(run.device)
        if run.threads > 0:
            torch.set_num_threads(run.threads)
        seed_everything(run.seed)  # the same on every rank: the nets start identical
        self.envs = make_envs(
            run, self.device, self.num_envs, vectorization=run.vectorization, training=True
        )
        self.eval_envs = make_envs(run, self.device, run.eval_episodes) if dist.is_main else None
        self.video_env = None
        if run.eval_video and dist.is_main:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # off-screen frames, no display
            self.video_env = make_envs(run, self.device, 1, render_mode="rgb_array")
        self.config = {
            "algo": algo, "run": dataclasses.asdict(run), algo: dataclasses.asdict(algo_config),
            "world_size": dist.world_size,
        }
        self.saved_world = resume.get("world_size", 1) if resume else dist.world_size
        self.world_changed = self.saved_world != dist.world_size  # resumed on another count
        # This rank's RNG, env and loop state in a data-parallel checkpoint of the same size.
        self.rank_resume: dict | None = (
            resume["rank_states"][dist.rank] if resume and dist.enabled and not self.world_changed
            else None
        )
        self.counters: dict[str, Any] = {
            "global_step": 0, "num_evals": 0, "train_seconds": 0.0, "best_return": None,
            "next_eval": run.eval_every or run.total_steps, "next_log": run.log_every,
            "next_checkpoint": run.checkpoint_every or run.total_steps,
        }
        self.evals: list[EvalPoint] = []
        # Made by begin(), once the agent was built: bad input never leaves an empty run folder.
        self.run_dir = Path(resume["run_dir"]) if resume else Path(run.runs_dir)
        self.logger: RunLogger | None = None
        self.stopped_by = "total_steps"
        self._stop = stop
        self._start = time.perf_counter()
        self.obs: torch.Tensor | None = None  # the loop's current observation, for checkpoints
        self.episodes_cut = False  # begin() reset the envs mid-episode (resume without env state
        # or on another number of processes)
        self.algo_state: Callable[[], dict] = dict  # the agent's (and buffer's) checkpoint part
        self.rank_state: Callable[[], dict] = dict  # the part of it that differs between ranks
        self.healthy: Callable[[], bool] = lambda: True  # False once a loss went NaN/inf

    @property
    def global_step(self) -> int:
        return self.counters["global_step"]

    def begin(self, log: Callable[[str], None] = print) -> torch.Tensor:
        """Reset (or, resuming, restore) the envs and counters; open the logger; return obs."""
        run, dist = self.run, self.dist
        if self.resume is None and dist.is_main:
            self.run_dir = make_run_dir(run, self.algo)
        self.run_dir = Path(dist.broadcast(str(self.run_dir)))
        # Env i of the whole job gets seed + i, as in one process: rank r's slice starts at r·n
        # (Gymnasium's envs; a torch-native env seeds its whole slice's generator with that).
        first_env = dist.rank * self.num_envs
        obs, _ = self.envs.reset(seed=run.seed + first_env)
        if self.resume is not None:
            ckpt = self.resume
            self.counters.update(ckpt["counters"])
            self.evals = [EvalPoint(*e) for e in ckpt["evals"]]
            mine = self.rank_resume or ckpt  # top level: rank 0's (all of a 1-process run)
            set_rng_state(mine["rng"])
            if self.world_changed:
                if dist.is_main:
                    log(f"note: the checkpoint was written by {self.saved_world} process(es), "
                        f"resumed on {dist.world_size}: weights, optimizer, normalisation and "
                        "counters continue exactly; the envs restart (episodes in progress are "
                        "dropped) and the sampling RNGs are reseeded")
                obs, _ = self.envs.reset(seed=run.seed + self.global_step + first_env)
                self.episodes_cut = True
            elif mine["env_state"] is not None and envs_lib.get_env_state(self.envs) is not None:
                envs_lib.set_env_state(self.envs, mine["env_state"])
                obs = mine["obs"].to(self.device)
            else:
                if dist.is_main:
                    log("note: env state not restorable here; envs were reset with a fresh seed")
                obs, _ = self.envs.reset(seed=run.seed + self.global_step + first_env)
                self.episodes_cut = True
        self.logger = RunLogger(
            self.run_dir, total_steps=run.total_steps, start_step=self.global_step,
            progress=run.progress, main=dist.is_main, gather=dist.gather,
        )
        self.logger.write_config(self.config, self.run_dir)
        self._start = time.perf_counter() - self.counters["train_seconds"]
        self.obs = obs
        return obs

    def signals(self):
        """Context manager yielding the StopFlag that SIGINT/SIGTERM set instead of killing us."""
        return stop_on_signals()

    def should_stop(self, signals: StopFlag) -> bool:
        """True (and remembered why) once total_steps is reached, a signal or the caller's stop
        flag asked to stop (a caller's flag never masks Ctrl-C or SIGTERM)."""
        reason = next(
            ((flag.signal or "stop") for flag in (self._stop, signals)
             if flag is not None and flag.requested), None,
        )
        reason = self.dist.agree_stop(reason)  # data-parallel: all ranks stop at the same step
        if reason is not None:
            self.stopped_by = reason
            return True
        return self.global_step >= self.run.total_steps

    def log_due(self) -> bool:
        if self.global_step < self.counters["next_log"]:
            return False
        self.counters["next_log"] = self.global_step + self.run.log_every
        if not self.healthy():  # sync
            raise self._diverged()
        return True

    def after_step(self, policy: Callable[[torch.Tensor], torch.Tensor]) -> bool:
        """Evaluate and checkpoint when due; True once the eval reached --target-return."""
        run, step = self.run, self.global_step
        eval_due = step >= self.counters["next_eval"] or step >= run.total_steps
        checkpoint_due = run.checkpoint_every and step >= self.counters["next_checkpoint"]
        if not (eval_due or checkpoint_due):
            return False
        self._pause_clock()
        reached = False
        if checkpoint_due:
            self.counters["next_checkpoint"] = step + run.checkpoint_every
        if eval_due:
            self.counters["next_eval"] = step + (run.eval_every or run.total_steps)
            mean = self._evaluate(policy)
            if self.counters["best_return"] is None or mean > self.counters["best_return"]:
                self.counters["best_return"] = mean
                self.checkpoint(BEST)
            reached = run.target_return is not None and mean >= run.target_return
        self.checkpoint(LATEST)
        self._resume_clock()
        if reached:
            self.stopped_by = "target_return"
        return reached

    def checkpoint(self, name: str) -> Path:
        """Write one self-describing checkpoint file (never over a good one with a diverged agent).

        Data-parallel, every rank calls it: rank 0 gathers the ranks' own states (RNGs, envs,
        observations, the algorithm's `rank_state`) into `rank_states` and writes the file; its
        top level is rank 0's, so replay and 1-process tools read it as any checkpoint.
        """
        if not self.healthy():  # sync
            raise self._diverged()
        mine = {
            "rng": rng_state(), "obs": self.obs.cpu(),
            "env_state": envs_lib.get_env_state(self.envs),
        }
        ranks = self.dist.gather({**mine, **self.rank_state()}) if self.dist.enabled else None
        if not self.dist.is_main:
            return self.run_dir / name
        payload = {
            "algo": self.algo, "config": self.config, "counters": dict(self.counters),
            "evals": [tuple(e) for e in self.evals], **mine, **self.algo_state(),
        }
        if ranks is not None:
            payload.update(world_size=self.dist.world_size, rank_states=ranks)
        save_checkpoint(self.run_dir / name, payload)
        return self.run_dir / name

    def finish(self) -> TrainResult:
        """Save and say how to continue if stopped by a signal; close everything."""
        self._pause_clock()
        try:
            if self.stopped_by not in ("total_steps", "target_return"):
                path = self.checkpoint(LATEST)
                self.logger.message(
                    f"{self.stopped_by} at step {self.global_step}: saved {path}; continue with "
                    f"rlplay train {self.algo} --resume {self.run_dir}"
                )
        finally:
            self.close()
        return TrainResult(
            self.run_dir, self.global_step, self.evals, self.counters["best_return"],
            self.stopped_by,
        )

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        self.envs.close()
        if self.eval_envs is not None:
            self.eval_envs.close()
        if self.video_env is not None:
            self.video_env.close()

    def _pause_clock(self) -> None:
        if self.device.type == "cuda":  # the clock stops when the queued training work is done
            torch.cuda.synchronize(self.device)  # sync
        self.counters["train_seconds"] = time.perf_counter() - self._start

    def _resume_clock(self) -> None:
        self._start = time.perf_counter() - self.counters["train_seconds"]

    def _evaluate(self, policy) -> float:
        """Rank 0 evaluates (every rank holds the same policy) and tells the others the mean,
        so that all take the same best-checkpoint and target-return decisions."""
        c = self.counters
        mean = None
        if self.dist.is_main:
            seed = eval_seed(self.run.seed, c["num_evals"])
            returns = evaluate(policy, self.eval_envs, seed=seed)
            if self.video_env is not None:
                frames = record_episode(
                    policy, self.video_env, seed=seed, max_frames=self.run.eval_video_frames
                )
                fps = self.video_env.metadata.get("render_fps") or 30
                self.logger.log_video("eval/video", frames, c["global_step"], fps)
            self.logger.log_eval(c["global_step"], returns)
            mean = float(returns.mean())
            std = float(returns.std(correction=0))  # 1 episode: 0, not nan
            self.logger.message(
                f"step {c['global_step']}: eval return {mean:.1f} ± {std:.1f} "
                f"over {len(returns)} episodes"
            )
        mean = self.dist.broadcast(mean)
        c["num_evals"] += 1
        self.evals.append(EvalPoint(c["global_step"], c["train_seconds"], mean))
        return mean

    def _diverged(self) -> TrainingDiverged:
        latest = self.run_dir / LATEST
        kept = (
            f"the last good checkpoint was kept ({latest})" if latest.exists()
            else "no checkpoint had been written yet"
        )
        return TrainingDiverged(
            f"the loss became NaN or infinite before step {self.global_step}; training stopped "
            f"and {kept}; try a lower --learning-rate or --max-grad-norm"
        )
