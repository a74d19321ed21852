"""Data-parallel training over processes with torch.distributed (issue 7).

`torchrun --nproc-per-node N -m train ppo …` starts N processes (ranks), and so does
`rlplay train ppo --nproc N …` through torch's own launcher (torch.distributed.run). Each rank
steps its slice of the envs with its own seeds; the agent averages gradients over the ranks each
minibatch (agents.pg.DataParallel), so every rank holds the same parameters. Rank 0 alone writes
TensorBoard, checkpoints and the console. Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist

from agents.pg import DataParallel
from train.config import resolve_device
from train.errors import UserError

_CPU_GROUP: Any = None  # gloo group for Python objects and flags (the default group under nccl)


def launched() -> bool:
    """True inside a rank that torchrun (or `--nproc`) started with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def env_slice(num_envs: int, world_size: int) -> int:
    """How many of the run's `num_envs` envs each of `world_size` ranks steps."""
    if num_envs % world_size:
        raise UserError(f"--num-envs {num_envs} must be a multiple of the {world_size} processes")
    return num_envs // world_size


def peer_lost(error: BaseException) -> bool:
    """Whether a collective failed because another rank's process went away (gloo's TCP
    transport says so in its message; a rank that crashes closes its sockets)."""
    lost = ("Connection closed by peer", "Connection reset by peer")
    return any(text in str(error) for text in lost)


def rank_seed(seed: int, rank: int) -> int:
    """Rank r's seed for its sampling RNG: rank 0 keeps the run's seed, as a 1-process run."""
    return seed + 100_003 * rank


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; the defaults are a single process (no collectives)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """The device for `--device name`: under nccl, the GPU of this node-local rank."""
        device = resolve_device(name)
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return device

    def data_parallel(self) -> DataParallel | None:
        """The agent's hook: sums over ranks with the process group's backend."""
        if not self.enabled:
            return None

        def all_reduce(t: torch.Tensor) -> torch.Tensor:
            dist.all_reduce(t)
            return t

        return DataParallel(self.world_size, all_reduce)

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (plain Python/tensor data), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, _pack(obj), group=_CPU_GROUP)
        return [_unpack(b) for b in out]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` in rank order on rank 0; None on the others."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(_pack(obj), out, dst=0, group=_CPU_GROUP)
        return None if out is None else [_unpack(b) for b in out]

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [_pack(obj)]
        dist.broadcast_object_list(box, src=0, group=_CPU_GROUP)
        return _unpack(box[0])

    def agree_stop(self, reason: str | None) -> str | None:
        """Stop everywhere if any rank must (its signal, say): the ranks leave the loop together,
        so that no rank waits in a collective for one that has left."""
        if not self.enabled:
            return reason
        code = torch.tensor([_reason_code(reason)])
        dist.all_reduce(code, op=dist.ReduceOp.MAX, group=_CPU_GROUP)
        agreed = int(code.item())
        if agreed == 0:
            return None
        return reason or _code_reason(agreed)


def _pack(obj: Any) -> bytes:
    """`obj` as torch.save bytes: the object collectives then carry plain bytes (tensors inside
    Python objects do not survive their pickling in torch 2.13), read back with weights_only."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _unpack(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=True)


def _reason_code(reason: str | None) -> int:
    if reason is None:
        return 0
    return signal.Signals[reason].value if reason in signal.Signals.__members__ else 1


def _code_reason(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return "stop"


def current() -> Dist:
    """The job this process belongs to (a single process unless a process group is up)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(
        rank=dist.get_rank(), world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=dist.get_backend(),
    )


@contextmanager
def process_group(device: str, timeout_s: float) -> Iterator[Dist]:
    """Join the process group torchrun describes in the environment, for the block.

    Outside torchrun (WORLD_SIZE unset or 1) this is a single process and does nothing. Every
    collective fails after `timeout_s` rather than wait forever for a rank that died.
    """
    global _CPU_GROUP
    if not launched():
        yield Dist()
        return
    cuda = resolve_device(device).type == "cuda"
    timeout = timedelta(seconds=timeout_s)
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    try:
        _CPU_GROUP = dist.new_group(backend="gloo", timeout=timeout) if cuda else None
        yield current()
        # A normal exit waits for every rank: a rank that tore gloo down while its peer still
        # talked to it aborted that peer ('terminate called without an active exception').
        # On the gloo group (the CPU one beside NCCL): it notices a dead peer at once.
        dist.barrier(group=_CPU_GROUP)
    finally:
        _CPU_GROUP = None
        dist.destroy_process_group()


def launch(argv: list[str], nproc: int) -> int:
    """`python -m train ARGV` on `nproc` local ranks, through torch's launcher (torchrun).

    torchrun watches the ranks: when one fails it stops the others and reports the first
    failure, which we turn into one line and that rank's exit code. Ctrl-C or SIGTERM reach the
    launcher, which passes them on: the ranks stop together and save as one process would, and
    the launcher exits with 128 + the signal's number.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its warning
    args = parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "train"])
    args.training_script_args = argv  # set after parsing: torchrun's parser would read our flags
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        raise RankFailed(
            f"rank {rank} {how}; the other ranks were stopped (see its output above)",
            exit_code=code if code > 0 else 1,
        ) from None
    except SignalException as e:
        print(f"rlplay: {signal.Signals(e.sigval).name}: the ranks were asked to stop and save",
              file=sys.stderr)
        return 128 + e.sigval
    return 0


class RankFailed(UserError):
    """A rank of a `--nproc` job failed; exits with that rank's code (2 for bad input)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
