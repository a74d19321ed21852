"""A NaN/inf TD loss stops training with TrainingDiverged and keeps the last good checkpoint."""

from __future__ import annotations

import pytest
import torch

from agents import DQNAgent
from train.checkpoint import BEST, LATEST, load_checkpoint
from train.errors import TrainingDiverged
from train.offpolicy import dqn_from_checkpoint, train_dqn
from train_testlib import tiny_configs

# Updates start at step 102 and come every 4 env steps, so update 60 is at step ~338: after the
# evaluation (and checkpoints) at step 300, before the log at step 400.
BLOW_UP_AT = 60


@pytest.fixture
def blow_up_after_first_checkpoint(monkeypatch):
    """From update BLOW_UP_AT on, Adam's learning rate is 1e30: a real, deterministic divergence.

    Adam's step is ~lr whatever the gradient's scale, so the weights jump to ~1e30, the next
    forward pass overflows float32 (1e30 · 1e30 > 3.4e38) and the TD loss is inf or NaN. Nothing
    else in the loop is touched, so the run is the ordinary tiny run until that update.
    """
    real_update = DQNAgent.update

    def update(self, batch):
        if self.num_updates == BLOW_UP_AT:
            for group in self.optimizer.param_groups:
                group["lr"] = 1e30
        return real_update(self, batch)

    monkeypatch.setattr(DQNAgent, "update", update)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, blow_up_after_first_checkpoint):
    run, cfg = tiny_configs(tmp_path, run_name="nan")
    with pytest.raises(TrainingDiverged) as info:
        train_dqn(run, cfg)
    run_dir = tmp_path / "nan"
    message = str(info.value)
    assert "NaN or infinite" in message
    assert "before step 400" in message  # caught at the first log after the blow-up
    assert f"the last good checkpoint was kept ({run_dir / LATEST})" in message
    assert "--learning-rate" in message

    ckpt, _ = load_checkpoint(run_dir, prefer=LATEST)
    assert ckpt["counters"]["global_step"] == 300  # written at the eval, before the blow-up
    assert ckpt["agent"]["num_updates"] < BLOW_UP_AT
    for net in ("q_net", "target_net"):
        assert all(torch.isfinite(t).all() for t in ckpt["agent"][net].values()), net
    for state in ckpt["agent"]["optimizer"]["state"].values():
        assert all(torch.isfinite(t).all() for t in state.values())
    best, _ = load_checkpoint(run_dir, prefer=BEST)
    assert all(torch.isfinite(t).all() for t in best["agent"]["q_net"].values())
    agent = dqn_from_checkpoint(ckpt)  # and the kept policy still plays
    assert agent.act(torch.zeros(3, 4)).shape == (3,)


def test_nan_before_any_checkpoint_says_so(tmp_path):
    # lr = 1e30 from the first update (step 102): diverged at the log at step 200, no eval yet.
    run, cfg = tiny_configs(tmp_path, run_name="nan0", learning_rate=1e30)
    with pytest.raises(TrainingDiverged, match="before step 200; .*no checkpoint had been written"):
        train_dqn(run, cfg)
    assert not (tmp_path / "nan0" / LATEST).exists()
    assert not (tmp_path / "nan0" / BEST).exists()


def test_divergence_is_not_a_false_alarm(tmp_path):
    # The same run with an ordinary learning rate finishes: the check reads the real loss.
    run, cfg = tiny_configs(tmp_path, run_name="ok", total_steps=500, learning_rate=1e-2)
    assert train_dqn(run, cfg).stopped_by == "total_steps"
