"""The benchmark's arithmetic: when a run first reaches 475, when it reaches it for good, and the
per-seed verdict against SB3; and the command as a user runs it (the speeds themselves are
benchmarks, not tests)."""

import subprocess

import pytest
import torch
from train_testlib import RLPLAY

from train.bench import RunSummary, summarize, table, verdicts
from train.offpolicy import EvalPoint


def curve(*returns: float) -> list[EvalPoint]:
    """Evaluations every 1,000 steps, one second of training apart."""
    return [EvalPoint(1000 * (i + 1), float(i + 1), r) for i, r in enumerate(returns)]


def test_summarize_separates_first_reach_from_reaching_for_good():
    s = summarize(curve(100, 480, 300, 500, 475, 500))
    assert (s.reach_steps, s.reach_seconds) == (2000, 2.0)
    assert (s.stay_steps, s.stay_seconds) == (4000, 4.0)  # the dip at 3,000 resets it
    assert (s.final_return, s.train_seconds) == (500, 6.0)


def test_summarize_never_and_ending_below():
    never = summarize(curve(10, 20, 30))
    assert never.reach_steps is None and never.stay_steps is None
    dropped = summarize(curve(500, 500, 400))  # solved early, but the run ends below 475
    assert dropped.reach_steps == 1000 and dropped.stay_steps is None


def test_verdict_needs_a_third_of_sb3s_time_on_every_seed():
    ours = {1: RunSummary(1000, 0.5, 2000, 2.8, 500, 9.0), 2: RunSummary(1000, 1.0, 3000, 3.0, 500, 9.0)}
    sb3 = {1: RunSummary(1000, 3.0, 9000, 9.0, 500, 20.0), 2: RunSummary(1000, 2.0, None, None, 400, 8.0)}
    stay, reach, solved = verdicts((1, 2), ours, sb3)
    # SB3's seed 2 never stays: its whole run (8 s) bounds its time from below. Our seed 1
    # (3 x 2.8 s) beats SB3's seed 1 (9 s) but not that bound; our seed 2 (9 s) neither.
    assert stay.endswith("FAIL (1 of 2 seeds; 2 of 4 pairs of our and SB3's seeds)")
    # Reach: every pair but (ours 2, SB3 2) passes, 3 x 1.0 s > 2.0 s.
    assert reach.endswith("FAIL (1 of 2 seeds; 3 of 4 pairs of our and SB3's seeds)")
    assert solved.endswith("PASS")
    ours[2] = ours[2]._replace(stay_seconds=2.5)
    assert verdicts((1, 2), ours, sb3)[0].endswith("PASS (2 of 2 seeds; 3 of 4 pairs of our and SB3's seeds)")
    text = table((1, 2), ours, sb3)
    assert ">3.20" in text  # seed 2's stay ratio is a lower bound: 8 s / 2.5 s


def test_the_torch_env_verdict_needs_a_fifth():
    ours = {1: RunSummary(1000, 0.5, 2000, 2.0, 500, 9.0)}
    sb3 = {1: RunSummary(1000, 2.0, 9000, 9.0, 500, 20.0)}  # stay: 4.5x ours, reach: 4x
    assert verdicts((1,), ours, sb3)[0].startswith(
        "ours reaches 475 and stays there in <= 1/3 of SB3's wall-clock on every seed: PASS")
    stay, reach, _ = verdicts((1,), ours, sb3, speedup=5)
    assert stay.startswith("ours reaches 475 and stays there in <= 1/5 of SB3's wall-clock")
    assert stay.endswith("FAIL (0 of 1 seeds; 0 of 1 pairs of our and SB3's seeds)")
    ours[1] = ours[1]._replace(stay_seconds=1.8, reach_seconds=0.4)  # 5x exactly on both
    stay, reach, _ = verdicts((1,), ours, sb3, speedup=5)
    assert "PASS (1 of 1 seeds" in stay and "PASS (1 of 1 seeds" in reach


def test_table_median_row():
    runs = {s: summarize(curve(*r)) for s, r in
            {1: (500, 500), 2: (100, 500), 3: (100, 100)}.items()}
    median_row = table((1, 2, 3), runs, None).splitlines()[5]
    # reach: 1000, 2000, never -> 2000; stay: 1000, 2000, never -> 2000
    assert median_row.split() == ["median", "2000/2.0s", "2000/2.0s", "500.0"]


def test_scaling_table_reads_the_run_summaries(monkeypatch, capsys):
    """`rlplay bench ppo-scaling`'s report from (summary, env steps/s) per run, without the runs."""
    from train import bench_scaling

    runs = {(1, 1): (summarize(curve(100, 500)), 1000.0), (1, 2): (summarize(curve(10, 20)), 1200.0),
            (2, 1): (summarize(curve(500, 500)), 600.0), (2, 2): (summarize(curve(500)), 500.0)}
    monkeypatch.setattr(bench_scaling, "run_once",
                        lambda opts, nproc, seed, runs_dir: runs[(nproc, seed)])
    assert bench_scaling.scaling_command(["--nprocs", "1", "2", "--seeds", "1", "2"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.strip()[:1] in ("1", "2")]
    # nproc, median env steps/s, median steps and seconds over the solved seeds, solved count
    assert rows[0][:5] == ["1", "1,100", "2000", "2.0", "1/2"]
    assert rows[1][:5] == ["2", "550", "1000", "1.0", "2/2"]


def test_the_ppo_benchmark_on_the_torch_env_runs_as_a_user_runs_it():
    # Ours only, one short run: the header names both envs and the goal is a fifth.
    out = subprocess.run(
        [RLPLAY, "bench", "ppo-cartpole", "--torch-env", "--no-sb3", "--seeds", "1",
         "--total-steps", "2048", "--eval-every", "1024"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "PPO (ours on rlplay/CartPole-v1, SB3 on CartPole-v1): 2048 env steps" in out.stdout
    assert "in <= 1/5 of SB3's wall-clock on every seed: n/a (SB3 not run)" in out.stdout
    assert out.stdout.count("\n     1  ") == 1  # seed 1's row
    assert "devices: ours cpu\n" in out.stdout  # SB3's is not named when it does not run


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_sb3_on_a_missing_gpu_is_refused_before_any_run():
    out = subprocess.run(
        [RLPLAY, "bench", "dqn-cartpole", "--sb3-device", "cuda", "--seeds", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.strip().startswith("rlplay: error: --sb3-device cuda requested but CUDA")
    assert "seed 1" not in out.stderr + out.stdout


def test_env_speed_bench_without_compile_prints_only_what_it_measured(capsys):
    # --no-compile printed "nan/s" and "nan" in the compiled columns.
    from train.bench_envs import env_speed_command

    assert env_speed_command(["--no-compile", "--sizes", "4", "--seconds", "0.05"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()[-2:]
    assert "compiled" not in header and "nan" not in row
    n, ours, gym, ratio = row.split()
    assert n == "4" and ours.endswith("/s") and gym.endswith("/s") and float(ratio) > 0
