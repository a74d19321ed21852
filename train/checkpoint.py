"""One self-describing checkpoint file per save: atomic writes, pickle-free loads."""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from train.errors import UserError

FORMAT = "rlplay-checkpoint"
VERSION = 1
LATEST, BEST = "latest.pt", "best.pt"


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write `payload` to `path` atomically: a temp file in the same folder, fsync, os.replace.

    A crash mid-write leaves the previous checkpoint intact, never a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_checkpoint(path: str | Path, prefer: str = LATEST) -> Path:
    """A checkpoint file itself, or the `prefer`red one (else the other) inside a run folder."""
    path = Path(path)
    if path.is_dir():
        for name in (prefer, BEST if prefer == LATEST else LATEST):
            if (path / name).is_file():
                return path / name
        raise UserError(f"no checkpoint in {path} (expected {LATEST} or {BEST})")
    if not path.exists():
        raise UserError(f"checkpoint or run folder {path} does not exist")
    return path


def load_checkpoint(path: str | Path, prefer: str = LATEST) -> tuple[dict, Path]:
    """Load a checkpoint with `weights_only=True` (no code can run); clear errors otherwise."""
    file = find_checkpoint(path, prefer)
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{file} holds objects other than tensors and plain data; refusing to load it "
            f"(a pickle can run code): {first}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(
            f"{file} is truncated or corrupt and cannot be read ({type(e).__name__}); "
            f"use another checkpoint (best.pt or latest.pt) of the run"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{file} is not an rlplay checkpoint")
    if ckpt.get("version") != VERSION:
        raise UserError(
            f"{file} is an rlplay checkpoint of version {ckpt.get('version')}; "
            f"this rlplay reads version {VERSION}"
        )
    return ckpt, file


def rng_state() -> dict:
    """The global RNGs' states (torch CPU and CUDA, numpy, python) as plain data."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    random.setstate(state["python"])
