"""TensorBoard scalars, episode statistics and the console progress bar of one run."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm


class RunLogger:
    """Everything a run shows: `global_step` is the only x-axis.

    Episode statistics arrive as device tensors every step and are only stashed; they are read
    (one host sync) when `log` is called every `log_every` steps.

    Data-parallel, every rank has one: `gather` brings all ranks' episodes to rank 0 at each
    `log`, and only rank 0's (`main`) writes events and shows the console.
    """

    def __init__(
        self, run_dir: Path, *, total_steps: int, start_step: int, progress: bool = True,
        main: bool = True, gather: Callable[[tuple], list[tuple] | None] = lambda x: [x],
    ):
        # purge_step drops events a killed run wrote after its last checkpoint, so a resumed
        # curve continues from the checkpoint's step instead of doubling back. Events at the
        # checkpoint's own step were written before it and stay.
        self.main, self.gather = main, gather
        self.writer = (
            SummaryWriter(str(run_dir), purge_step=start_step + 1 if start_step else None)
            if main else None
        )
        self.bar = tqdm(
            total=total_steps, initial=start_step, unit="step", unit_scale=True,
            dynamic_ncols=True, mininterval=0.5, disable=not (progress and main), file=sys.stderr,
        )
        self._episodes: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._last_step, self._last_time = start_step, time.perf_counter()
        self.last_return: float | None = None
        self.last_eval: float | None = None

    def write_config(self, config: dict, run_dir: Path) -> None:
        if not self.main:
            return
        write_config(self.writer, config, run_dir)

    def stash_episodes(self, info: dict) -> None:
        """Keep the episode stats of envs that finished this step (no sync)."""
        if "episode" in info:
            ep = info["episode"]
            self._episodes.append((info["_episode"], ep["r"], ep["l"]))

    def log(self, global_step: int, scalars: dict[str, torch.Tensor | float]) -> None:
        """Write episode stats and scalars at `global_step`; the host sync point of the loop."""
        ranks = self.gather(self._drain_episodes())  # data-parallel: every rank's, on rank 0
        if not self.main:
            return
        returns = [r for rank_returns, _ in ranks for r in rank_returns]
        lengths = [n for _, rank_lengths in ranks for n in rank_lengths]
        for r, n in zip(returns, lengths):
            self.writer.add_scalar("charts/episodic_return", r, global_step)
            self.writer.add_scalar("charts/episodic_length", n, global_step)
        if returns:
            self.last_return = float(torch.tensor(returns, dtype=torch.float64).mean())
        now = time.perf_counter()
        sps = (global_step - self._last_step) / max(now - self._last_time, 1e-9)
        self.writer.add_scalar("charts/sps", sps, global_step)
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, float(value), global_step)  # sync
        self.bar.update(global_step - self._last_step)
        self._last_step, self._last_time = global_step, now
        self._set_postfix()

    def _drain_episodes(self) -> tuple[list[float], list[int]]:
        """Returns and lengths of the episodes stashed since the last call."""
        if not self._episodes:
            return [], []
        mask = torch.cat([m for m, _, _ in self._episodes]).cpu()  # sync
        returns = torch.cat([r for _, r, _ in self._episodes]).cpu()[mask]
        lengths = torch.cat([n for _, _, n in self._episodes]).cpu()[mask]
        self._episodes.clear()
        return returns.tolist(), lengths.tolist()

    def log_eval(self, global_step: int, returns: torch.Tensor) -> None:
        self.last_eval = float(returns.mean())
        self.writer.add_scalar("eval/episodic_return", self.last_eval, global_step)
        self._set_postfix()

    def log_video(self, tag: str, frames: np.ndarray, global_step: int, fps: float) -> None:
        """Frames (T, H, W, 3) uint8 as an animated GIF in TensorBoard's Images tab.

        `SummaryWriter.add_video` needs moviepy to encode; imageio (already ours for replay)
        writes the GIF and the image summary carries it, as add_video's own does.
        """
        import imageio.v2 as imageio
        from tensorboard.compat.proto.summary_pb2 import Summary

        buffer = io.BytesIO()
        imageio.mimsave(buffer, list(frames), format="GIF", duration=1000 / fps, loop=0)
        t, h, w, c = frames.shape
        image = Summary.Image(
            height=h, width=w, colorspace=c, encoded_image_string=buffer.getvalue()
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self.writer._get_file_writer().add_summary(summary, global_step)

    def message(self, text: str) -> None:
        """A line on the console that does not break the progress bar (rank 0's only)."""
        if self.main:
            self.bar.write(text, file=sys.stderr)

    def _set_postfix(self) -> None:
        fields = {}
        if self.last_return is not None:
            fields["return"] = f"{self.last_return:.1f}"
        if self.last_eval is not None:
            fields["eval"] = f"{self.last_eval:.1f}"
        self.bar.set_postfix(fields, refresh=False)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def write_config(writer: SummaryWriter, config: dict, run_dir: Path) -> None:
    """The resolved config to run_dir/config.json and, as a table, to TensorBoard."""
    text = json.dumps(config, indent=2, default=str)
    (run_dir / "config.json").write_text(text + "\n")
    rows = "\n".join(f"|{k}|{v}|" for k, v in _flatten(config).items())
    writer.add_text("config", "|param|value|\n|-|-|\n" + rows, 0)


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
