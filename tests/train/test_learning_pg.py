"""Policy-gradient learning tests and PPO's exact resume."""

import pytest
import torch

from agents.pg import PGConfig
from train.checkpoint import load_checkpoint
from train.config import RunConfig
from train.onpolicy import train_pg
from train.presets import PG_PRESETS, apply_preset
from train_testlib import CUDA, StopAfter


def preset_run(algo, task, tmp_path, **run_overrides):
    (run, cfg), _ = apply_preset(algo, task, RunConfig(env=task), PGConfig())
    run.seed, run.device, run.progress, run.runs_dir = 1, "cpu", False, str(tmp_path)
    for k, v in run_overrides.items():
        setattr(run, k, v)
    return run, cfg


@pytest.mark.parametrize("algo, threshold", [("ppo", 475.0), ("a2c", 475.0), ("reinforce", 400.0)])
def test_policy_gradient_solves_cartpole_within_its_preset(algo, threshold, tmp_path):
    run, cfg = preset_run(algo, "CartPole-v1", tmp_path, target_return=threshold)
    result = train_pg(run, cfg, algo=algo)
    assert result.stopped_by == "target_return", result.evals
    assert result.best_return >= threshold
    assert result.global_step <= PG_PRESETS[algo]["CartPole-v1"]["total_steps"]


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("env", ["CartPole-v1", "rlplay/CartPole-v1"])
def test_ppo_stop_and_resume_is_bitwise_exact(env, device, tmp_path, capsys):
    # The preset is CartPole-v1's either way; run.env picks Gymnasium's or our torch envs.
    overrides = dict(env=env, total_steps=2_048, eval_every=768, log_every=256, eval_episodes=2,
                     num_envs=8, device=device)  # 256-step rollouts: the stop lands mid-run
    run, cfg = preset_run("ppo", "CartPole-v1", tmp_path / "a", **overrides)
    cfg.norm_obs = cfg.norm_reward = True  # their statistics must resume exactly too
    whole = train_pg(run, cfg, algo="ppo")

    run, cfg = preset_run("ppo", "CartPole-v1", tmp_path / "b", **overrides)
    cfg.norm_obs = cfg.norm_reward = True
    first = train_pg(run, cfg, algo="ppo", stop=StopAfter(3))  # mid-run, learning rate annealing
    assert first.stopped_by == "SIGINT" and 0 < first.global_step < 2_048
    ckpt, file = load_checkpoint(first.run_dir)
    ckpt["run_dir"] = str(file.parent)
    capsys.readouterr()
    second = train_pg(run, cfg, algo="ppo", resume=ckpt)
    assert "env state not restorable" not in capsys.readouterr().out  # the envs continue
    assert second.global_step == whole.global_step == 2_048

    a, _ = load_checkpoint(whole.run_dir)
    b, _ = load_checkpoint(second.run_dir)
    for key, tensor in a["agent"]["net"].items():
        assert torch.equal(tensor, b["agent"]["net"][key]), key
    assert torch.equal(a["reward_scaler"]["returns"], b["reward_scaler"]["returns"])
    assert torch.equal(a["agent"]["generator"], b["agent"]["generator"])


def test_resume_that_restarts_the_envs_restarts_the_running_returns(tmp_path, capsys):
    # Async envs' state cannot be saved: a resume resets them, and the reward scaler's running
    # discounted returns must restart with their episodes (they carried the dropped ones' on).
    run, cfg = preset_run("ppo", "CartPole-v1", tmp_path, total_steps=2_048, eval_every=0,
                          num_envs=2, vectorization="async")
    cfg.norm_reward = True
    first = train_pg(run, cfg, algo="ppo", stop=StopAfter(2))
    ckpt, file = load_checkpoint(first.run_dir)
    assert ckpt["reward_scaler"]["returns"].abs().sum() > 0  # stopped mid-episode
    ckpt["run_dir"] = str(file.parent)
    second = train_pg(run, cfg, algo="ppo", resume=ckpt, stop=StopAfter(0))  # saves at once
    assert "env state not restorable" in capsys.readouterr().out
    saved, _ = load_checkpoint(second.run_dir)
    assert saved["counters"]["global_step"] == ckpt["counters"]["global_step"]
    assert torch.equal(saved["reward_scaler"]["returns"], torch.zeros(2, dtype=torch.float64))
    assert torch.equal(saved["reward_scaler"]["stats"]["count"], ckpt["reward_scaler"]["stats"]["count"])


def test_ppo_reaches_minus_200_on_pendulum_within_its_preset(tmp_path):
    run, cfg = preset_run("ppo", "Pendulum-v1", tmp_path, target_return=-200.0)
    result = train_pg(run, cfg, algo="ppo")
    assert result.stopped_by == "target_return", result.evals
    assert result.best_return >= -200.0
    assert result.global_step <= PG_PRESETS["ppo"]["Pendulum-v1"]["total_steps"]


def test_ppo_trained_on_the_torch_cartpole_solves_gymnasiums_cartpole(tmp_path):
    from envs import make as make_envs
    from train.evaluate import evaluate
    from train.onpolicy import pg_from_checkpoint

    run, cfg = preset_run("ppo", "rlplay/CartPole-v1", tmp_path, target_return=475.0)
    result = train_pg(run, cfg, algo="ppo")
    assert result.stopped_by == "target_return", result.evals
    assert result.global_step <= PG_PRESETS["ppo"]["CartPole-v1"]["total_steps"]
    # The policy transfers: rebuilt from its checkpoint, it solves Gymnasium's own CartPole-v1.
    ckpt, _ = load_checkpoint(result.run_dir, prefer="best.pt")
    agent = pg_from_checkpoint(ckpt)
    returns = evaluate(agent.act, make_envs("CartPole-v1", 10), seed=777)
    assert returns.mean() >= 475.0, returns
