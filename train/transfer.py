"""`--init-from`: pretrained weights into an agent's network; `--freeze trunk` keeps them fixed.

nanoGPT's `init_from`, made strict: the pretrained run must come from the same task and spaces
and hold the same network; every tensor it trained is loaded (and named), everything else stays
at initialisation (and is named too); any mismatch is a one-line error before a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import gymnasium as gym
from torch import nn

from train.checkpoint import BEST, load_checkpoint
from train.config import RunConfig
from train.dataset import check_matches, space_from_json
from train.errors import UserError

# The trunk of each network: what `--freeze trunk` holds fixed and `--init-parts trunk` loads.
TRUNKS = {"ActorCritic": "actor_trunk", "QNetwork": "trunk"}
# Settings of a network that decide what its tensors mean; the init log-std is only a start.
IGNORED_KWARGS = {"init_log_std"}


class Transfer(NamedTuple):
    source: Path  # the pretrained checkpoint file
    loaded: list[str]  # state-dict entries copied from it
    left: list[str]  # entries left at initialisation


def trunk_prefixes(net: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the trunk: its layers, the observation statistics it reads its
    input through, and with a shared trunk (`--shared-trunk`) its second name, the critic's."""
    shared = ("critic_trunk.",) if getattr(net, "shared", False) else ()
    return (TRUNKS[type(net).__name__] + ".", "obs_norm.", *shared)


def load_pretrained(path: str | Path) -> tuple[dict, Path]:
    """A `rlplay pretrain` checkpoint (its run folder or file), or a clear error."""
    ckpt, file = load_checkpoint(path, prefer=BEST)
    if ckpt.get("algo") != "pretrain":
        raise UserError(
            f"{file} is a {ckpt.get('algo')} training checkpoint; --init-from takes a run of "
            "`rlplay pretrain`"
        )
    return ckpt, file


def init_from(
    path: str | Path, net: nn.Module, net_kwargs: dict, *, env_id: str,
    observation_space: gym.Space, action_space: gym.Space, copies: tuple[nn.Module, ...] = (),
    parts: str = "all",
) -> Transfer:
    """Load the pretrained tensors into `net` (and `copies`, e.g. DQN's target net): all that
    the pretraining fitted, or with `parts="trunk"` only the trunk's (the head stays at init)."""
    ckpt, file = load_pretrained(path)
    try:
        return _load_into(ckpt, file, net, net_kwargs, env_id, observation_space, action_space,
                          copies, parts)
    except KeyError as e:
        raise UserError(f"{file} is incomplete or corrupt (no {e}); pretrain again") from None


def _load_into(ckpt, file, net, net_kwargs, env_id, observation_space, action_space, copies,
               parts) -> Transfer:
    ds = ckpt["dataset"]
    check_matches(
        f"{file} (pretrained on {ds['path']})", ds["env_id"],
        space_from_json(ds["observation_space"]), space_from_json(ds["action_space"]),
        env_id, observation_space, action_space,
    )
    theirs_class, ours_class = ckpt["net_class"], type(net).__name__
    if theirs_class != ours_class:
        raise UserError(
            f"{file} was pretrained with --net {ckpt['net']} ({theirs_class}); this agent's "
            f"network is a {ours_class}: pretrain with this algorithm as --net"
        )
    own, theirs = net.state_dict(), ckpt["state"]
    differ = [
        f"{k} {v!r} there, {net_kwargs[k]!r} here" for k, v in ckpt["net_kwargs"].items()
        if k in net_kwargs and k not in IGNORED_KWARGS and v != net_kwargs[k]
    ]
    for name in ckpt["trained"]:
        if name not in own:
            differ.append(f"{name} has no counterpart here")
        elif own[name].shape != theirs[name].shape:
            differ.append(f"{name} is {tuple(theirs[name].shape)} there, "
                          f"{tuple(own[name].shape)} here")
    if differ:
        raise UserError(
            f"cannot init from {file}: its network does not match the agent's ("
            + "; ".join(differ) + "); pretrain and train with the same network settings"
        )
    loaded = list(ckpt["trained"])
    if parts == "trunk":
        loaded = [name for name in loaded if name.startswith(trunk_prefixes(net))]
    net.load_state_dict({name: theirs[name] for name in loaded}, strict=False)
    for other in copies:
        other.load_state_dict(net.state_dict())
    return Transfer(file, loaded, [name for name in own if name not in loaded])


def describe(transfer: Transfer, net: nn.Module, report: Callable[[str], None]) -> None:
    """Name every tensor: loaded from the pretrained run, or left at initialisation."""
    state = net.state_dict()
    report(f"init from {transfer.source}: {len(transfer.loaded)} tensors loaded, "
           f"{len(transfer.left)} left at initialisation")
    for label, names in (("loaded ", transfer.loaded), ("at init", transfer.left)):
        for name in names:
            report(f"  {label} {name} {tuple(state[name].shape)}")


class Freezer:
    """`--freeze trunk`: the trunk gets no gradients, so the optimizer never touches it (its
    weights stay bit-identical) until `--unfreeze-after` env steps, when it learns again."""

    def __init__(self, net: nn.Module, run: RunConfig, report: Callable[[str], None] = print):
        self.name = TRUNKS[type(net).__name__]
        self.module = getattr(net, self.name) if run.freeze == "trunk" else None
        self.until = run.unfreeze_after
        self.frozen = self.module is not None
        if self.frozen:
            self.module.requires_grad_(False)
            until = f" until step {self.until}" if self.until is not None else ""
            report(f"frozen: {self.name} ({len(list(self.module.parameters()))} tensors){until}")

    def update(self, global_step: int, report: Callable[[str], None]) -> None:
        """Unfreeze once `global_step` reaches --unfreeze-after (call before each update)."""
        if self.frozen and self.until is not None and global_step >= self.until:
            self.module.requires_grad_(True)
            self.frozen = False
            report(f"step {global_step}: {self.name} unfrozen, it learns from here on")


def prepare(
    run: RunConfig, net: nn.Module, net_kwargs: dict, envs: gym.vector.VectorEnv, *,
    resume: dict | None, copies: tuple[nn.Module, ...] = (), report: Callable[[str], None] = print,
) -> Freezer:
    """What a loop does with --init-from/--freeze before it starts: load (not when resuming: the
    checkpoint holds the weights), name the tensors, freeze."""
    if run.init_from is not None and resume is None:
        transfer = init_from(
            run.init_from, net, net_kwargs, env_id=run.env,
            observation_space=envs.single_observation_space,
            action_space=envs.single_action_space, copies=copies, parts=run.init_parts,
        )
        describe(transfer, net, report)
    return Freezer(net, run, report)

