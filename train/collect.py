"""`rlplay collect`: record whole episodes of a saved, scripted or random policy as a dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Literal

import gymnasium as gym
import numpy as np
import torch
import tyro

from train.checkpoint import BEST, LATEST, load_checkpoint
from train.common import EPISODE_STEP_LIMIT, make_envs
from train.config import RunConfig, check_seed, resolve_device
from train.dataset import Dataset, check_new_path, from_episodes, save_dataset
from train.errors import UserError
from train.presets import task_of

Policy = Callable[[torch.Tensor], torch.Tensor]

# Hand-written experts for classic control, as batched tensor functions of the observation.
# Measured on 20 seeded episodes each (README): CartPole 500 ± 0, MountainCar −120 ± 3,
# Acrobot −78 ± 14.
SCRIPTED: dict[str, Policy] = {
    # Push towards where the pole is falling: its angle plus a look-ahead of its angular velocity.
    "CartPole-v1": lambda obs: (obs[:, 2] + 0.5 * obs[:, 3] > 0).long(),
    # Push along the velocity: pumps energy until the car swings up to the flag.
    "MountainCar-v0": lambda obs: torch.where(obs[:, 1] >= 0, 2, 0),
    # Torque along the second joint's angular velocity: pumps energy into the swing.
    "Acrobot-v1": lambda obs: torch.where(obs[:, 5] > 0, 2, 0),
}


@dataclass
class CollectArgs:
    source: Annotated[str, tyro.conf.Positional]
    """whose actions: a run folder or checkpoint (runs/<run>), `scripted` or `random`"""
    out: str
    """the dataset folder to write (must not exist yet)"""
    episodes: int = 100
    """whole episodes to record"""
    env: str | None = None
    """env id; needed for scripted and random (a run's own env otherwise)"""
    epsilon: float = 0.0
    """with this probability take a uniformly random action instead of the policy's"""
    checkpoint: Literal["best", "latest"] = "best"
    """which checkpoint of a run folder"""
    num_envs: int = 8
    """episodes recorded in parallel"""
    seed: int = 0
    """env i is reset with seed + i; also seeds ε-noise and random actions"""
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    """where the policy runs"""
    max_steps: int = EPISODE_STEP_LIMIT
    """an episode that reaches this many steps without ending stops the recording (an env
    without a time limit, such as CliffWalking-v1, under a policy that never finishes)"""

    def __post_init__(self) -> None:
        check_seed(self.seed)


def collect_command(argv: list[str]) -> int:
    args = tyro.cli(CollectArgs, args=argv, prog="rlplay collect",
                    description="Record episodes of a policy into a dataset for `rlplay pretrain`.")
    check_new_path(args.out)  # before recording, not after
    data = collect(args)
    path = save_dataset(args.out, data)
    returns = data.episode_returns
    print(f"recorded {data.num_episodes} episodes, {data.num_steps} steps of {data.env_id} "
          f"({data.info['source']}, ε = {args.epsilon})")
    print(f"return: {returns.mean():.1f} ± {returns.std():.1f} (min {returns.min():.1f}, "
          f"max {returns.max():.1f})")
    print(f"dataset: {path}")
    # Random actions teach nothing to clone; they cover the state space a dynamics model needs.
    task = "dynamics" if args.source == "random" else "bc"
    print(f"pretrain: rlplay pretrain --data {path} --task {task}")
    return 0


def collect(args: CollectArgs) -> Dataset:
    """Play `args.episodes` whole episodes and return them (not yet written)."""
    if args.episodes < 1 or args.num_envs < 1 or args.max_steps < 1:
        raise UserError("--episodes, --num-envs and --max-steps must be at least 1")
    if not 0.0 <= args.epsilon <= 1.0:
        raise UserError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    device = resolve_device(args.device)
    env_id, make_policy, source = _source(args, device)
    envs = make_envs(RunConfig(env=env_id), device, min(args.num_envs, args.episodes))
    try:
        policy = make_policy(envs.single_action_space)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        explore = random_actions(envs.single_action_space, generator, device)
        if args.epsilon > 0:
            policy = _epsilon_noise(policy, explore, args.epsilon, generator)
        episodes = record(envs, policy, args.episodes, args.seed, args.max_steps)
    finally:
        envs.close()
    info = {"source": source, "epsilon": args.epsilon, "seed": args.seed}
    return from_episodes(
        env_id, envs.single_observation_space, envs.single_action_space, episodes, info
    )


def _source(args: CollectArgs, device) -> tuple[str, Callable[[gym.Space], Policy], str]:
    """(env id, a policy for the env's action space, a description of the source)."""
    if args.source in ("scripted", "random"):
        if args.env is None:
            raise UserError(f"collect {args.source} needs --env")
        if args.source == "random":
            generator = torch.Generator(device=device).manual_seed(args.seed + 1)
            return args.env, lambda space: random_actions(space, generator, device), "random"
        expert = SCRIPTED.get(task_of(args.env))
        if expert is None:
            raise UserError(f"no scripted policy for {args.env}; scripted: {', '.join(SCRIPTED)}")
        return args.env, lambda space: expert, "scripted"
    from train.play import POLICY_LOADERS, env_of  # play imports the loops; only a run needs them

    ckpt, file = load_checkpoint(args.source, prefer=BEST if args.checkpoint == "best" else LATEST)
    try:
        if ckpt["algo"] not in POLICY_LOADERS:
            raise UserError(f"{file}: cannot play algorithm '{ckpt['algo']}'")
        env_id = env_of(ckpt)
    except KeyError as e:
        raise UserError(f"{file} is incomplete or corrupt (no {e})") from None
    if args.env is not None and task_of(args.env) != task_of(env_id):
        raise UserError(f"{file} was trained on {env_id}, not {args.env}")
    return (args.env or env_id,
            lambda space: POLICY_LOADERS[ckpt["algo"]](ckpt, device, space), f"{file}")


def random_actions(space: gym.Space, generator: torch.Generator, device) -> Policy:
    """Uniform actions of `space` for a batch of observations, from `generator`."""
    if isinstance(space, gym.spaces.Discrete):
        return lambda obs: int(space.start) + torch.randint(
            int(space.n), (obs.shape[0],), device=device, generator=generator)
    if isinstance(space, gym.spaces.Box) and np.isfinite(space.low).all() and np.isfinite(space.high).all():
        low = torch.as_tensor(space.low, device=device)
        high = torch.as_tensor(space.high, device=device)
        return lambda obs: low + (high - low) * torch.rand(
            (obs.shape[0], *space.shape), device=device, generator=generator)
    raise UserError(f"cannot draw uniform actions from {space}")


def _epsilon_noise(policy: Policy, explore: Policy, epsilon: float, generator) -> Policy:
    def noisy(obs: torch.Tensor) -> torch.Tensor:
        action, random_action = policy(obs), explore(obs)
        pick = torch.rand(obs.shape[0], device=obs.device, generator=generator) < epsilon
        return torch.where(pick.view(-1, *[1] * (action.dim() - 1)), random_action.to(action.dtype), action)

    return noisy


@torch.no_grad()
def record(
    envs: gym.vector.VectorEnv, policy: Policy, episodes: int, seed: int,
    max_steps: int = EPISODE_STEP_LIMIT,
) -> list[dict]:
    """Whole episodes of `policy`, as per-episode arrays in Minari's layout; a clear error if one
    reaches `max_steps` steps without ending.

    Env i records episodes i, i + N, i + 2N, … (< `episodes`) and nothing after them, so the
    short episodes that finish first are not over-represented. Steps come to the host every step
    (`# sync`): collection is I/O, not a training loop.
    """
    n = envs.num_envs
    quota = [len(range(i, episodes, n)) for i in range(n)]
    done_episodes: list[list[dict]] = [[] for _ in range(n)]
    obs, _ = envs.reset(seed=seed)
    current = [_new_episode(o) for o in obs.cpu().numpy()]  # sync
    while any(len(done_episodes[i]) < quota[i] for i in range(n)):
        action = policy(obs)
        next_obs, reward, terminated, truncated, info = envs.step(action)
        step = [t.cpu().numpy() for t in (action, reward, terminated, truncated, info["final_obs"],
                                          next_obs)]  # sync
        for i, (a, r, te, tr, final, nxt) in enumerate(zip(*step)):
            if len(done_episodes[i]) >= quota[i]:
                continue
            ep = current[i]
            ep["actions"].append(a), ep["rewards"].append(r)
            ep["terminations"].append(te), ep["truncations"].append(tr)
            ep["observations"].append(final)  # the true next observation, also at the end
            if len(ep["actions"]) >= max_steps and not (te or tr):
                raise UserError(
                    f"an episode reached {max_steps:,} steps without ending (does the env have "
                    f"no time limit?); record a policy that finishes, or raise --max-steps"
                )
            if te or tr:
                done_episodes[i].append({k: np.stack(v) for k, v in ep.items()})
                current[i] = _new_episode(nxt)  # same-step autoreset: nxt starts the next one
        obs = next_obs
    # Episode k was env k mod N's (k // N)-th: the order a single env would have played them in.
    return [done_episodes[k % n][k // n] for k in range(episodes)]


def _new_episode(first_obs: np.ndarray) -> dict[str, list]:
    return {"observations": [first_obs], "actions": [], "rewards": [], "terminations": [],
            "truncations": []}
