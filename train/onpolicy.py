"""The on-policy training loop (PPO, A2C, REINFORCE): rollout -> advantages -> update -> log."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import torch

from agents.buffers import RolloutBuffer, set_generator_state
from agents.pg import PGAgent, PGConfig, RewardScaler, Rollout, compute_gae
from nets import policy_sizes
from train.common import StopFlag, saved_sizes
from train.config import RunConfig
from train.distributed import Dist, rank_seed
from train.errors import UserError
from train.session import Session, TrainResult
from train.transfer import prepare


def build_pg(
    run: RunConfig, cfg: PGConfig, envs: gym.vector.VectorEnv, device, dist: Dist = Dist()
) -> PGAgent:
    """The actor-critic agent for these env spaces, or a clear error if it cannot handle them.

    Data-parallel, each rank samples with its own seed and averages gradients with the others.
    """
    try:
        sizes = policy_sizes(envs.single_observation_space, envs.single_action_space)
    except TypeError as e:
        raise UserError(f"{run.env}: {e}") from None
    check_minibatches(cfg, run.num_envs, dist.world_size)
    return PGAgent(
        cfg, **sizes, device=device, seed=rank_seed(run.seed, dist.rank),
        data_parallel=dist.data_parallel(),
    )


def check_minibatches(cfg: PGConfig, num_envs: int, processes: int = 1) -> None:
    """A clear error unless each process's rollout holds at least one step per minibatch."""
    per_process = num_envs // processes
    batch = per_process * cfg.num_steps
    if cfg.num_minibatches > batch:
        envs = (f"--num-envs {num_envs} over {processes} processes: {per_process} each"
                if processes > 1 else f"{num_envs} envs")
        raise UserError(
            f"--num-minibatches {cfg.num_minibatches} exceeds the {batch} steps of a rollout "
            f"({envs} x --num-steps {cfg.num_steps}); use at most {batch}"
        )


def restore_pg(
    agent: PGAgent, reward_scaler: RewardScaler | None, session: Session, ckpt: dict
) -> None:
    """Load a checkpoint into the agent and reward scaler: the shared state from its top level,
    this rank's RNG and return statistics from its own part (data-parallel, same world size).

    On another number of processes than the checkpoint's, the sampling RNG is reseeded and the
    running discounted returns restart with the envs (the return statistics carry over).
    """
    if not agent.load_state_dict(ckpt["agent"]):
        print("note: the checkpoint was written on another device type; sampling continues "
              "from a fresh RNG stream (resume is not exact)")
    mine = session.rank_resume
    if reward_scaler is not None:  # this rank's own statistics where the checkpoint has them
        reward_scaler.load_state_dict(
            (mine or ckpt)["reward_scaler"], returns=not session.world_changed
        )
    if mine is not None:
        set_generator_state(agent.generator, mine["generator"])
    elif session.world_changed:
        # The checkpoint's step, as the envs' reseed uses: the session's counters are loaded
        # only by session.begin(), after this.
        step = ckpt["counters"]["global_step"]
        agent.generator.manual_seed(rank_seed(session.run.seed + step, session.dist.rank))


def to_env_action(action_space: gym.Space, device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Actions as the env takes them: Gaussian actions clipped to the Box, others unchanged.

    We clip rather than squash with tanh: the stored (unclipped) action keeps its exact Gaussian
    log-probability, where tanh would need a change-of-variables correction; as SB3 and CleanRL.
    """
    if not isinstance(action_space, gym.spaces.Box):
        return lambda action: action
    low = torch.as_tensor(action_space.low, device=device)
    high = torch.as_tensor(action_space.high, device=device)
    return lambda action: torch.clamp(action, low, high)


def env_policy(agent: PGAgent, action_space: gym.Space, deterministic: bool = True):
    """The agent's (by default deterministic) policy, its actions clipped as the env takes them."""
    clip = to_env_action(action_space, agent.device)
    return lambda obs: clip(agent.act(obs, deterministic))


def train_pg(
    run: RunConfig, cfg: PGConfig, *, algo: str = "ppo", resume: dict | None = None,
    stop: StopFlag | None = None,
) -> TrainResult:
    """Train PPO/A2C/REINFORCE (as `cfg` says) for `run`; continue from `resume` if given."""
    session = Session(run, algo, cfg, resume=resume, stop=stop)
    # n: this process's envs (all of them, or its rank's slice of run.num_envs)
    envs, device, n, T = session.envs, session.device, session.num_envs, cfg.num_steps
    agent = build_pg(run, cfg, envs, device, session.dist)
    space = envs.single_action_space
    continuous = isinstance(space, gym.spaces.Box)
    obs_space = envs.single_observation_space
    rollout = RolloutBuffer(
        num_steps=T, num_envs=n, obs_shape=obs_space.shape,
        obs_dtype=torch.from_numpy(obs_space.sample()[None]).dtype,
        action_shape=space.shape if continuous else (),
        action_dtype=torch.float32 if continuous else torch.int64, device=device,
    )
    reward_scaler = RewardScaler(n, cfg.gamma, device) if cfg.norm_reward else None
    freezer = prepare(run, agent.net, agent.net_kwargs, envs, resume=resume)
    if resume is not None:
        restore_pg(agent, reward_scaler, session, resume)
    obs = session.begin()
    if reward_scaler is not None and session.episodes_cut:
        reward_scaler.restart_returns()  # the envs restarted: no episode continues
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    session.healthy = lambda: not nonfinite.item()  # sync
    scaler_state = lambda: reward_scaler.state_dict() if reward_scaler is not None else None
    session.algo_state = lambda: {
        "net_kwargs": agent.net_kwargs, "agent": agent.state_dict(),
        "reward_scaler": scaler_state(),
    }
    session.rank_state = lambda: {  # data-parallel: what differs between ranks
        "generator": agent.generator.get_state(), "reward_scaler": scaler_state(),
    }
    eval_policy, clip = env_policy(agent, space), to_env_action(space, device)
    counters, logger = session.counters, session.logger

    with session.signals() as signals:
        try:
            while not session.should_stop(signals):
                freezer.update(counters["global_step"], logger.message)
                remaining = max(1.0 - counters["global_step"] / run.total_steps, 0.0)
                if cfg.anneal_lr:
                    agent.set_learning_rate(cfg.learning_rate * remaining)
                if cfg.anneal_clip and cfg.clip_coef is not None:
                    agent.clip_coef = cfg.clip_coef * remaining
                noise_TNA = agent.exploration_noise(T, n)
                for t in range(T):
                    action = agent.explore(obs, noise_TNA[t])
                    next_obs, reward, terminated, truncated, info = envs.step(clip(action))
                    rollout.store(
                        t, obs=obs, action=action, reward=reward,
                        terminated=terminated, truncated=truncated, final_obs=info["final_obs"],
                    )
                    obs = session.obs = next_obs
                    logger.stash_episodes(info)
                    counters["global_step"] += run.num_envs  # all ranks' env steps

                # log π(a|s) and V of every step's state, and V of its true next state (the
                # final obs where an episode ended: truncation bootstraps from it), batched after
                # the rollout (in chunks of CHUNK observations) rather than one forward per
                # step: the weights did not change in between. No concatenation of obs and final
                # obs: for pixels it would copy the rollout's frames.
                logprob_B, value_B = agent.score(rollout.obs.flatten(0, 1), rollout.action.flatten(0, 1))
                rollout.logprob.copy_(logprob_B.view(T, n))
                rollout.value.copy_(value_B.view(T, n))
                next_value_TN = agent.value(rollout.final_obs.flatten(0, 1)).view(T, n)
                done_TN = rollout.terminated | rollout.truncated
                reward_TN = rollout.reward  # what the agent learns from; logs keep the env's
                if reward_scaler is not None:
                    reward_TN = reward_scaler.scale(reward_TN, done_TN)
                advantage_TN = compute_gae(
                    reward_TN, rollout.value, next_value_TN, rollout.terminated, done_TN,
                    cfg.gamma, cfg.gae_lambda,
                )
                batch = Rollout(
                    rollout.obs.flatten(0, 1), rollout.action.flatten(0, 1),
                    rollout.logprob.flatten(), rollout.value.flatten(), advantage_TN.flatten(),
                    (advantage_TN + rollout.value).flatten(),
                )
                metrics = agent.update(batch)
                if not freezer.frozen:  # a frozen trunk keeps the input statistics it learnt with
                    agent.observe(batch.obs)
                nonfinite |= ~torch.isfinite(metrics["policy_loss"] + metrics["value_loss"])

                if session.log_due():
                    scalars = {f"losses/{k}": v for k, v in metrics.items()}
                    scalars["charts/learning_rate"] = agent.optimizer.param_groups[0]["lr"]
                    if agent.clip_coef is not None:
                        scalars["charts/clip_coef"] = agent.clip_coef
                    logger.log(counters["global_step"], scalars)
                if session.after_step(eval_policy):
                    break
        except BaseException:
            session.close()
            raise
    return session.finish()


def pg_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu") -> PGAgent:
    """Rebuild a policy-gradient agent from a checkpoint alone."""
    algo = ckpt["algo"]
    cfg = PGConfig(**{**ckpt["config"][algo], "hidden": tuple(ckpt["config"][algo]["hidden"])})
    sizes = saved_sizes(ckpt["net_kwargs"], "action_dim", "continuous")
    agent = PGAgent(cfg, **sizes, device=device, seed=ckpt["config"]["run"]["seed"])
    agent.load_state_dict(ckpt["agent"])
    return agent
