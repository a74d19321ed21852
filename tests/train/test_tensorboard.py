"""What a run writes for people to read: TensorBoard tags and values, and config.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train_testlib import accumulator, event_files, read_events, scalar_values

SCALARS = [
    "charts/episodic_return", "charts/episodic_length", "charts/sps", "charts/epsilon",
    "losses/td_loss", "losses/q_values", "losses/grad_norm", "eval/episodic_return",
]


@pytest.fixture(scope="module")
def events(tiny_run):
    files = event_files(tiny_run)
    assert len(files) == 1
    return read_events(files[0])


def test_scalar_tags_and_steps(events):
    tags = {v.tag for e in events for v in e.summary.value}
    assert set(SCALARS) <= tags
    steps = {tag: [s for s, _ in scalar_values(events, tag)] for tag in SCALARS}
    assert steps["charts/sps"] == [100, 200, 300, 400, 500, 600]
    assert steps["charts/epsilon"] == [100, 200, 300, 400, 500, 600]
    # The first gradient step is at step 102 (learning_starts=100, then 4 env steps per update).
    for tag in ("losses/td_loss", "losses/q_values", "losses/grad_norm"):
        assert steps[tag] == [200, 300, 400, 500, 600], tag
    assert steps["eval/episodic_return"] == [300, 600]


def test_scalar_values_make_sense(events):
    returns = scalar_values(events, "charts/episodic_return")
    lengths = scalar_values(events, "charts/episodic_length")
    # 600 steps of CartPole in episodes of at least 8 steps: many episodes.
    assert 10 <= len(returns) <= 600 // 8
    # CartPole pays 1 per step, so each episode's return is its length.
    assert returns == lengths
    assert all(r >= 8 for _, r in returns)
    eps = [v for _, v in scalar_values(events, "charts/epsilon")]
    # Linear decay from 1.0 over exploration_steps=300; the value logged at step 100 is the one
    # the loop acted with at step 98 or 100 (before or after the step counter moved).
    assert 1.0 - 0.95 * 100 / 300 - 1e-6 <= eps[0] <= 1.0 - 0.95 * 98 / 300 + 1e-6
    assert eps == sorted(eps, reverse=True)
    assert eps[3:] == pytest.approx([0.05] * 3)  # fully decayed after exploration_steps=300
    assert all(v > 0 for _, v in scalar_values(events, "charts/sps"))
    assert all(v >= 0 for _, v in scalar_values(events, "losses/td_loss"))
    assert all(v >= 0 for _, v in scalar_values(events, "losses/grad_norm"))
    assert all(v >= 8 for _, v in scalar_values(events, "eval/episodic_return"))


def test_logged_evaluations_are_the_runs_own(tiny_run, events):
    # Each eval point TensorBoard shows is one the run took its decisions on (best checkpoint,
    # target return), at its step: not a stale or recomputed value.
    from train.checkpoint import load_checkpoint

    ckpt, _ = load_checkpoint(tiny_run)
    saved = [(step, pytest.approx(mean, rel=1e-6)) for step, _, mean in ckpt["evals"]]
    assert len(saved) >= 2
    assert scalar_values(events, "eval/episodic_return") == saved


def test_every_finished_episode_is_logged(tiny_run, events):
    from train.checkpoint import load_checkpoint

    # The last log is at the last step, so the logged lengths and the steps of the episodes
    # still running at the end (TimeLimit's counters in the final checkpoint) add up to 600.
    ckpt, _ = load_checkpoint(tiny_run)
    running = [
        layer["_elapsed_steps"]["value"]
        for env_layers in ckpt["env_state"]["envs"] for layer in env_layers
        if "_elapsed_steps" in layer
    ]
    assert len(running) == 2
    assert sum(n for _, n in scalar_values(events, "charts/episodic_length")) + sum(running) == 600


def test_eval_returns_match_the_checkpoint(tiny_run, events):
    from train.checkpoint import load_checkpoint

    ckpt, _ = load_checkpoint(tiny_run)
    logged = scalar_values(events, "eval/episodic_return")
    assert [(step, pytest.approx(mean)) for step, _, mean in ckpt["evals"]] == logged


def test_config_text_in_tensorboard(tiny_run):
    ea = accumulator(tiny_run)
    # torch's add_text("config", ...) writes the tag config/text_summary for the Text plugin.
    assert ea.Tags()["tensors"] == ["config/text_summary"]
    assert ea.SummaryMetadata("config/text_summary").plugin_data.plugin_name == "text"
    (event,) = ea.Tensors("config/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == 0
    assert "|algo|dqn|" in text
    assert "|run.env|CartPole-v1|" in text
    assert "|dqn.learning_rate|0.00025|" in text
    assert "|dqn.hidden|(16, 16)|" in text
    assert set(SCALARS) <= set(ea.Tags()["scalars"])


def test_config_json_holds_the_resolved_config(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["algo"] == "dqn"
    assert config["run"]["env"] == "CartPole-v1"
    assert config["run"]["num_envs"] == 2 and config["run"]["total_steps"] == 600
    assert config["run"]["run_name"] == "tiny"
    assert config["dqn"]["learning_rate"] == 0.00025  # DQNConfig's default: no preset in-process
    assert config["dqn"]["hidden"] == [16, 16]
    assert config["dqn"]["target_update_interval"] == 20


def test_eval_video_is_an_animated_gif_per_evaluation_with_bounded_frames(tmp_path):
    """--eval-video: one greedy episode per evaluation as eval/video, cut at eval_video_frames;
    off by default (the tiny run above writes no image)."""
    import imageio.v3 as iio

    from train.offpolicy import train_dqn
    from train_testlib import tiny_configs

    run, cfg = tiny_configs(tmp_path, run_name="video", eval_video=True, eval_video_frames=5)
    result = train_dqn(run, cfg)
    events = [e for f in event_files(result.run_dir) for e in read_events(f)]
    # TensorBoard's reader turns an image summary into a tensor [width, height, encoded image].
    videos = [(e.step, v.tensor.string_val) for e in events for v in e.summary.value
              if v.tag == "eval/video"]
    assert [step for step, _ in videos] == [300, 600]
    for _, (width, height, gif) in videos:
        assert (int(width), int(height)) == (600, 400) and gif.startswith(b"GIF89a")
        frames = iio.imread(gif, extension=".gif", index=None)
        # Pillow merges repeated frames into one longer frame, so at most the 5 recorded.
        assert 1 <= frames.shape[0] <= 5 and frames.shape[1:] == (400, 600, 3)


def test_record_episode_is_one_whole_episode_or_cut_at_max_frames():
    import torch

    import envs
    from train.evaluate import record_episode

    env = envs.make("CartPole-v1", 1, render_mode="rgb_array")
    push_right = lambda obs: torch.ones(1, dtype=torch.int64)  # noqa: E731 - falls in ~10 steps
    whole = record_episode(push_right, env, seed=0, max_frames=1000)
    obs, _ = env.reset(seed=0)
    steps = 1
    while not any(env.step(push_right(obs))[2:4]):
        steps += 1
    assert whole.shape == (steps, 400, 600, 3) and whole.dtype == np.uint8  # reset + each step
    assert record_episode(push_right, env, seed=0, max_frames=4).shape[0] == 4
    env.close()


def test_no_video_without_the_flag(events):
    assert not [v for e in events for v in e.summary.value if v.tag == "eval/video"]
