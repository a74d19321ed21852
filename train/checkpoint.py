"""One self-describing checkpoint file per save: atomic writes, pickle-free loads."""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from train.errors import UserError

FORMAT = "rlplay-checkpoint"
VERSION = 1
LATEST, BEST = "latest.pt", "best.pt"


@contextlib.contextmanager
def atomic_write(path: Path, *, folder: bool = False) -> Iterator[Path]:
    """Yield a temp file (or folder) beside `path` to fill; renamed onto `path` if the block
    succeeds, removed if it fails, so `path` is never left half-written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder {path.parent}: {e.strerror}") from None
    if folder:
        tmp, mode = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)), 0o777
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp, mode = Path(name), 0o666
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, mode & ~umask)  # mkstemp's/mkdtemp's 0600/0700 would ignore the user's umask
        yield tmp
        if folder and path.is_dir():
            path.rmdir()  # must be empty: os.replace cannot replace a folder
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # the rename itself survives a power cut
    except BaseException:
        if folder:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries to disk (POSIX; Windows cannot open a folder, and needs not)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write `payload` to `path` atomically: a temp file in the same folder, fsync, os.replace.

    A crash mid-write leaves the previous checkpoint intact, never a half-written file.
    """
    with atomic_write(Path(path)) as tmp, open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
        f.flush()
        os.fsync(f.fileno())


def find_checkpoint(path: str | Path, prefer: str = LATEST) -> Path:
    """A checkpoint file itself, or the `prefer`red one (else the other, and it says so) inside
    a run folder."""
    path = Path(path)
    if path.is_dir():
        for name in (prefer, BEST if prefer == LATEST else LATEST):
            if (path / name).is_file():
                if name != prefer:
                    print(f"note: {path / prefer} does not exist; using {path / name}")
                return path / name
        raise UserError(f"no checkpoint in {path} (expected {LATEST} or {BEST})")
    if not path.exists():
        raise UserError(f"checkpoint or run folder {path} does not exist")
    return path


def load_checkpoint(path: str | Path, prefer: str = LATEST) -> tuple[dict, Path]:
    """Load a checkpoint with `weights_only=True` (no code can run); clear errors otherwise."""
    file = find_checkpoint(path, prefer)
    # torch.save writes a zip archive: anything else is not a checkpoint at all, and a zip whose
    # central directory (at the end) is missing was cut short.
    with open(file, "rb") as f:
        head = f.read(4)
    if len(head) < 4:
        raise UserError(_corrupt(file, f"{file.stat().st_size} bytes"))
    if head != b"PK\x03\x04":
        raise UserError(f"{file} is not an rlplay checkpoint (not a file written by torch.save)")
    if not zipfile.is_zipfile(file):
        raise UserError(_corrupt(file, "the archive is incomplete"))
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise UserError(_corrupt(file, "its data does not unpickle")) from None
        lines = [ln.strip() for ln in str(e).splitlines()]
        reason = next((ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln), lines[0])
        raise UserError(
            f"{file} holds objects other than tensors and plain data; refusing to load it "
            f"(a pickle can run code): {reason}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(_corrupt(file, type(e).__name__)) from None
    check_format(file, ckpt, FORMAT, VERSION, "checkpoint")
    return ckpt, file


def check_format(path: Path, header: object, fmt: str, version: int, kind: str) -> None:
    """One-line errors unless `header` (a dict) names format `fmt` at `version`."""
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise UserError(f"{path} is not an rlplay {kind}")
    if header.get("version") != version:
        raise UserError(
            f"{path} is an rlplay {kind} of version {header.get('version')}; "
            f"this rlplay reads version {version}"
        )


def _corrupt(file: Path, why: str) -> str:
    return (
        f"{file} is truncated or corrupt and cannot be read ({why}); "
        "use another checkpoint of the run (best.pt or latest.pt)"
    )


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
