"""Pretraining: behaviour cloning learns the expert, the dynamics task learns without one, and
each fits exactly the tensors it says it does."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from train.checkpoint import BEST, load_checkpoint
from train.collect import CollectArgs, collect, record
from train.common import make_envs
from train.config import RunConfig
from train.dataset import from_episodes, load_dataset, save_dataset
from train.errors import TrainingDiverged, UserError
from train.pretrain import (
    PretrainConfig, build_net, greedy_policy, pretrain, pretrained_net, split_episodes,
    trained_names,
)
from train_testlib import event_files, read_events, scalar_values


@pytest.fixture(scope="module")
def expert_data(tmp_path_factory):
    """8 episodes (4,000 steps) of the scripted CartPole expert, seeded."""
    path = tmp_path_factory.mktemp("data") / "cartpole-expert"
    save_dataset(path, collect(CollectArgs("scripted", out=str(path), env="CartPole-v1",
                                           episodes=8, seed=3, device="cpu")))
    return path


def _config(data, runs, **kw) -> PretrainConfig:
    base = dict(data=str(data), runs_dir=str(runs), progress=False, device="cpu", seed=1,
                hidden=(32, 32), max_epochs=30, batch_size=128, eval_episodes=10)
    return PretrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def bc(expert_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    return pretrain(_config(expert_data, runs, run_name="bc"), log=lambda _: None)


def test_bc_reaches_high_validation_accuracy_and_the_clone_plays_well(bc):
    assert bc.val_accuracy >= 0.95
    cloned, random = bc.cloned_return[0], bc.random_return[0]
    # CartPole: random actions last ~20 steps; the expert 500. The clone must be far above random.
    assert random < 50
    assert cloned >= 400 and cloned >= 8 * random


def test_bc_writes_its_curves_and_a_checkpoint_the_agents_share(bc):
    (events_file,) = event_files(bc.run_dir)
    events = read_events(events_file)
    train = scalar_values(events, "pretrain/train_loss")
    val = scalar_values(events, "pretrain/val_loss")
    acc = scalar_values(events, "pretrain/val_accuracy")
    assert len(train) == len(val) == len(acc) == bc.epochs >= 2
    assert train[-1][1] < train[0][1]  # it learnt
    best_val = min(v for _, v in val)
    assert bc.val_loss == pytest.approx(best_val, rel=1e-5)  # the best epoch's weights were kept
    ckpt, file = load_checkpoint(bc.run_dir, prefer=BEST)  # the agents' format, weights_only
    assert file.name == BEST and ckpt["algo"] == "pretrain" and ckpt["task"] == "bc"
    assert ckpt["trained"] == bc.trained
    assert ckpt["dataset"]["env_id"] == "CartPole-v1" and ckpt["dataset"]["num_episodes"] == 8


def test_bc_fits_the_actor_only():
    net, _ = build_net("ppo", "CartPole-v1", *_spaces(), hidden=(8,), device="cpu")
    assert trained_names(net, "bc") == [
        "actor_trunk.0.0.weight", "actor_trunk.0.0.bias", "policy_head.weight", "policy_head.bias"]
    assert trained_names(net, "dynamics") == ["actor_trunk.0.0.weight", "actor_trunk.0.0.bias"]
    # DQN's preset for CartPole is dueling: a softmax over Q = V + A − mean A never sees V.
    q_net, kwargs = build_net("dqn", "CartPole-v1", *_spaces(), hidden=(8,), device="cpu")
    assert kwargs["dueling"]
    assert trained_names(q_net, "bc") == [
        "trunk.0.0.weight", "trunk.0.0.bias", "advantage.weight", "advantage.bias"]


def _spaces():
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    return env.observation_space, env.action_space


def test_dynamics_task_learns_without_actions_of_an_expert(tmp_path):
    # Random play: no expert. Predicting Δobs (in units of its spread; a constant guess scores
    # ~1.0) must get far below that, and only the trunk is marked for transfer.
    path = tmp_path / "random"
    save_dataset(path, collect(CollectArgs("random", out=str(path), env="CartPole-v1",
                                           episodes=40, num_envs=8, seed=2, device="cpu")))
    result = pretrain(_config(path, tmp_path / "runs", task="dynamics", max_epochs=40),
                      log=lambda _: None)
    assert result.val_loss < 0.1
    assert result.cloned_return is None and result.val_accuracy is None
    assert result.trained == ["actor_trunk.0.0.weight", "actor_trunk.0.0.bias",
                              "actor_trunk.0.2.weight", "actor_trunk.0.2.bias"]
    ckpt, _ = load_checkpoint(result.run_dir)
    assert ckpt["dynamics_head"] is not None


def test_nan_loss_stops_pretraining(expert_data, tmp_path):
    with pytest.raises(TrainingDiverged, match="became NaN or infinite in epoch 1"):
        # ReLU layers (DQN's net) with weights ~1e30 overflow float32 in the first epoch.
        pretrain(_config(expert_data, tmp_path, net="dqn", learning_rate=1e30, max_epochs=2),
                 log=lambda _: None)


def test_pretraining_is_seeded(expert_data, tmp_path):
    runs = [pretrain(_config(expert_data, tmp_path, run_name=f"r{i}", max_epochs=2),
                     log=lambda _: None) for i in range(2)]
    a, b = (load_checkpoint(r.run_dir)[0]["state"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.isclose(runs[0].val_loss, runs[1].val_loss)
    # ...by its seed: another one starts from other weights (an ignored seed would pass above).
    other = pretrain(_config(expert_data, tmp_path, run_name="r2", max_epochs=2, seed=2),
                     log=lambda _: None)
    c = load_checkpoint(other.run_dir)[0]["state"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _pendulum_expert(obs):
    """A smooth made-up controller (B, 1): torque against the angle's sine and the spin. It is
    no good at swinging up (worse than random): the test is about cloning, not solving."""
    return (-1.5 * obs[:, 1:2] - 0.4 * obs[:, 2:3]).clamp(-2.0, 2.0)


def test_bc_on_continuous_actions_fits_the_mean_by_mse(tmp_path):
    # 6 Pendulum episodes (1,200 steps) of a deterministic controller; PPO's Pendulum preset
    # (Gaussian policy, observation normalisation). The loss is the MSE of the Gaussian mean.
    envs = make_envs(RunConfig(env="Pendulum-v1"), torch.device("cpu"), 3)
    try:
        episodes = record(envs, _pendulum_expert, episodes=6, seed=5)
        spaces = envs.single_observation_space, envs.single_action_space
    finally:
        envs.close()
    save_dataset(tmp_path / "data", from_episodes("Pendulum-v1", *spaces, episodes))
    result = pretrain(_config(tmp_path / "data", tmp_path / "runs", max_epochs=60, batch_size=64,
                              eval_episodes=2), log=lambda _: None)
    assert result.val_accuracy is None  # no accuracy for continuous actions
    val = scalar_values(read_events(event_files(result.run_dir)[0]), "pretrain/val_loss")
    data = load_dataset(tmp_path / "data")
    expert_actions = torch.as_tensor(data.actions)  # (M, 1)
    constant_guess = float(expert_actions.var(unbiased=False))  # MSE of predicting the mean
    assert val[0][1] > 5 * result.val_loss  # it learnt: the best epoch is far below the first
    assert result.val_loss < 0.02 * constant_guess
    ckpt, _ = load_checkpoint(result.run_dir)
    assert "obs_norm.mean" in ckpt["trained"] and "log_std" not in ckpt["trained"]
    # The cloned policy's actions (the Gaussian mean, clipped to the Box) are the expert's.
    policy = greedy_policy(pretrained_net(ckpt, "cpu"), data.action_space)
    with torch.no_grad():
        cloned = policy(torch.as_tensor(data.obs))
    assert cloned.shape == expert_actions.shape
    assert float((cloned - expert_actions).abs().mean()) < 0.05  # on a torque range of [-2, 2]


def _numbered(episodes: int, length: int = 5):
    """A CartPole-shaped dataset whose observations name their episode."""
    space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    eps = [{"observations": np.full((length + 1, 4), k, np.float32),
            "actions": np.zeros(length, np.int64), "rewards": np.ones(length, np.float32),
            "terminations": np.arange(length) == length - 1, "truncations": np.zeros(length, bool)}
           for k in range(episodes)]
    return from_episodes("CartPole-v1", space, gym.spaces.Discrete(2), eps)


def test_split_keeps_whole_episodes_apart():
    data = _numbered(10)
    for val_fraction in (0.1, 0.5, 0.99):
        train, val = split_episodes(data, val_fraction, seed=0, device="cpu")
        in_train, in_val = set(train.obs[:, 0].tolist()), set(val.obs[:, 0].tolist())
        assert in_train and in_val and not in_train & in_val
        assert in_train | in_val == set(range(10)) and len(train.obs) + len(val.obs) == 50


def test_one_episode_is_refused_and_leaves_no_run_folder(tmp_path):
    path = tmp_path / "one"
    save_dataset(path, _numbered(1))
    with pytest.raises(UserError, match=r"holds 1 episode; .* needs 2 or more"):
        pretrain(_config(path, tmp_path / "runs"), log=lambda _: None)
    assert not (tmp_path / "runs").exists()


def test_bad_run_name_and_existing_run_folder(expert_data, tmp_path):
    with pytest.raises(ValueError, match="run_name must be a plain folder name, got 'a/b'"):
        _config(expert_data, tmp_path, run_name="a/b")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(UserError, match=r"^run folder \S+/taken already exists; pick another "
                                        r"--run-name or remove it$"):
        pretrain(_config(expert_data, tmp_path, run_name="taken"), log=lambda _: None)


def test_network_settings_follow_train_and_foreign_ones_are_refused():
    net, kwargs = build_net("ppo", "CartPole-v1", *_spaces(), device="cpu", hidden=(8,),
                            activation="relu", shared_trunk=True, norm_obs=True)
    assert (kwargs["activation"], kwargs["shared"], kwargs["norm_obs"]) == ("relu", True, True)
    assert net.obs_norm is not None
    _, kwargs = build_net("dqn", "CartPole-v1", *_spaces(), device="cpu", dueling=False)
    assert kwargs["dueling"] is False  # CartPole's DQN preset is dueling
    with pytest.raises(UserError, match=r"^--net ppo has no --dueling"):
        build_net("ppo", "CartPole-v1", *_spaces(), device="cpu", dueling=True)
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(UserError, match=r"--net dqn needs discrete actions"):
        build_net("dqn", "X-v0", _spaces()[0], box, device="cpu")
    with pytest.raises(UserError, match=r"^X-v0: action space .* is not Discrete or a 1-D Box"):
        build_net("ppo", "X-v0", _spaces()[0], gym.spaces.Box(-1, 1, (2, 2)), device="cpu")


def test_malformed_pretrained_checkpoint_is_one_line(bc):
    ckpt, _ = load_checkpoint(bc.run_dir)
    del ckpt["net_kwargs"]
    with pytest.raises(UserError, match=r"incomplete or corrupt \(no 'net_kwargs'\)"):
        pretrained_net(ckpt, "cpu")


@pytest.mark.parametrize("algo, settings, expected", [
    ("dqn", {"hidden": (32, 32), "dueling": False}, dict(hidden=(32, 32), dueling=False)),
    ("dqn", {"dueling": True}, dict(dueling=True)),
    ("ppo", {"activation": "relu", "shared_trunk": True, "norm_obs": False},
     dict(activation="relu", shared_trunk=True, norm_obs=False)),
])
def test_transfer_hint_carries_the_network_flags_train_parses(algo, settings, expected):
    # The printed `rlplay train … --init-from` lacked them: with `--dueling False` given to
    # pretrain, running it failed on a network mismatch.
    from train.cli import parse_train_args
    from train.pretrain import train_flags

    argv = ["--env", "CartPole-v1"] + " ".join(train_flags(settings)).split()
    _, cfg, _, _ = parse_train_args(algo, argv)
    assert {name: getattr(cfg, name) for name in expected} == expected


@pytest.mark.parametrize("source, task", [("random", "dynamics"), ("scripted", "bc")])
def test_collect_suggests_the_task_its_data_serves(tmp_path, capsys, source, task):
    # Random actions are nothing to clone: collect suggested `--task bc` for them too.
    from train.cli import main

    out = tmp_path / "data"
    assert main(["collect", source, "--env", "CartPole-v1", "--episodes", "2", "--out", str(out)]) == 0
    assert f"pretrain: rlplay pretrain --data {out} --task {task}\n" in capsys.readouterr().out
