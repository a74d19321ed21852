"""The on-policy loop's rollout bookkeeping: what each update is fed."""

import pytest
import torch

import train.onpolicy as onpolicy
from agents.pg import PGAgent, PGConfig, RewardScaler
from train.config import RunConfig
from train.onpolicy import train_pg
from train.presets import apply_preset

NUM_ENVS, NUM_STEPS, ROLLOUTS = 2, 16, 3


@pytest.mark.parametrize(
    "algo, env, critic",
    [("ppo", "CartPole-v1", True), ("ppo", "Pendulum-v1", True), ("reinforce", "CartPole-v1", False)],
)
def test_each_update_gets_the_log_probs_and_values_of_its_steps(algo, env, critic, tmp_path, monkeypatch):
    """The loop samples actions without their log-probabilities and scores the whole rollout
    after it: every stored log-prob and value must be what that step's own forward gave when
    the action was drawn, in (T, N) order (0 for the value without a critic)."""
    per_step: list[tuple[torch.Tensor, torch.Tensor]] = []
    fed: list[tuple] = []
    explore, update = PGAgent.explore, PGAgent.update

    def recording_explore(self, obs_N, noise_NA):
        action_N = explore(self, obs_N, noise_NA)
        with torch.no_grad():
            logprob_N, _, value_N = self.net.evaluate_actions(obs_N, action_N)
        per_step.append((logprob_N, value_N if critic else torch.zeros_like(value_N)))
        return action_N

    def recording_update(self, batch):
        logprob_B, value_B = (torch.cat(column) for column in zip(*per_step))
        # The batch views the rollout buffer, which the next rollout overwrites.
        fed.append((batch.logprob.clone(), batch.value.clone(), logprob_B, value_B))
        per_step.clear()
        return update(self, batch)

    monkeypatch.setattr(PGAgent, "explore", recording_explore)
    monkeypatch.setattr(PGAgent, "update", recording_update)
    (run, cfg), _ = apply_preset(algo, env, RunConfig(env=env), PGConfig())
    run.seed, run.device, run.progress, run.runs_dir = 3, "cpu", False, str(tmp_path)
    run.num_envs, run.total_steps, run.eval_every = NUM_ENVS, ROLLOUTS * NUM_ENVS * NUM_STEPS, 0
    cfg.num_steps, cfg.critic = NUM_STEPS, critic
    cfg.norm_obs = True  # its statistics move between rollouts: scoring must use the rollout's
    train_pg(run, cfg, algo=algo)

    assert len(fed) == ROLLOUTS
    for stored_logprob_B, stored_value_B, logprob_B, value_B in fed:
        assert stored_logprob_B.shape == (NUM_ENVS * NUM_STEPS,)
        assert logprob_B.std() > 0  # different steps: a mix-up of their order would show
        # Batched and per-step forwards may round differently.
        torch.testing.assert_close(stored_logprob_B, logprob_B, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stored_value_B, value_B, rtol=1e-5, atol=1e-6)
        if critic:
            assert value_B.abs().max() > 0


@pytest.mark.parametrize("anneal", [True, False])
def test_learning_rate_and_clip_range_anneal_linearly_per_rollout(anneal, tmp_path, monkeypatch):
    # Each update runs at lr · (1 − step / total) and, with anneal_clip (rl-zoo's `lin_0.2`), at
    # ε · (1 − step / total), read at the start of its rollout: 0, 32 and 64 of 96 steps here.
    seen = []
    update = PGAgent.update

    def recording_update(self, batch):
        seen.append((self.optimizer.param_groups[0]["lr"], self.clip_coef))
        return update(self, batch)

    monkeypatch.setattr(PGAgent, "update", recording_update)
    run = RunConfig(env="CartPole-v1", num_envs=NUM_ENVS, total_steps=ROLLOUTS * NUM_ENVS * NUM_STEPS,
                    eval_every=0, progress=False, device="cpu", runs_dir=str(tmp_path))
    cfg = PGConfig(num_steps=NUM_STEPS, num_minibatches=2, update_epochs=1, learning_rate=3e-3,
                   clip_coef=0.2, anneal_lr=anneal, anneal_clip=anneal)
    train_pg(run, cfg, algo="ppo")
    fractions = [1.0, 2 / 3, 1 / 3] if anneal else [1.0] * 3
    lrs, clips = zip(*seen)
    assert lrs == pytest.approx([3e-3 * f for f in fractions])
    assert clips == pytest.approx([0.2 * f for f in fractions])


@pytest.mark.parametrize("task", ["CartPole-v1", "Pendulum-v1"])  # Pendulum: all truncated
def test_norm_reward_feeds_gae_the_rewards_scaled_as_they_were_collected(task, tmp_path, monkeypatch):
    # The loop stores raw rewards and scales each rollout after it: GAE must see exactly what a
    # scaler fed the raw rollouts in order, with every episode end (truncations too), gives.
    raw, seen = [], []

    class Recording(RewardScaler):
        def scale(self, reward_TN, done_TN):
            raw.append(reward_TN.clone())
            return super().scale(reward_TN, done_TN)

    real_gae = onpolicy.compute_gae

    def spy(reward_TN, value_TN, next_value_TN, terminated_TN, done_TN, *rest):
        seen.append((reward_TN.clone(), terminated_TN.clone(), done_TN.clone()))
        return real_gae(reward_TN, value_TN, next_value_TN, terminated_TN, done_TN, *rest)

    monkeypatch.setattr(onpolicy, "RewardScaler", Recording)
    monkeypatch.setattr(onpolicy, "compute_gae", spy)
    (run, cfg), _ = apply_preset("ppo", task, RunConfig(env=task), PGConfig())
    run.seed, run.device, run.progress, run.runs_dir = 1, "cpu", False, str(tmp_path)
    run.num_envs, run.total_steps, run.eval_every = 2, 1_024, 0
    cfg.num_steps, cfg.num_minibatches, cfg.norm_reward = 128, 4, True
    train_pg(run, cfg, algo="ppo")
    assert len(raw) == len(seen) == 4
    if task == "Pendulum-v1":  # 200-step episodes: truncated inside the rollouts
        assert any((done & ~terminated).any() for _, terminated, done in seen)
    else:  # CartPole pays 1 a step; the scaler sees it raw
        assert all(torch.equal(r, torch.ones_like(r)) for r in raw)
    reference = RewardScaler(2, cfg.gamma, "cpu")
    for raw_TN, (reward_TN, _, done_TN) in zip(raw, seen):
        torch.testing.assert_close(reward_TN, reference.scale(raw_TN, done_TN))
    assert not torch.allclose(seen[-1][0], raw[-1])  # scaled
