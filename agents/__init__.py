"""Agents (their config, math, nets and optimizer) and their buffers. No env loops, no I/O."""

from agents.buffers import FrameReplayBuffer, ReplayBuffer, Transitions
from agents.dqn import DQNAgent, DQNConfig, linear_schedule, td_target

__all__ = [
    "DQNAgent", "DQNConfig", "FrameReplayBuffer", "ReplayBuffer", "Transitions",
    "linear_schedule", "td_target",
]
