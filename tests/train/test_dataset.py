"""Datasets: what `collect` records is what the env did, the files round-trip exactly, and every
broken or foreign dataset is refused with one line."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

from train.collect import CollectArgs, collect, record
from train.common import make_envs
from train.config import RunConfig
from train.dataset import ARRAYS, METADATA, check_matches, load_dataset, save_dataset
from train.errors import UserError


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """7 scripted CartPole episodes with ε-noise from 3 envs, saved and loaded back."""
    path = tmp_path_factory.mktemp("data") / "cartpole"
    data = collect(CollectArgs("scripted", out=str(path), env="CartPole-v1", episodes=7,
                               epsilon=0.3, num_envs=3, seed=5, device="cpu"))
    save_dataset(path, data)
    return data, path


def test_round_trip_gives_identical_arrays_and_metadata(recorded):
    data, path = recorded
    loaded = load_dataset(path)
    for name in ("observations", "actions", "rewards", "terminations", "truncations",
                 "episode_lengths"):
        a, b = getattr(data, name), getattr(loaded, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert loaded.env_id == "CartPole-v1"
    env = gym.make("CartPole-v1")
    assert loaded.observation_space == env.observation_space
    assert loaded.action_space == env.action_space
    assert loaded.info == {"source": "scripted", "epsilon": 0.3, "seed": 5}
    assert loaded.num_episodes == 7 and loaded.num_steps == data.episode_lengths.sum()


def test_episodes_are_what_the_env_did(recorded):
    # Episode 0 is env 0's first: reset with seed 5. Replaying its actions in a plain Gymnasium
    # env must give the same observations, rewards and ending, step for step.
    data, _ = recorded
    n = int(data.episode_lengths[0])
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=5)
    assert np.array_equal(obs, data.observations[0])
    for t in range(n):
        obs, reward, terminated, truncated, _ = env.step(int(data.actions[t]))
        assert np.array_equal(obs, data.observations[t + 1])
        assert (reward, terminated, truncated) == (
            data.rewards[t], data.terminations[t], data.truncations[t])
    # obs / next_obs pair each step with its own true next observation, never across episodes.
    assert np.array_equal(data.next_obs[: n], data.observations[1 : n + 1])
    assert np.array_equal(data.obs[n], data.observations[n + 1])  # episode 1 starts after 0's final obs
    # ε = 0.3 mixed random actions into the scripted expert's: both actions occur, and the
    # expert's choice is not always taken.
    expert = (data.obs[:, 2] + 0.5 * data.obs[:, 3] > 0).astype(np.int64)
    agree = (expert == data.actions).mean()
    assert 0.75 < agree < 0.95  # ~0.85 expected: 0.7 + 0.3 / 2


def test_episodes_end_where_they_end(recorded):
    data, _ = recorded
    ends = data.episode_starts + data.episode_lengths - 1
    done = data.terminations | data.truncations
    assert done[ends].all() and done.sum() == data.num_episodes
    assert np.allclose(data.episode_returns, data.episode_lengths)  # CartPole pays 1 per step


def test_random_source_and_policy_checkpoint_errors(tmp_path):
    data = collect(CollectArgs("random", out="x", env="Acrobot-v1", episodes=2, num_envs=2,
                               device="cpu"))
    assert data.num_episodes == 2 and set(np.unique(data.actions)) == {0, 1, 2}
    with pytest.raises(UserError, match="collect scripted needs --env"):
        collect(CollectArgs("scripted", out="x"))
    with pytest.raises(UserError, match="no scripted policy for Pendulum-v1"):
        collect(CollectArgs("scripted", out="x", env="Pendulum-v1"))
    with pytest.raises(UserError, match="checkpoint or run folder nope does not exist"):
        collect(CollectArgs("nope", out="x"))


def test_dataset_of_another_env_is_refused(recorded):
    data, _ = recorded
    acrobot = gym.make("Acrobot-v1")
    with pytest.raises(UserError, match=r"^dataset d comes from CartPole-v1 \(Box.*\), not from "
                                        r"Acrobot-v1 \(Box.*\(6,\).*Discrete\(3\)\)$"):
        check_matches("dataset d", data.env_id, data.observation_space, data.action_space,
                      "Acrobot-v1", acrobot.observation_space, acrobot.action_space)
    # The same task under the torch-native id is the same env; other spaces are not.
    cartpole = gym.make("CartPole-v1")
    check_matches("d", data.env_id, data.observation_space, data.action_space,
                  "rlplay/CartPole-v1", cartpole.observation_space, cartpole.action_space)
    with pytest.raises(UserError, match="has the spaces of CartPole-v1"):
        check_matches("d", data.env_id, data.observation_space, data.action_space,
                      "CartPole-v1", cartpole.observation_space, gym.spaces.Discrete(3))


def _set(index, value):
    def change(a):
        a = a.copy()
        a[index] = value
        return a

    return change


# Content that parses but is wrong: each array rewritten and declared as it now is.
REWRITES = {
    "float_terminations": ("terminations", lambda a: a.astype(np.float32)),
    "float_lengths": ("episode_lengths", lambda a: a.astype(np.float64)),
    "action_out_of_range": ("actions", _set(3, 2)),
    "nan_obs": ("observations", _set((4, 1), np.nan)),
    "obs_out_of_bounds": ("observations", _set((5, 0), 100.0)),
    "nan_reward": ("rewards", _set(0, np.inf)),
}


def _broken(path, tmp_path, how: str):
    bad = tmp_path / how
    shutil.copytree(path, bad)
    meta = json.loads((bad / METADATA).read_text())
    if how == "version":
        meta["version"] = 99
    elif how == "format":
        meta["format"] = "something-else"
    elif how == "counts":
        meta["num_steps"] += 1
    elif how == "truncated":
        raw = (bad / ARRAYS).read_bytes()
        (bad / ARRAYS).write_bytes(raw[: len(raw) // 2])
    elif how == "pickled":
        arrays = dict(np.load(bad / ARRAYS))
        arrays["rewards"] = np.array([{"payload": 1}] * len(arrays["rewards"]), dtype=object)
        np.savez(bad / ARRAYS, **arrays)
    elif how == "missing_arrays":
        (bad / ARRAYS).unlink()
    elif how == "no_num_episodes":
        del meta["num_episodes"]
    elif how == "declared_dtype":
        meta["arrays"]["rewards"]["dtype"] = "float64"
    elif how in REWRITES:
        name, change = REWRITES[how]
        arrays = dict(np.load(bad / ARRAYS))
        arrays[name] = change(arrays[name])
        np.savez(bad / ARRAYS, **arrays)
        meta["arrays"][name] = {"shape": list(arrays[name].shape), "dtype": str(arrays[name].dtype)}
    (bad / METADATA).write_text(json.dumps(meta))
    return bad


@pytest.mark.parametrize("how, message", [
    ("version", r"is an rlplay dataset of version 99; this rlplay reads version 1$"),
    ("format", r"is not an rlplay dataset$"),
    ("counts", r"is inconsistent: 7 episodes of \d+ steps, the metadata says 7 of \d+$"),
    ("truncated", r"episodes\.npz is truncated or corrupt"),
    ("pickled", r"episodes\.npz cannot be read without pickle; refusing it"),
    ("missing_arrays", r"has no episodes\.npz; the dataset is incomplete$"),
    ("no_num_episodes", r"is incomplete or corrupt \(missing or bad 'num_episodes'\)$"),
    ("declared_dtype", r"inconsistent: rewards is float32 of shape \(\d+,\), the metadata says "
                       r"float64 of shape"),
    ("float_terminations", r"inconsistent: terminations are float32, expected bool$"),
    ("float_lengths", r"inconsistent: episode_lengths are float64, expected integers$"),
    ("action_out_of_range", r"inconsistent: actions\[3\] is NaN or outside Discrete\(2\)$"),
    ("nan_obs", r"inconsistent: observations\[4\] is NaN or outside Box"),
    ("obs_out_of_bounds", r"inconsistent: observations\[5\] is NaN or outside Box"),
    ("nan_reward", r"inconsistent: rewards hold NaN or infinite values$"),
])
def test_broken_datasets_are_refused_in_one_line(recorded, tmp_path, how, message):
    _, path = recorded
    with pytest.raises(UserError, match=message) as info:
        load_dataset(_broken(path, tmp_path, how))
    assert "\n" not in str(info.value)


def test_missing_dataset_and_existing_out(recorded, tmp_path):
    data, path = recorded
    with pytest.raises(UserError, match=r"dataset \S+ does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(UserError, match="already exists; pick another --out"):
        save_dataset(path, data)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=r"^cannot write \S+/file/sub/data: \S+/file is a file, not a folder$"):
        save_dataset(tmp_path / "file" / "sub" / "data", data)


def test_collect_refuses_an_existing_out_before_recording(recorded, monkeypatch):
    from train import collect as collect_module

    def must_not_record(args):
        raise AssertionError("recorded before checking --out")

    monkeypatch.setattr(collect_module, "collect", must_not_record)
    with pytest.raises(UserError, match="already exists; pick another --out"):
        collect_module.collect_command(["scripted", "--env", "CartPole-v1", "--out", str(recorded[1])])


def test_an_episode_that_never_ends_is_a_clear_error_not_a_hang():
    # CartPole's episodes last 8 steps or more: a limit of 3 stands for an env without a time
    # limit (CliffWalking-v1) under a greedy policy that never reaches the goal.
    envs = make_envs(RunConfig(env="CartPole-v1"), torch.device("cpu"), 2)
    always_left = lambda obs: torch.zeros(obs.shape[0], dtype=torch.int64)  # noqa: E731
    with pytest.raises(UserError, match=r"an episode reached 3 steps without ending"):
        record(envs, always_left, episodes=2, seed=0, max_steps=3)
    assert len(record(envs, always_left, episodes=2, seed=0, max_steps=50)) == 2  # they end
    envs.close()
