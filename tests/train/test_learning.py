"""Learning tests: seeded agents must reach their task's return threshold within the preset."""

from agents import DQNConfig
from train.checkpoint import load_checkpoint
from train.config import RunConfig
from train.evaluate import eval_seed, evaluate
from train.offpolicy import dqn_from_checkpoint, train_dqn
from train.presets import DQN_PRESETS, apply_preset
import envs


def test_dqn_solves_cartpole_within_its_preset_budget(tmp_path):
    (run, cfg), _ = apply_preset("dqn", "CartPole-v1", RunConfig(env="CartPole-v1"), DQNConfig())
    run.seed, run.device, run.progress, run.runs_dir = 1, "cpu", False, str(tmp_path)
    run.target_return = 475.0
    result = train_dqn(run, cfg)

    assert result.stopped_by == "target_return", result.evals
    assert result.global_step <= DQN_PRESETS["CartPole-v1"]["total_steps"]
    assert result.best_return >= 475.0
    # The saved best policy, rebuilt from its file alone, is exactly the one evaluated: on that
    # evaluation's start states it scores the same mean...
    ckpt, _ = load_checkpoint(result.run_dir, prefer="best.pt")
    agent = dqn_from_checkpoint(ckpt)
    eval_envs = envs.make("CartPole-v1", 10)
    best_index = [e.mean_return for e in result.evals].index(result.best_return)
    replayed = evaluate(agent.act, eval_envs, seed=eval_seed(run.seed, best_index))
    assert replayed.mean().item() == result.best_return
    # ...and it generalises: on unseen start states it is far above a random policy (~22).
    fresh = evaluate(agent.act, eval_envs, seed=12345)
    assert fresh.mean() >= 400.0, fresh


def test_dqn_trained_on_the_torch_cartpole_solves_gymnasiums_cartpole(tmp_path):
    (run, cfg), _ = apply_preset("dqn", "CartPole-v1", RunConfig(env="CartPole-v1"), DQNConfig())
    run.env, run.seed, run.device, run.progress = "rlplay/CartPole-v1", 1, "cpu", False
    run.runs_dir, run.target_return = str(tmp_path), 475.0
    result = train_dqn(run, cfg)
    assert result.stopped_by == "target_return", result.evals
    # Rebuilt from its checkpoint, the policy solves Gymnasium's own CartPole-v1 too.
    ckpt, _ = load_checkpoint(result.run_dir, prefer="best.pt")
    returns = evaluate(dqn_from_checkpoint(ckpt).act, envs.make("CartPole-v1", 10), seed=99)
    assert returns.mean() >= 400.0, returns
