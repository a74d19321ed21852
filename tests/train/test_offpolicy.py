"""The off-policy loop's schedule of gradient steps and learning rates."""

from __future__ import annotations

import pytest

from agents import DQNAgent, DQNConfig
from train.config import RunConfig
from train.offpolicy import train_dqn


def test_bursts_of_gradient_steps_at_the_scheduled_learning_rate(tmp_path, monkeypatch):
    # 2 envs: 2 env steps per loop step. The buffer holds 50 transitions at step 50; from then
    # on a burst of 3 gradient steps every 10 env steps (at 58, 68, …, 198), each at the
    # learning rate decayed linearly from 1e-3 to 0 over 200 steps, read at the burst's step.
    lrs = []
    update = DQNAgent.update

    def recording_update(self, batch):
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return update(self, batch)

    monkeypatch.setattr(DQNAgent, "update", recording_update)
    run = RunConfig(env="CartPole-v1", num_envs=2, total_steps=200, eval_every=0, log_every=100,
                    progress=False, device="cpu", runs_dir=str(tmp_path))
    cfg = DQNConfig(hidden=(8,), learning_starts=50, buffer_size=1_000, batch_size=8,
                    train_frequency=10, gradient_steps=3, learning_rate=1e-3,
                    final_learning_rate=0.0, lr_decay_steps=200, target_update_interval=5,
                    exploration_steps=100)
    train_dqn(run, cfg)
    expected = [1e-3 * (1 - step / 200) for step in range(58, 200, 10) for _ in range(3)]
    assert lrs == pytest.approx(expected)
