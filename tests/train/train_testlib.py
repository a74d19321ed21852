"""Helpers for the train/ tests: tiny configs and TensorBoard event readers."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents import DQNConfig
from train.common import StopFlag
from train.config import RunConfig

# Small enough that 600 env steps take well under a second on one CPU core, large enough that
# learning starts, epsilon decays, the target net is updated and two evaluations happen.
TINY_RUN = dict(
    env="CartPole-v1", num_envs=2, total_steps=600, eval_every=300, eval_episodes=2,
    log_every=100, progress=False, device="cpu",
)
TINY_DQN = dict(
    hidden=(16, 16), learning_starts=100, buffer_size=1000, batch_size=16, train_frequency=4,
    gradient_steps=1, target_update_interval=20, exploration_steps=300,
)


# The device parameter of a test that runs on both; the CUDA case is marked `gpu`.
CUDA = pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
])

RLPLAY = str(Path(sys.executable).with_name("rlplay"))
# Wide enough that tyro's help rarely wraps a help text, narrow enough for one column (from
# ~160 columns it lays the option groups out side by side).
WIDTH = "120"
ENV = {**os.environ, "COLUMNS": WIDTH}


def tiny_configs(runs_dir: Path, **overrides) -> tuple[RunConfig, DQNConfig]:
    """The tiny RunConfig and DQNConfig; `overrides` go to whichever dataclass has the field."""
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    run_kw = {**TINY_RUN, "runs_dir": str(runs_dir)}
    dqn_kw = dict(TINY_DQN)
    for key, value in overrides.items():
        (run_kw if key in run_fields else dqn_kw)[key] = value
    return RunConfig(**run_kw), DQNConfig(**dqn_kw)


def run_many(
    commands: dict[str, list[str]], cwd: Path, columns: str = WIDTH,
) -> dict[str, subprocess.CompletedProcess]:
    """Run the commands at once (each `rlplay` spends ~2 s importing) and wait for all of them."""
    env = {**os.environ, "COLUMNS": columns}
    procs = {
        name: subprocess.Popen(
            argv, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for name, argv in commands.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


class StopAfter(StopFlag):
    """Asks the loop to stop at its k-th check, as a SIGINT arriving then would."""

    def __init__(self, k: int):
        super().__init__()
        self.checks, self.k = 0, k

    @property
    def requested(self) -> bool:
        self.checks += 1
        if self.checks > self.k:
            self.signal = "SIGINT"
        return self.signal is not None


def event_files(run_dir: Path) -> list[Path]:
    """The run's event files, oldest first (ordered by their first event's wall time)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = list(Path(run_dir).glob("events.out.tfevents.*"))

    def first_wall_time(path: Path) -> float:
        return next(iter(EventFileLoader(str(path)).Load())).wall_time

    return sorted(files, key=first_wall_time)


def read_events(path: Path) -> list:
    """All Event protos of one event file, in write order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return list(EventFileLoader(str(path)).Load())


def scalar_steps(events: list, tag: str) -> list[int]:
    """Steps at which `tag` was written, in write order."""
    return [e.step for e in events for v in e.summary.value if v.tag == tag]


def scalar_values(events: list, tag: str) -> list[tuple[int, float]]:
    """(step, value) pairs of a scalar tag, in write order."""
    from tensorboard.util import tensor_util

    out = []
    for e in events:
        for v in e.summary.value:
            if v.tag == tag:
                value = (
                    v.simple_value if v.HasField("simple_value")
                    else float(tensor_util.make_ndarray(v.tensor))
                )
                out.append((e.step, value))
    return out


def accumulator(run_dir: Path):
    """TensorBoard's own reader over the whole run folder (applies purge_step like the UI)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea

