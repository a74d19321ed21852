"""The off-policy training loop (DQN): seed -> envs -> agent -> loop -> log -> checkpoint."""

from __future__ import annotations

import gymnasium as gym
import torch

from agents import DQNAgent, DQNConfig, FrameReplayBuffer, ReplayBuffer, linear_schedule
from nets import space_sizes
from train.common import StopFlag, saved_sizes
from train.config import RunConfig
from train.errors import UserError
from train.session import EvalPoint, Session, TrainResult
from train.transfer import prepare

__all__ = ["EvalPoint", "TrainResult", "build_dqn", "dqn_from_checkpoint", "train_dqn"]

def build_dqn(run: RunConfig, cfg: DQNConfig, space: gym.vector.VectorEnv, device) -> DQNAgent:
    """The agent for these env spaces, or a clear error if DQN cannot handle them."""
    action_space = space.single_action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        flat_box = isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
        hint = "ppo, a2c and reinforce take a 1-D Box" if flat_box else "no rlplay agent takes it"
        raise UserError(f"DQN needs a discrete action space; {run.env} has {action_space}; {hint}")
    try:
        sizes = space_sizes(space.single_observation_space, space.single_action_space)
    except TypeError as e:
        raise UserError(f"{run.env}: {e}") from None
    if cfg.buffer_size < run.num_envs:
        raise UserError(f"--buffer-size {cfg.buffer_size} cannot hold one step of {run.num_envs} envs")
    if cfg.learning_starts > cfg.buffer_size:
        raise UserError(
            f"--learning-starts {cfg.learning_starts} exceeds --buffer-size {cfg.buffer_size}: "
            "training would never start"
        )
    return DQNAgent(cfg, **sizes, device=device, seed=run.seed)


def make_buffer(
    run: RunConfig, cfg: DQNConfig, envs: gym.vector.VectorEnv, device
) -> ReplayBuffer | FrameReplayBuffer:
    """Frame-stacked pixels (Atari) store each frame once; anything else stores whole obs."""
    obs_space = envs.single_observation_space
    if envs.metadata.get("frame_stack"):
        try:
            return FrameReplayBuffer(
                capacity=cfg.buffer_size, num_envs=run.num_envs, obs_shape=obs_space.shape,
                device=device, seed=run.seed + 1,
            )
        except ValueError as e:
            raise UserError(f"--buffer-size: {e}") from None
    return ReplayBuffer(
        capacity=cfg.buffer_size, obs_shape=obs_space.shape,
        obs_dtype=torch.from_numpy(obs_space.sample()[None]).dtype, device=device,
        seed=run.seed + 1,
    )


def describe_buffer(buffer: ReplayBuffer | FrameReplayBuffer) -> str:
    """The buffer's exact memory, for the log at start."""
    kind = "frames stored once" if isinstance(buffer, FrameReplayBuffer) else "whole observations"
    return (
        f"replay buffer: {buffer.capacity:,} transitions ({kind}), {buffer.nbytes / 1e6:,.1f} MB "
        f"on {buffer.device} ({buffer.nbytes / buffer.capacity:,.0f} bytes per transition)"
    )


def train_dqn(
    run: RunConfig, cfg: DQNConfig, *, resume: dict | None = None, stop: StopFlag | None = None
) -> TrainResult:
    """Train DQN as `run` and `cfg` say; continue from a loaded checkpoint if `resume` is given."""
    session = Session(run, "dqn", cfg, resume=resume, stop=stop)
    envs, device, n = session.envs, session.device, run.num_envs
    agent = build_dqn(run, cfg, envs, device)
    buffer = make_buffer(run, cfg, envs, device)
    freezer = prepare(run, agent.q_net, agent.net_kwargs, envs, resume=resume,
                      copies=(agent.target_net,))
    session.counters["steps_since_train"] = 0
    if resume is not None:
        _restore(resume, agent, buffer, log=print)
    obs = session.begin()
    if session.episodes_cut:
        buffer.cut_episodes()  # the stored episodes do not continue into the new obs
    session.logger.message(describe_buffer(buffer))
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)  # any NaN/inf loss since last check
    session.healthy = lambda: not nonfinite.item()  # sync
    session.algo_state = lambda: {
        "net_kwargs": agent.net_kwargs, "agent": agent.state_dict(),
        "buffer": buffer.state_dict() if run.save_buffer else None,
    }
    counters, logger = session.counters, session.logger
    metrics: dict[str, torch.Tensor] = {}

    with session.signals() as signals:
        try:
            while not session.should_stop(signals):
                global_step = counters["global_step"]
                freezer.update(global_step, logger.message)
                epsilon = linear_schedule(
                    cfg.start_epsilon, cfg.end_epsilon, cfg.exploration_steps, global_step
                )
                action = agent.act(obs, epsilon)
                next_obs, reward, terminated, truncated, info = envs.step(action)
                # final_obs is the true next observation, also where an episode just ended, so
                # a truncated transition bootstraps from its real last state (terminated never).
                buffer.add(obs, action, reward, info["final_obs"], terminated, truncated)
                obs = session.obs = next_obs
                logger.stash_episodes(info)
                global_step = counters["global_step"] = global_step + n

                if len(buffer) >= cfg.learning_starts:
                    counters["steps_since_train"] += n
                    while counters["steps_since_train"] >= cfg.train_frequency:
                        counters["steps_since_train"] -= cfg.train_frequency
                        agent.set_learning_rate(agent.learning_rate(global_step))
                        for _ in range(cfg.gradient_steps):
                            metrics = agent.update(buffer.sample(cfg.batch_size))
                            nonfinite |= ~torch.isfinite(metrics["td_loss"])

                if session.log_due():
                    scalars = {"charts/epsilon": epsilon,
                               "charts/learning_rate": agent.learning_rate(global_step)}
                    scalars.update({f"losses/{k}": v for k, v in metrics.items()})
                    logger.log(global_step, scalars)
                if session.after_step(agent.act):
                    break
        except BaseException:
            session.close()
            raise
    return session.finish()


def _restore(ckpt, agent, buffer, log) -> None:
    """Put a checkpoint's agent and buffer back (the session restores the rest)."""
    same_rng = agent.load_state_dict(ckpt["agent"])
    if ckpt["buffer"] is not None:
        same_rng = buffer.load_state_dict(ckpt["buffer"]) and same_rng
    else:
        log("note: the checkpoint has no replay buffer (train with --save-buffer for an exact "
            "resume); refilling it before updates continue")
    if not same_rng:
        log("note: the checkpoint was written on another device type; exploration and sampling "
            "continue from fresh RNG streams (resume is not exact)")


def dqn_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu") -> DQNAgent:
    """Rebuild a DQN agent (nets, optimizer, RNG) from a checkpoint alone."""
    cfg = DQNConfig(**{**ckpt["config"]["dqn"], "hidden": tuple(ckpt["config"]["dqn"]["hidden"])})
    sizes = saved_sizes(ckpt["net_kwargs"], "num_actions")
    agent = DQNAgent(cfg, **sizes, device=device, seed=ckpt["config"]["run"]["seed"])
    agent.load_state_dict(ckpt["agent"])
    return agent
