"""DQN and PPO from pixels through the installed `rlplay`: MinAtar Breakout and Atari Breakout
train a few thousand steps, log, checkpoint and replay to video.

The four runs start together, then the four replays (2 cores: ~60 s in all); the budgets are
tiny, so these check the plumbing end to end, not learning.
"""

from __future__ import annotations

import re

import imageio.v3 as iio
import pytest

from train.checkpoint import BEST, LATEST, load_checkpoint
from train_testlib import RLPLAY, event_files, read_events, run_many, scalar_values

pytest.importorskip("ale_py")
pytest.importorskip("minatar")

COMMON = ["--no-progress", "--device", "cpu", "--eval-episodes", "1", "--log-every", "256"]
RUNS = {  # name: (algo, env, flags beyond the env's preset, video file)
    "dqn_minatar": ("dqn", "MinAtar/Breakout-v1", [
        "--total-steps", "2000", "--eval-every", "1000", "--learning-starts", "500",
        "--train-frequency", "4", "--buffer-size", "2000"], "dqn_minatar.gif"),
    "ppo_minatar": ("ppo", "MinAtar/Breakout-v1", [
        "--num-envs", "4", "--num-steps", "128", "--total-steps", "2048", "--eval-every", "1024",
    ], "ppo_minatar.gif"),
    "dqn_atari": ("dqn", "ALE/Breakout-v5", [
        "--total-steps", "1000", "--eval-every", "1000", "--learning-starts", "400",
        "--train-frequency", "16", "--buffer-size", "1000", "--hidden", "64"], "dqn_atari.mp4"),
    "ppo_atari": ("ppo", "ALE/Breakout-v5", [
        "--num-envs", "4", "--num-steps", "64", "--total-steps", "768", "--eval-every", "768",
        "--update-epochs", "1", "--num-minibatches", "2", "--hidden", "64"], "ppo_atari.mp4"),
}


@pytest.fixture(scope="module")
def pixel_runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("pixels")
    trained = run_many({
        name: [RLPLAY, "train", algo, "--env", env, *COMMON, *flags, "--run-name", name]
        for name, (algo, env, flags, _) in RUNS.items()
    }, cwd)
    for name, proc in trained.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr[-2000:]}"
    replayed = run_many({
        name: [RLPLAY, "replay", f"runs/{name}", "--episodes", "1", "--video", video]
        for name, (*_, video) in RUNS.items()
    }, cwd)
    return cwd, trained, replayed


@pytest.mark.parametrize("name", RUNS)
def test_training_from_pixels_completes_logs_and_checkpoints(pixel_runs, name):
    cwd, trained, _ = pixel_runs
    algo, env, flags, _ = RUNS[name]
    out, err = trained[name].stdout, trained[name].stderr
    steps = flags[flags.index("--total-steps") + 1]
    assert f"finished (total_steps) at step {steps}" in out and "Traceback" not in err
    assert f"preset {algo}/{env}:" in out  # the family preset (Atari, MinAtar) applies
    run_dir = cwd / "runs" / name
    ckpt, _ = load_checkpoint(run_dir / LATEST)
    assert (run_dir / BEST).is_file()
    atari = env.startswith("ALE/")
    assert tuple(ckpt["net_kwargs"]["obs_shape"]) == ((4, 84, 84) if atari else (4, 10, 10))
    events = [e for f in event_files(run_dir) for e in read_events(f)]
    loss = "losses/td_loss" if algo == "dqn" else "losses/policy_loss"
    for tag in (loss, "charts/episodic_return", "eval/episodic_return"):
        assert scalar_values(events, tag), tag
    if algo == "dqn":  # the buffer's exact memory, in the log at start
        kind = "frames stored once" if atari else "whole observations"
        assert re.search(
            rf"replay buffer: {1000 if atari else 2000:,} transitions \({kind}\), [\d.]+ MB on cpu "
            r"\([\d,]+ bytes per transition\)", err)


def test_atari_logs_whole_game_returns_not_clipped_lives(pixel_runs):
    cwd, *_ = pixel_runs
    events = [e for f in event_files(cwd / "runs" / "dqn_atari") for e in read_events(f)]
    lengths = [v for _, v in scalar_values(events, "charts/episodic_length")]
    assert lengths and min(lengths) > 100  # five lives of Breakout, not one (~30 steps each)


@pytest.mark.parametrize("name", RUNS)
def test_replay_from_pixels_writes_a_video(pixel_runs, name):
    cwd, _, replayed = pixel_runs
    proc = replayed[name]
    assert proc.returncode == 0, proc.stderr[-2000:]
    video = RUNS[name][3]
    assert f"video: {video}" in proc.stdout
    frames = iio.imread(cwd / video)  # (T, H, W, 3)
    assert frames.shape[0] >= 2  # as many as the episode's steps (MinAtar's can be short)
    assert frames.shape[1:3] == ((210, 160) if video.endswith(".mp4") else (160, 160))
