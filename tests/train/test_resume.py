"""Resuming a run: bitwise-exact with --save-buffer, approximate without, continuous TensorBoard."""

from __future__ import annotations

import signal

import pytest
import torch

from agents import DQNAgent, DQNConfig
from train.checkpoint import LATEST, load_checkpoint
from train.common import StopFlag
from train.offpolicy import train_dqn
from train_testlib import event_files, read_events, scalar_steps, tiny_configs

# N is not a multiple of eval_every (300) or log_every (100), so the resumed run starts between
# a log and an eval; the 400-transition buffer has wrapped (pos = 50) by then.
N = 450
RESUME_OVERRIDES = dict(buffer_size=400, save_buffer=True)


def _resume(run_dir, run):
    """What `rlplay train dqn --resume run_dir` hands to train_dqn (see cli.parse_train_args)."""
    ckpt, file = load_checkpoint(run_dir, prefer=LATEST)
    ckpt["run_dir"] = str(file.parent)
    cfg = DQNConfig(**{**ckpt["config"]["dqn"], "hidden": tuple(ckpt["config"]["dqn"]["hidden"])})
    return train_dqn(run, cfg, resume=ckpt)


def _assert_tree_equal(a, b, where="ckpt"):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_tree_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_tree_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    """N steps, then resumed to 2N from latest.pt: (run_dir, checkpoint at N, final checkpoint)."""
    runs = tmp_path_factory.mktemp("split")
    run, cfg = tiny_configs(runs, total_steps=N, run_name="split", **RESUME_OVERRIDES)
    first = train_dqn(run, cfg)
    assert first.global_step == N
    at_n, _ = load_checkpoint(first.run_dir, prefer=LATEST)
    run2, _ = tiny_configs(runs, total_steps=2 * N, run_name="split", **RESUME_OVERRIDES)
    result = _resume(first.run_dir, run2)
    assert result.global_step == 2 * N and result.stopped_by == "total_steps"
    final, _ = load_checkpoint(first.run_dir, prefer=LATEST)
    return first.run_dir, at_n, final


