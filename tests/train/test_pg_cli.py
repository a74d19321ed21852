"""PPO/A2C/REINFORCE through the installed `rlplay`: continuous actions, TensorBoard, replay."""

import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from train_testlib import event_files, read_events, scalar_steps, scalar_values

RLPLAY = str(Path(sys.executable).with_name("rlplay"))
PG_TAGS = [
    "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
    "losses/clip_fraction", "losses/explained_variance", "charts/learning_rate",
    "charts/episodic_return", "eval/episodic_return",
]


def rlplay(*args, cwd):
    return subprocess.run(
        [RLPLAY, *args], cwd=cwd, text=True, capture_output=True, timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "SDL_VIDEODRIVER": "dummy"},
    )


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("pg")
    proc = rlplay(
        "train", "ppo", "--env", "Pendulum-v1", "--num-envs", "2", "--num-steps", "256",
        "--total-steps", "2048", "--eval-every", "1024", "--eval-episodes", "2",
        "--log-every", "512", "--num-minibatches", "4", "--update-epochs", "2",
        "--anneal-lr", "--anneal-clip", "--run-name", "pend", "--no-progress", "--device", "cpu", cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


def test_ppo_on_continuous_actions_logs_its_tags_and_prints_its_preset(pendulum_run):
    cwd, proc = pendulum_run
    assert "preset ppo/Pendulum-v1:" in proc.stdout
    run_dir = cwd / "runs" / "pend"
    assert (run_dir / "best.pt").exists() and (run_dir / "latest.pt").exists()
    (events_file,) = event_files(run_dir)
    events = read_events(events_file)
    for tag in PG_TAGS:
        assert scalar_steps(events, tag), tag
    # --anneal-lr (the Pendulum preset's too) decays the preset's 5e-4 linearly over total_steps.
    lrs = [v for _, v in scalar_values(events, "charts/learning_rate")]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < lrs[0] <= 5e-4 + 1e-9
    # --anneal-clip: each update's ε is 0.2 (the preset's) times the budget left when its
    # rollout began (logged after the update, at the rollout's last step).
    clips = scalar_values(events, "charts/clip_coef")
    assert len(clips) == 4
    for step, clip in clips:
        assert clip == pytest.approx(0.2 * (1 - (step - 512) / 2048), rel=1e-6), step


def test_replay_of_a_continuous_policy_writes_a_video(pendulum_run):
    cwd, _ = pendulum_run
    proc = rlplay("replay", "runs/pend", "--video", "pend.gif", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "mean return over 1 episodes" in proc.stdout
    frames = list(imageio.get_reader(cwd / "pend.gif"))
    assert len(frames) > 10 and np.asarray(frames[0]).std() > 0
