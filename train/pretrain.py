"""`rlplay pretrain`: supervised training of an agent's own network on a recorded dataset.

The supervised workflow, top to bottom: dataset -> tensors -> train/validation split by episode
-> the agent's network (as `rlplay train ALGO --env ENV` would build it) -> loss and optimizer ->
mini-batch epochs with early stopping on the validation loss -> report -> checkpoint. Tasks:

- `bc`, behaviour cloning: cross-entropy of the policy's logits against the recorded actions
  (discrete; for DQN the Q-values serve as logits), or MSE of the Gaussian mean (continuous).
- `dynamics`, self-supervised: predict the change of observation from (obs, action) through the
  trunk and a small head; needs no expert, only transitions. Only the trunk transfers.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import tyro
from torch import nn
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents import DQNAgent, DQNConfig
from agents.pg import PGAgent, PGConfig
from nets import ActorCritic, DynamicsHead, QNetwork, encode_obs, policy_sizes, space_sizes
from train.checkpoint import BEST, save_checkpoint
from train.common import make_envs, make_run_dir, seed_everything
from train.collect import random_actions
from train.config import RunConfig, check_run_name, check_seed, default_is, resolve_device
from train.dataset import Dataset, check_matches, load_dataset, space_to_json
from train.errors import TrainingDiverged, UserError
from train.evaluate import eval_seed, evaluate
from train.logger import write_config
from train.onpolicy import to_env_action
from train.presets import apply_preset
from train.transfer import trunk_prefixes

NET_CONFIGS = {"dqn": DQNConfig, "ppo": PGConfig, "a2c": PGConfig, "reinforce": PGConfig}


@dataclass
class PretrainConfig:
    data: str
    """dataset folder written by `rlplay collect`"""
    task: Literal["bc", "dynamics"] = "bc"
    """bc: clone the recorded actions; dynamics: predict the next observation (no expert needed)"""
    net: Literal["dqn", "ppo", "a2c", "reinforce"] = "ppo"
    """the agent whose network to pretrain, built as `rlplay train NET --env <dataset env>` builds it"""
    hidden: Annotated[tuple[int, ...] | None, default_is("the agent's preset for the env")] = None
    """hidden layer sizes; the printed transfer command trains with the same network settings"""
    activation: Annotated[Literal["tanh", "relu"] | None, default_is("the preset's")] = None
    """ppo/a2c/reinforce: hidden-layer activation"""
    shared_trunk: Annotated[bool | None, default_is("the preset's")] = None
    """ppo/a2c/reinforce: actor and critic share the trunk (`--shared-trunk True`)"""
    norm_obs: Annotated[bool | None, default_is("the preset's")] = None
    """ppo/a2c/reinforce: normalise observations by running statistics (`--norm-obs True`)"""
    dueling: Annotated[bool | None, default_is("the preset's")] = None
    """dqn: dueling head (`--dueling False` for none)"""
    max_epochs: int = 200
    """passes over the training split at most"""
    patience: int = 20
    """stop after this many epochs without a lower validation loss; keep the best weights"""
    batch_size: int = 64
    """transitions per gradient step (small: a handful of episodes is only a few batches)"""
    learning_rate: float = 1e-3
    """Adam learning rate"""
    val_fraction: float = 0.2
    """share of the episodes held out for validation (whole episodes, at least one for each split:
    no leakage, so a dataset needs 2 episodes or more)"""
    eval_episodes: int = 10
    """bc: episodes the cloned policy plays in the env for the report"""
    seed: int = 1
    """seeds the net, the split, the mini-batches and the report's episodes"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """where the net and the data live"""
    run_name: str | None = None
    """run folder name under runs_dir; default {env}__pretrain-{task}__{seed}__{time}"""
    runs_dir: str = "runs"
    """where run folders are created"""
    threads: int = 1
    """torch CPU threads (0 keeps torch's default)"""
    progress: bool = True
    """show a progress bar"""

    def __post_init__(self) -> None:
        for name in ("max_epochs", "patience", "batch_size", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.hidden is not None and (not self.hidden or min(self.hidden) <= 0):
            raise ValueError(f"hidden must be one or more positive sizes, got {self.hidden}")
        check_seed(self.seed)
        check_run_name(self.run_name)

    @property
    def net_settings(self) -> dict:
        """The network fields set on the command line (None: the agent's preset decides)."""
        return {name: getattr(self, name) for name in NET_FIELDS if getattr(self, name) is not None}


NET_FIELDS = ("hidden", "activation", "shared_trunk", "norm_obs", "dueling")


def train_flags(settings: dict) -> list[str]:
    """`rlplay train`'s flags for network settings, so that its net takes the pretrained
    weights: `--hidden 32 32`, `--activation relu`, `--dueling` / `--no-dueling`."""
    flags = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            values = value if isinstance(value, (tuple, list)) else [value]
            flags.append(" ".join([flag, *map(str, values)]))
    return flags


class PretrainResult(NamedTuple):
    run_dir: Path
    env_id: str  # the dataset's env
    epochs: int  # epochs run
    best_epoch: int  # the epoch whose weights were kept
    val_loss: float
    val_accuracy: float | None  # bc on discrete actions
    cloned_return: tuple[float, float] | None  # bc: (mean, std) of the cloned policy's returns
    random_return: tuple[float, float] | None  # bc: the same for uniformly random actions
    trained: list[str]  # the tensors pretraining fitted: what --init-from will load


class Split(NamedTuple):
    obs: torch.Tensor  # (B, *obs_shape)
    action: torch.Tensor  # (B,) or (B, A)
    next_obs: torch.Tensor  # (B, *obs_shape)


def build_net(
    net: str, env_id: str, observation_space: gym.Space, action_space: gym.Space, *,
    device: torch.device, **settings,
) -> tuple[nn.Module, dict]:
    """The network (and its constructor's kwargs) that `rlplay train NET --env ENV` builds, with
    `settings` (hidden, activation, ...; None: the preset's) as train's flags would set them."""
    (_, cfg), _ = apply_preset(net, env_id, RunConfig(env=env_id), NET_CONFIGS[net]())
    settings = {k: v for k, v in settings.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(cfg)}
    foreign = [k for k in settings if k not in fields]
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise UserError(f"--net {net} has no {flags}: its network has no such setting")
    if "hidden" in settings:
        settings["hidden"] = tuple(settings["hidden"])
    cfg = dataclasses.replace(cfg, **settings)
    if net == "dqn" and not isinstance(action_space, gym.spaces.Discrete):
        raise UserError(f"--net dqn needs discrete actions; {env_id} has {action_space}")
    try:  # the sizes functions are the space checks: Discrete from 0, or a 1-D Box
        sizes = (space_sizes if net == "dqn" else policy_sizes)(observation_space, action_space)
    except TypeError as e:
        raise UserError(f"{env_id}: {e}") from None
    if net == "dqn":
        agent = DQNAgent(cfg, **sizes, device=device)
        return agent.q_net, agent.net_kwargs
    agent = PGAgent(cfg, **sizes, device=device)
    return agent.net, agent.net_kwargs


def pretrained_net(ckpt: dict, device) -> nn.Module:
    """The network of a `rlplay pretrain` checkpoint, weights loaded, for playing its policy."""
    try:
        if ckpt["task"] != "bc":
            raise UserError(f"a {ckpt['task']} pretraining has no policy to play (only bc has)")
        kwargs = {**ckpt["net_kwargs"], "hidden": tuple(ckpt["net_kwargs"]["hidden"])}
        net = (QNetwork if ckpt["net_class"] == "QNetwork" else ActorCritic)(**kwargs).to(device)
        state = ckpt["state"]
    except KeyError as e:
        raise UserError(f"the pretrained checkpoint is incomplete or corrupt (no {e})") from None
    net.load_state_dict(state)
    return net.eval()


def trained_names(net: nn.Module, task: str) -> list[str]:
    """The state-dict entries a task fits: the trunk (and its input statistics), plus the action
    head for bc. The critic, the value head, the dueling value stream stay at initialisation
    (a softmax over Q-values is blind to V(s), so BC cannot teach it)."""
    heads = ("policy_head.",) if isinstance(net, ActorCritic) else ("head.", "advantage.")
    prefixes = trunk_prefixes(net) + (heads if task == "bc" else ())
    return [name for name in net.state_dict() if name.startswith(prefixes)]


def policy_output(net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """Logits (or Gaussian means) (B, A): the actor's, or a Q-network's Q-values."""
    return net.policy_params(obs) if isinstance(net, ActorCritic) else net(obs)


def greedy_policy(net: nn.Module, action_space: gym.Space):
    """The cloned policy as the env takes it: argmax, or the Gaussian mean clipped to the Box."""
    if isinstance(action_space, gym.spaces.Discrete):
        return lambda obs: policy_output(net, obs).argmax(-1)
    clip = to_env_action(action_space, next(net.parameters()).device)
    return lambda obs: clip(policy_output(net, obs))


def split_episodes(data: Dataset, val_fraction: float, seed: int, device) -> tuple[Split, Split]:
    """Whole episodes to train or validation, at least one each, so no episode is in both (steps
    of one episode are correlated: a random split of them would leak)."""
    if data.num_episodes < 2:
        raise UserError(
            f"the dataset holds {data.num_episodes} episode; pretraining holds whole episodes out "
            "for validation, so it needs 2 or more (`rlplay collect … --episodes N`)"
        )
    rng = np.random.default_rng(seed)
    n_val = min(max(1, round(val_fraction * data.num_episodes)), data.num_episodes - 1)
    is_val = np.isin(data.episode_index, rng.permutation(data.num_episodes)[:n_val])
    obs, action, next_obs = data.obs, data.actions, data.next_obs

    def take(mask):
        return Split(*(torch.as_tensor(a[mask], device=device) for a in (obs, action, next_obs)))

    return take(~is_val), take(is_val)


def pretrain(cfg: PretrainConfig, log=print) -> PretrainResult:
    """Train, report and save; see the module docstring."""
    device = resolve_device(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    data = load_dataset(cfg.data)
    obs_space, action_space = data.observation_space, data.action_space
    net, net_kwargs = build_net(cfg.net, data.env_id, obs_space, action_space, device=device,
                                **cfg.net_settings)
    train, val = split_episodes(data, cfg.val_fraction, cfg.seed, device)
    run_dir = make_run_dir(
        RunConfig(env=data.env_id, seed=cfg.seed, run_name=cfg.run_name, runs_dir=cfg.runs_dir),
        f"pretrain-{cfg.task}", resumable=False,
    )
    env = make_envs(RunConfig(env=data.env_id), device, cfg.eval_episodes) if cfg.task == "bc" else None
    try:
        if env is not None:
            check_matches(f"dataset {cfg.data}", data.env_id, obs_space, action_space,
                          data.env_id, env.single_observation_space, env.single_action_space)
        log(f"dataset: {cfg.data}: {data.num_episodes} episodes, {data.num_steps} steps of "
            f"{data.env_id} ({data.info.get('source', '?')}); {len(train.obs)} train / "
            f"{len(val.obs)} validation steps")
        result = _fit(cfg, data, net, net_kwargs, train, val, env, run_dir, log)
    finally:
        if env is not None:
            env.close()
    return result


def _fit(cfg, data, net, net_kwargs, train: Split, val: Split, env, run_dir, log) -> PretrainResult:
    device = train.obs.device
    discrete = isinstance(data.action_space, gym.spaces.Discrete)
    obs_norm = getattr(net, "obs_norm", None)
    if obs_norm is not None:  # the agent normalises its inputs: fix the statistics to the data's
        obs_norm.update(train.obs.reshape(len(train.obs), -1).float())
    trained = trained_names(net, cfg.task)
    params = [p for name, p in net.named_parameters() if name in trained]
    head = None
    if cfg.task == "dynamics":
        head = DynamicsHead(
            feature_dim=net.embed(train.obs[:1]).shape[-1], action_dim=_action_dim(data.action_space),
            obs_dim=net_kwargs["obs_dim"], discrete_actions=discrete,
        ).to(device)
        params += list(head.parameters())
        delta = _delta(net_kwargs, train)
        # Targets in units of each dimension's spread, so no dimension dominates the loss.
        scale = (delta.mean(0), delta.std(0).clamp_min(1e-6))
    else:
        scale = None
    optimizer = torch.optim.Adam(params, lr=cfg.learning_rate)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    def loss_and_accuracy(split: Split) -> tuple[torch.Tensor, torch.Tensor | None]:
        if head is not None:
            pred = head(net.embed(split.obs), split.action)
            target = (_delta(net_kwargs, split) - scale[0]) / scale[1]
            return F.mse_loss(pred, target), None
        out = policy_output(net, split.obs)
        if discrete:
            return F.cross_entropy(out, split.action.long()), (out.argmax(-1) == split.action).float().mean()
        return F.mse_loss(out, split.action.float()), None

    writer = SummaryWriter(str(run_dir))
    write_config(writer, {"algo": "pretrain", "pretrain": dataclasses.asdict(cfg)}, run_dir)
    bar = tqdm(total=cfg.max_epochs, unit="epoch", disable=not cfg.progress, file=sys.stderr,
               dynamic_ncols=True)
    n = len(train.obs)
    best = (math.inf, None, 0, 0.0)  # (val loss, state, epoch, val accuracy)
    best_head, epoch = None, 0
    try:
        for epoch in range(1, cfg.max_epochs + 1):
            net.train()
            total = torch.zeros((), device=device)
            order = torch.randperm(n, device=device, generator=generator)
            for start in range(0, n, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                loss, _ = loss_and_accuracy(Split(*(t[idx] for t in train)))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(idx)
            with torch.no_grad():
                val_loss, val_acc = loss_and_accuracy(val)
            train_loss = float(total / n)  # sync: once per epoch
            if not math.isfinite(train_loss) or not math.isfinite(float(val_loss)):
                raise TrainingDiverged(
                    f"the pretraining loss became NaN or infinite in epoch {epoch}; nothing was "
                    f"saved; try a lower --learning-rate"
                )
            scalars = {"pretrain/train_loss": train_loss, "pretrain/val_loss": float(val_loss)}
            if val_acc is not None:
                scalars["pretrain/val_accuracy"] = float(val_acc)
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, epoch)
            bar.update(1)
            bar.set_postfix({k.split("/")[1]: f"{v:.4f}" for k, v in scalars.items()}, refresh=False)
            if float(val_loss) < best[0]:
                best = (float(val_loss), copy.deepcopy(net.state_dict()),
                        epoch, scalars.get("pretrain/val_accuracy"))
                best_head = copy.deepcopy(head.state_dict()) if head is not None else None
            elif epoch - best[2] >= cfg.patience:
                break
    finally:
        bar.close()
    val_loss, state, best_epoch, val_accuracy = best
    net.load_state_dict(state)
    log(f"stopped after epoch {epoch} ({'early stop' if epoch < cfg.max_epochs else 'max epochs'});"
        f" kept epoch {best_epoch}: validation loss {val_loss:.4f}"
        + (f", accuracy {val_accuracy:.3f}" if val_accuracy is not None else ""))
    cloned = random = None
    if env is not None:
        seed = eval_seed(cfg.seed, 0)
        net.eval()
        cloned = _mean_std(evaluate(greedy_policy(net, data.action_space), env, seed=seed))
        uniform = random_actions(data.action_space, torch.Generator(device).manual_seed(cfg.seed), device)
        random = _mean_std(evaluate(uniform, env, seed=seed))
        log(f"cloned policy: return {cloned[0]:.1f} ± {cloned[1]:.1f} over {cfg.eval_episodes} "
            f"episodes (random actions: {random[0]:.1f} ± {random[1]:.1f}; dataset: "
            f"{data.episode_returns.mean():.1f})")
        writer.add_scalar("pretrain/cloned_return", cloned[0], best_epoch)
    writer.close()
    report = {"epochs": epoch, "best_epoch": best_epoch, "val_loss": val_loss,
              "val_accuracy": val_accuracy, "cloned_return": cloned, "random_return": random}
    save_checkpoint(run_dir / BEST, {
        "algo": "pretrain", "task": cfg.task, "net": cfg.net, "net_class": type(net).__name__,
        "net_kwargs": net_kwargs, "state": net.state_dict(), "trained": trained,
        "dynamics_head": best_head, "config": {"pretrain": dataclasses.asdict(cfg)},
        "dataset": {
            "path": str(cfg.data), "env_id": data.env_id,
            "observation_space": space_to_json(data.observation_space),
            "action_space": space_to_json(data.action_space),
            "num_episodes": data.num_episodes, "num_steps": data.num_steps,
        },
        "report": report,
    })
    return PretrainResult(run_dir, data.env_id, epoch, best_epoch, val_loss, val_accuracy, cloned, random, trained)


def _action_dim(space: gym.Space) -> int:
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))


def _delta(net_kwargs: dict, split: Split) -> torch.Tensor:
    """next_obs − obs as the net encodes them (B, O): one-hot for discrete observations."""
    def enc(o):
        return encode_obs(o, net_kwargs["obs_dim"], net_kwargs["discrete_obs"])

    return enc(split.next_obs) - enc(split.obs)


def _mean_std(returns: torch.Tensor) -> tuple[float, float]:
    return float(returns.mean()), float(returns.std(unbiased=False))


def pretrain_command(argv: list[str]) -> int:
    cfg = tyro.cli(PretrainConfig, args=argv, prog="rlplay pretrain",
                   description="Supervised pretraining of an agent's network on a dataset.")
    result = pretrain(cfg)
    best = result.run_dir / BEST
    print(f"run folder:  {result.run_dir}")
    print(f"checkpoint:  {best}")
    print(f"tensorboard: tensorboard --logdir {cfg.runs_dir}")
    print(f"transfer:    rlplay train {cfg.net} --env {result.env_id} --init-from {result.run_dir}"
          + "".join(f" {flag}" for flag in train_flags(cfg.net_settings)))
    return 0
