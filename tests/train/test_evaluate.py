"""Evaluation start states: fresh each time, and never a training env's."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

import envs
from train.collect import CollectArgs
from train.config import MAX_SEED, RunConfig
from train.play import ReplayArgs
from train.pretrain import PretrainConfig
from train.evaluate import eval_seed, evaluate


@pytest.mark.parametrize("env_id", ["CartPole-v1", "rlplay/CartPole-v1"])
def test_evaluations_share_no_start_state(env_id):
    # Seeds 1_000_000 + 1000·seed + k gave evaluation k + 1 nine of evaluation k's ten start
    # states (env i resets with seed + i), so consecutive evaluations were mostly the same test.
    eval_envs = envs.make(env_id, 10)
    starts = [eval_envs.reset(seed=eval_seed(run_seed, k))[0] for run_seed in (1, 2) for k in range(5)]
    rows = torch.cat(starts)
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0]
    # ...and an evaluation is reproducible: the best checkpoint can be re-scored on its states.
    assert torch.equal(eval_envs.reset(seed=eval_seed(2, 3))[0], starts[8])


def test_eval_seeds_stay_clear_of_training_seeds():
    # Training env i resets with seed + i (+ the steps so far on a resume without env state);
    # eval env i with eval_seed + i, which NumPy's legacy seeding (MinAtar) must still take.
    seeds = [eval_seed(s, k) for s in (0, 1, 7, MAX_SEED) for k in range(200)]
    assert min(seeds) >= 2**31 > MAX_SEED + 2**30
    assert max(seeds) + 2**16 <= 2**32
    assert len(set(seeds)) == len(seeds)


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
@pytest.mark.parametrize("make", [
    lambda seed: RunConfig(seed=seed),
    lambda seed: PretrainConfig(data="d", seed=seed),
    lambda seed: CollectArgs(source="random", out="d", seed=seed),
    lambda seed: ReplayArgs(path="r", seed=seed),
], ids=["train", "pretrain", "collect", "replay"])
def test_seed_out_of_range_is_refused(make, seed):
    # A negative seed was a NumPy traceback at the first reset.
    with pytest.raises(ValueError, match=r"seed must be in \[0, "):
        make(seed)


def test_an_evaluation_that_never_ends_is_cut_and_says_so(capsys):
    # CliffWalking-v1 has no time limit: always moving left from the start never ends. Such an
    # evaluation ran 100,000 steps silently.
    cliff = envs.make("CliffWalking-v1", 2)
    left = lambda obs: torch.full((obs.shape[0],), 3)
    returns = evaluate(left, cliff, seed=0, max_steps=50)
    assert returns.tolist() == [-50.0, -50.0]  # -1 a step, so far
    assert "note: evaluation cut 2 of 2 episodes at 50 steps" in capsys.readouterr().out
    # An evaluation whose episodes all end says nothing.
    evaluate(lambda obs: torch.zeros(obs.shape[0], dtype=torch.int64), envs.make("CartPole-v1", 2), seed=0)
    assert capsys.readouterr().out == ""


def test_each_return_counts_its_own_episode_only():
    # Always pushing left ends CartPole's episodes after different numbers of steps; the envs
    # that finish first keep stepping (autoreset) and their later rewards must not count.
    left = lambda obs: torch.zeros(obs.shape[0], dtype=torch.int64)
    returns = evaluate(left, envs.make("CartPole-v1", 4), seed=100)
    lengths = []
    for i in range(4):  # env i of the vector env resets with seed + i
        env, steps, done = gym.make("CartPole-v1"), 0, False
        env.reset(seed=100 + i)
        while not done:
            _, _, terminated, truncated, _ = env.step(0)
            steps, done = steps + 1, terminated or truncated
        lengths.append(float(steps))
    assert len(set(lengths)) > 1  # the episodes end at different steps
    assert returns.tolist() == lengths