def test_resume_point_is_mid_episode_and_mid_schedule(split_run):
    _, at_n, _ = split_run
    assert at_n["counters"]["global_step"] == N
    # Episodes in progress at the resume point: the TimeLimit step counters are not zero.
    elapsed = [
        layer["_elapsed_steps"]["value"]
        for env_layers in at_n["env_state"]["envs"] for layer in env_layers
        if "_elapsed_steps" in layer
    ]
    assert len(elapsed) == 2 and all(e > 0 for e in elapsed)
    assert at_n["buffer"]["size"] == 400 and at_n["buffer"]["pos"] == N % 400
    assert at_n["agent"]["num_updates"] > 0


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The final checkpoint of the same run done in one go (2N steps)."""
    run, cfg = tiny_configs(tmp_path_factory.mktemp("straight"), total_steps=2 * N,
                            run_name="straight", **RESUME_OVERRIDES)
    result = train_dqn(run, cfg)
    return load_checkpoint(result.run_dir, prefer=LATEST)[0]


def _assert_same_training_state(resumed: dict, straight: dict) -> None:
    """Nets, optimizer, exploration RNG, buffer and envs: bitwise equal."""
    assert resumed["counters"]["global_step"] == straight["counters"]["global_step"] == 2 * N
    for part in ("q_net", "target_net", "optimizer", "generator", "num_updates"):
        _assert_tree_equal(resumed["agent"][part], straight["agent"][part], f"agent.{part}")
    _assert_tree_equal(resumed["buffer"], straight["buffer"], "buffer")
    # Every env layer's state matches, except RecordEpisodeStatistics' wall-clock start times.
    for state in (resumed, straight):
        for layer in state["env_state"]["vector"]:
            layer.pop("episode_start_times", None)
    _assert_tree_equal(resumed["env_state"], straight["env_state"], "env_state")
    assert torch.equal(resumed["obs"], straight["obs"])
    assert resumed["counters"]["steps_since_train"] == straight["counters"]["steps_since_train"]


def test_resume_with_buffer_is_bitwise_exact(split_run, straight):
    _, at_n, resumed = split_run
    _assert_same_training_state(resumed, straight)
    # Guard against a vacuous comparison: the nets did change after the resume point.
    assert resumed["agent"]["num_updates"] > at_n["agent"]["num_updates"]
    assert not any(
        torch.equal(resumed["agent"]["q_net"][k], at_n["agent"]["q_net"][k])
        for k in at_n["agent"]["q_net"]
    )


def test_stop_at_any_step_then_resume_is_bitwise_exact(tmp_path, monkeypatch, straight):
    # What SIGINT does, at a step that is neither a log, an eval nor a checkpoint step: the
    # stop flag is raised during update 37 (step ~246) and read at the top of the next loop step.
    flag = StopFlag()
    real_update = DQNAgent.update

    def update(self, batch):
        if self.num_updates == 37:
            flag.signal = "SIGINT"
        return real_update(self, batch)

    monkeypatch.setattr(DQNAgent, "update", update)
    run, cfg = tiny_configs(tmp_path, total_steps=2 * N, run_name="stopped", **RESUME_OVERRIDES)
    stopped = train_dqn(run, cfg, stop=flag)
    monkeypatch.undo()
    assert stopped.stopped_by == "SIGINT"
    at_stop, _ = load_checkpoint(stopped.run_dir)
    assert at_stop["counters"]["global_step"] == stopped.global_step
    assert stopped.global_step % 100 != 0 and at_stop["agent"]["num_updates"] == 38
    _resume(stopped.run_dir, run)
    _assert_same_training_state(load_checkpoint(stopped.run_dir)[0], straight)


def test_a_callers_stop_flag_never_masks_a_real_sigint(tmp_path, monkeypatch):
    # `rlplay bench` passes a flag of its own (it times the loop); Ctrl-C must still stop it.
    real_update = DQNAgent.update

    def update(self, batch):
        if self.num_updates == 5:
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            signal.raise_signal(signal.SIGINT)  # the loop's handler sets its own flag
        return real_update(self, batch)

    monkeypatch.setattr(DQNAgent, "update", update)
    run, cfg = tiny_configs(tmp_path, total_steps=2 * N, run_name="sigint")
    result = train_dqn(run, cfg, stop=StopFlag())  # the caller's flag never asks
    assert result.stopped_by == "SIGINT" and result.global_step < 2 * N


def test_resume_without_buffer_runs_and_says_so(tmp_path, capsys):
    run, cfg = tiny_configs(tmp_path, total_steps=N, run_name="nobuf", buffer_size=400)
    first = train_dqn(run, cfg)
    at_n, _ = load_checkpoint(first.run_dir)
    assert at_n["buffer"] is None
    capsys.readouterr()
    run2, _ = tiny_configs(tmp_path, total_steps=2 * N, run_name="nobuf", buffer_size=400)
    result = _resume(first.run_dir, run2)
    out = capsys.readouterr().out
    assert "the checkpoint has no replay buffer" in out and "--save-buffer" in out
    assert result.global_step == 2 * N
    final, _ = load_checkpoint(first.run_dir)
    assert final["counters"]["global_step"] == 2 * N
    # The empty buffer must refill to learning_starts (100 transitions, reached at step N + 100)
    # before updates continue; from then on every loop step adds 2 env steps to the restored
    # steps_since_train and each 4 make an update. With the buffer kept this would be ~(N / 4).
    learning_steps = 2 * N - (N + 100) + 2  # steps N+100 .. 2N inclusive, 2 env steps each
    expected = (learning_steps + at_n["counters"]["steps_since_train"]) // 4
    assert final["agent"]["num_updates"] - at_n["agent"]["num_updates"] == expected
    assert final["buffer"] is None


def test_tensorboard_continues_across_resume(split_run):
    run_dir, _, _ = split_run
    files = event_files(run_dir)
    assert len(files) == 2
    before, after = (read_events(f) for f in files)
    # The resumed writer opens with a purge at (or just after) the checkpoint's step, so that
    # anything a killed run logged after its last checkpoint is hidden.
    (purge,) = [e.step for e in after if e.HasField("session_log") and e.session_log.status == 1]
    for tag in ("charts/sps", "losses/td_loss"):
        steps_before, steps_after = scalar_steps(before, tag), scalar_steps(after, tag)
        first = 100 if tag == "charts/sps" else 200  # updates start after learning_starts
        assert steps_before == list(range(first, N, 100)), tag
        assert steps_after == [500, 600, 700, 800, 900], tag
        assert N <= purge <= min(steps_after)
        steps = steps_before + steps_after
        assert all(a < b for a, b in zip(steps, steps[1:])), tag


def test_eval_at_the_resume_step_survives_the_purge(split_run):
    # TensorBoard (EventAccumulator, the UI) applies a SessionLog.START at step S by dropping the
    # events it already read with step >= S. Checked on the files themselves, because the
    # accumulator reads files in name order, and two writers opened by one process within the
    # same second may sort either way (their names end in a per-process counter: ...9 > ...10).
    run_dir, _, _ = split_run
    before, after = (read_events(f) for f in event_files(run_dir))
    (purge_step,) = [e.step for e in after if e.HasField("session_log") and e.session_log.status == 1]
    assert N in scalar_steps(before, "eval/episodic_return")  # logged before the checkpoint...
    assert N < purge_step  # ...and kept
