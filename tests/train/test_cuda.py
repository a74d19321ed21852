"""The training loops on a GPU: no per-iteration host syncs, PPO learning, exact resume, and a
checkpoint trained on the GPU replayed on the CPU. Marked `gpu`; skipped without CUDA."""

import warnings
from collections import Counter

import pytest
import torch

from agents import DQNConfig
from agents.pg import PGConfig
from train.checkpoint import load_checkpoint
from train.config import RunConfig
from train.offpolicy import train_dqn
from train.onpolicy import train_pg
from train.presets import PG_PRESETS, apply_preset
from train.session import Session
from train_testlib import RLPLAY, run_many

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def cuda_run(algo, env, tmp_path, **run_overrides):
    config = DQNConfig() if algo == "dqn" else PGConfig()
    (run, cfg), _ = apply_preset(algo, env, RunConfig(env=env), config)
    run.seed, run.device, run.progress, run.runs_dir = 1, "cuda", False, str(tmp_path)
    for k, v in run_overrides.items():
        setattr(run, k, v)
    return run, cfg


def host_syncs(algo, env, iterations, tmp_path, monkeypatch) -> list[str]:
    """The sync warnings of a run of `iterations` rollouts that logs, evaluates and checkpoints
    only once, at its end (the evaluation stubbed: its syncs depend on episode lengths)."""
    run, cfg = cuda_run(algo, env, tmp_path / str(iterations))
    if algo == "dqn":  # an "iteration": a round of train_frequency env steps and its updates
        steps = iterations * cfg.train_frequency
        cfg.learning_starts = cfg.train_frequency
    else:
        steps = iterations * run.num_envs * cfg.num_steps
    run.total_steps = run.log_every = run.eval_every = steps
    run.checkpoint_every, run.target_return = 0, None
    monkeypatch.setattr(Session, "_evaluate", lambda self, policy: 0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = train_dqn(run, cfg) if algo == "dqn" else train_pg(run, cfg, algo=algo)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert result.global_step == steps
    return [f"{w.filename}:{w.lineno}" for w in caught
            if "called a synchronizing CUDA operation" in str(w.message)]


@pytest.mark.parametrize("algo, env", [
    ("ppo", "rlplay/CartPole-v1"), ("a2c", "rlplay/CartPole-v1"),
    ("reinforce", "rlplay/CartPole-v1"), ("ppo", "rlplay/Pendulum-v1"),
    ("dqn", "rlplay/CartPole-v1"),
])
def test_the_loop_syncs_with_the_host_as_often_for_two_rollouts_as_for_six(
    algo, env, tmp_path, monkeypatch,
):
    # Acting, env steps, buffer writes, GAE (DQN: sampling, targets) and the updates stay on the
    # GPU: only setting up, logging and checkpointing sync, once each, however many rollouts come
    # between. A first run, with updates (DQN's start in its second round), takes any
    # once-per-process syncs (CUDA's lazy set-up) out of the count. torch.cuda.synchronize (the
    # clock's, before evaluations) is not counted: the debug mode flags only implicit syncs.
    host_syncs(algo, env, 2, tmp_path / "warm-up", monkeypatch)
    short = host_syncs(algo, env, 2, tmp_path, monkeypatch)
    long = host_syncs(algo, env, 6, tmp_path, monkeypatch)
    assert short, "no sync seen at all: the debug mode's warnings did not reach the test"
    assert len(long) == len(short), Counter(long) - Counter(short)


def test_ppo_solves_the_torch_cartpole_on_the_gpu_within_its_preset(tmp_path):
    run, cfg = cuda_run("ppo", "rlplay/CartPole-v1", tmp_path, target_return=475.0)
    result = train_pg(run, cfg, algo="ppo")
    assert result.stopped_by == "target_return", result.evals
    assert result.global_step <= PG_PRESETS["ppo"]["CartPole-v1"]["total_steps"]


def test_a_run_trained_on_the_gpu_replays_and_resumes_through_the_cli(tmp_path):
    train = [RLPLAY, "train", "ppo", "--env", "rlplay/CartPole-v1", "--device", "cuda",
             "--total-steps", "4096", "--eval-every", "2048", "--eval-episodes", "2",
             "--no-progress", "--runs-dir", str(tmp_path / "runs"), "--run-name", "gpu"]
    (trained,) = run_many({"train": train}, tmp_path).values()
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / "runs" / "gpu"
    results = run_many({
        "replay": [RLPLAY, "replay", str(run_dir), "--episodes", "2", "--device", "cpu"],
        "resume": [*train[:train.index("--total-steps")], "--total-steps", "8192",
                   "--resume", str(run_dir), "--no-progress"],
    }, tmp_path)
    for name, proc in results.items():
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
    assert "return" in results["replay"].stdout.lower()
    ckpt, _ = load_checkpoint(run_dir)
    assert ckpt["counters"]["global_step"] == 8192
