"""`rlplay bench dqn-atari` (issue 6): our loop's phases are timed from inside it with the
benchmark's settings, the table's arithmetic, and the command as a user runs it. The speeds
themselves are benchmarks, not tests."""

import os
import signal
import subprocess

import pytest
from train_testlib import RLPLAY

from agents.dqn import DQNAgent
from train.bench import run_preset
from train.bench_atari import AtariLoopBench, LapFlag, Laps, rates, table

GAME = "BreakoutNoFrameskip-v4"
TINY = dict(total_steps=60, learning_starts=40, buffer_size=200)


def test_lap_flag_times_our_loop_with_the_benchmarks_settings(monkeypatch):
    updates = []
    update = DQNAgent.update
    monkeypatch.setattr(DQNAgent, "update", lambda self, b: updates.append(1) or update(self, b))
    flag = LapFlag(TINY["learning_starts"], TINY["total_steps"])
    run_preset(
        "dqn", GAME, seed=1, total_steps=TINY["total_steps"], eval_every=0, eval_episodes=1,
        stop=flag, agent_settings=dict(learning_starts=40, buffer_size=200),
    )
    # One check before each of the 60 steps and one that ends the loop; none asked to stop.
    assert flag.checks == 61
    # The preset's learning_starts (80,000) was replaced: an update every 4 steps from 40.
    assert len(updates) == (60 - 40) // 4
    laps = flag.laps()
    assert laps.collect_seconds > 0 and laps.update_seconds > 0
    assert set(flag.times) == {0, 40, 59}


def test_rates_and_the_table_compare_each_phase():
    opts = AtariLoopBench(seeds=(1, 2), total_steps=1_001, learning_starts=400)
    ours = {1: Laps(1.0, 6.0), 2: Laps(0.8, 5.0)}
    theirs = {1: Laps(2.0, 6.0), 2: Laps(0.8, 10.0)}
    assert rates(opts, ours[1]) == (400.0, 100.0)  # 600 steps timed after the lap
    lines = table(opts, ours, theirs)
    assert lines[1].split()[-2:] == ["200.0/s", "2.00"]  # seed 1, before updates: 400 vs 200
    assert lines[4].split()[-2:] == ["60.0/s", "2.00"]  # seed 2, with updates: 120 vs 60
    assert lines[-2].endswith("before updates: 1.50")  # median of 2.0 and 1.0
    assert lines[-1].endswith("with updates: 1.50")  # median of 1.0 and 2.0
    only_ours = table(opts, ours, {})
    assert len(only_ours) == 5 and "median" not in only_ours[-1]


def test_the_command_runs_ours_and_prints_both_phases():
    args = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    out = subprocess.run(
        [RLPLAY, "bench", "dqn-atari", *args, "--no-cleanrl"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("   1  ")]
    assert [row[1:3] for row in rows] == [["before", "updates"], ["with", "updates"]]
    assert all(row[-2:] == ["-", "-"] for row in rows)  # CleanRL's design not run


@pytest.mark.parametrize("args, error", [
    (["--total-steps=100", "--learning-starts=99"],
     "--learning-starts must be positive and below --total-steps - 1"),
    # The emulator of a v5 id skips 4 frames itself; CleanRL's wrappers would skip 16.
    (["--env=ALE/Breakout-v5"], "--env ALE/Breakout-v5: needs an Atari game without frame skip, "
     "such as BreakoutNoFrameskip-v4 (CleanRL's wrappers skip 4 frames themselves)"),
    (["--env=CartPole-v1"], "--env CartPole-v1: needs an Atari game without frame skip, "
     "such as BreakoutNoFrameskip-v4 (CleanRL's wrappers skip 4 frames themselves)"),
    (["--env=Breakout-v9"], "unknown env id 'Breakout-v9'; try BreakoutNoFrameskip-v4"),
    (["--seeds", "1", "1"], "--seeds needs at least one seed, each once"),
])
def test_bad_input_is_a_one_line_error(args, error):
    out = subprocess.run(
        [RLPLAY, "bench", "dqn-atari", *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [f"rlplay: error: {error}"]


def test_ctrl_c_stops_with_no_results_and_no_resume_advice():
    proc = subprocess.Popen(
        [RLPLAY, "bench", "dqn-atari", "--total-steps=100000", "--learning-starts=1000",
         "--buffer-size=2000", "--no-cleanrl"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in proc.stderr:  # our loop has started once it reports its buffer
        if line.startswith("replay buffer:"):
            break
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # a no-op once it has exited
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "interrupted: no results (ignore any --resume hint above: the run folder was temporary)"
    )


def test_cleanrls_design_runs_on_the_same_observations():
    pytest.importorskip("stable_baselines3")  # the `bench` extra
    from train.bench_atari import cleanrl_env, run_cleanrl

    envs = cleanrl_env(GAME, seed=1)
    obs, _ = envs.reset(seed=1)
    assert obs.shape == (1, 4, 84, 84) and obs.dtype.name == "uint8"
    envs.close()
    laps = run_cleanrl(AtariLoopBench(**TINY), seed=1)
    assert laps.collect_seconds > 0 and laps.update_seconds > 0
