"""The plumbing every training loop shares, so that each loop reads as its algorithm alone.

A `Session` owns what a run needs besides its agent: the device, the training and eval envs, the
run folder, the logger, the step counters, evaluations with best/latest checkpoints, SIGINT and
SIGTERM, and the training clock (which stops while evaluating or writing files).
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
from train.config import RunConfig, resolve_device
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
        self.device = resolve_device(run.device)
        if run.threads > 0:
            torch.set_num_threads(run.threads)
        seed_everything(run.seed)
        self.envs = make_envs(
            run, self.device, run.num_envs, vectorization=run.vectorization, training=True
        )
        self.eval_envs = make_envs(run, self.device, run.eval_episodes)
        self.video_env = None
        if run.eval_video:
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # off-screen frames, no display
            self.video_env = make_envs(run, self.device, 1, render_mode="rgb_array")
        self.config = {
            "algo": algo, "run": dataclasses.asdict(run), algo: dataclasses.asdict(algo_config),
        }
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
        self.episodes_cut = False  # begin() reset the envs mid-episode (resume without env state)
        self.algo_state: Callable[[], dict] = dict  # the agent's (and buffer's) checkpoint part
        self.healthy: Callable[[], bool] = lambda: True  # False once a loss went NaN/inf

    @property
    def global_step(self) -> int:
        return self.counters["global_step"]

    def begin(self, log: Callable[[str], None] = print) -> torch.Tensor:
        """Reset (or, resuming, restore) the envs and counters; open the logger; return obs."""
        run = self.run
        if self.resume is None:
            self.run_dir = make_run_dir(run, self.algo)
        obs, _ = self.envs.reset(seed=run.seed)
        if self.resume is not None:
            ckpt = self.resume
            self.counters.update(ckpt["counters"])
            self.evals = [EvalPoint(*e) for e in ckpt["evals"]]
            set_rng_state(ckpt["rng"])
            if ckpt["env_state"] is not None and envs_lib.get_env_state(self.envs) is not None:
                envs_lib.set_env_state(self.envs, ckpt["env_state"])
                obs = ckpt["obs"].to(self.device)
            else:
                log("note: env state not restorable here; envs were reset with a fresh seed")
                obs, _ = self.envs.reset(seed=run.seed + self.global_step)
                self.episodes_cut = True
        self.logger = RunLogger(
            self.run_dir, total_steps=run.total_steps, start_step=self.global_step,
            progress=run.progress,
        )
        self.logger.write_config(self.config, self.run_dir)
        self._start = time.perf_counter() - self.counters["train_seconds"]
        self.obs = obs
        return obs

    def signals(self):
        """Context manager yielding the StopFlag that SIGINT/SIGTERM set instead of killing us."""
        return stop_on_signals()

    def should_stop(self, signals: StopFlag) -> bool:
        """True (and remembered why) once total_steps is reached or a signal asked to stop."""
        flag = self._stop or signals
        if flag.requested:
            self.stopped_by = flag.signal or "stop"
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
        """Write one self-describing checkpoint file (never over a good one with a diverged agent)."""
        if not self.healthy():  # sync
            raise self._diverged()
        payload = {
            "algo": self.algo, "config": self.config, "counters": dict(self.counters),
            "evals": [tuple(e) for e in self.evals], "rng": rng_state(),
            "obs": self.obs.cpu(), "env_state": envs_lib.get_env_state(self.envs),
            **self.algo_state(),
        }
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
        self.eval_envs.close()
        if self.video_env is not None:
            self.video_env.close()

    def _pause_clock(self) -> None:
        self.counters["train_seconds"] = time.perf_counter() - self._start

    def _resume_clock(self) -> None:
        self._start = time.perf_counter() - self.counters["train_seconds"]

    def _evaluate(self, policy) -> float:
        c = self.counters
        seed = eval_seed(self.run.seed, c["num_evals"])
        returns = evaluate(policy, self.eval_envs, seed=seed)
        if self.video_env is not None:
            frames = record_episode(
                policy, self.video_env, seed=seed, max_frames=self.run.eval_video_frames
            )
            fps = self.video_env.metadata.get("render_fps") or 30
            self.logger.log_video("eval/video", frames, c["global_step"], fps)
        c["num_evals"] += 1
        self.logger.log_eval(c["global_step"], returns)
        mean, std = float(returns.mean()), float(returns.std(correction=0))  # 1 episode: 0, not nan
        self.evals.append(EvalPoint(c["global_step"], c["train_seconds"], mean))
        self.logger.message(
            f"step {c['global_step']}: eval return {mean:.1f} ± {std:.1f} "
            f"over {len(returns)} episodes"
        )
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
