"""collect -> pretrain -> train --init-from through the installed `rlplay`, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.checkpoint import LATEST, load_checkpoint
from train_testlib import event_files, read_events, run_many, scalar_steps

RLPLAY = str(Path(sys.executable).with_name("rlplay"))


def rlplay(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([RLPLAY, *args], cwd=cwd, text=True, capture_output=True, timeout=300,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("workflow")
    steps = {
        "collect": ["collect", "scripted", "--env", "CartPole-v1", "--episodes", "4",
                    "--out", "data/cartpole-expert"],
        "pretrain": ["pretrain", "--data", "data/cartpole-expert", "--task", "bc", "--net", "ppo",
                     "--hidden", "16", "16", "--max-epochs", "5", "--eval-episodes", "2",
                     "--run-name", "bc", "--no-progress", "--device", "cpu"],
        "train": ["train", "ppo", "--env", "CartPole-v1", "--init-from", "runs/bc",
                  "--freeze", "trunk", "--hidden", "16", "16", "--num-envs", "2",
                  "--num-steps", "32", "--total-steps", "256", "--eval-every", "128",
                  "--eval-episodes", "2", "--run-name", "ppo", "--no-progress", "--device", "cpu"],
    }
    results = {}
    for name, args in steps.items():  # each needs the one before
        results[name] = rlplay(*args, cwd=cwd)
        assert results[name].returncode == 0, (name, results[name].stderr)
    return cwd, results


def test_collect_says_what_it_recorded(workflow):
    cwd, results = workflow
    out = results["collect"].stdout
    assert "recorded 4 episodes, 2000 steps of CartPole-v1 (scripted, ε = 0.0)" in out
    assert "return: 500.0 ± 0.0" in out and "dataset: data/cartpole-expert" in out
    assert {p.name for p in (cwd / "data" / "cartpole-expert").iterdir()} == {
        "metadata.json", "episodes.npz"}


def test_pretrain_reports_and_logs_its_curves(workflow):
    cwd, results = workflow
    out = results["pretrain"].stdout
    assert re.search(r"kept epoch \d: validation loss [\d.]+, accuracy [\d.]+", out)
    assert re.search(r"cloned policy: return [\d.]+ ± [\d.]+ over 2 episodes \(random actions", out)
    # With the network flags pretrain was given: the train command fits the weights as printed.
    assert "transfer:    rlplay train ppo --env CartPole-v1 --init-from runs/bc --hidden 16 16\n" in out
    events = read_events(event_files(cwd / "runs" / "bc")[0])
    for tag in ("pretrain/train_loss", "pretrain/val_loss", "pretrain/val_accuracy"):
        assert scalar_steps(events, tag) == [1, 2, 3, 4, 5], tag


def test_train_from_the_pretrained_net_names_its_tensors_and_keeps_the_trunk(workflow):
    cwd, results = workflow
    out = results["train"].stdout
    assert "init from runs/bc/best.pt: 6 tensors loaded, 6 left at initialisation" in out
    assert "  loaded  actor_trunk.0.0.weight (16, 4)" in out
    assert "  at init value_head.bias (1,)" in out
    assert "frozen: actor_trunk (4 tensors)" in out
    assert "finished (total_steps) at step 256" in out
    pretrained = load_checkpoint(cwd / "runs" / "bc")[0]["state"]
    trained = load_checkpoint(cwd / "runs" / "ppo" / LATEST)[0]["agent"]["net"]
    assert all(torch.equal(trained[k], pretrained[k]) for k in pretrained if "actor_trunk" in k)


BAD = {  # name: (arguments after `rlplay`, the one-line error it must give)
    "other_env": (["train", "ppo", "--env", "Acrobot-v1", "--init-from", "runs/bc"],
                  r"pretrained on data/cartpole-expert\) comes from CartPole-v1 .*not from Acrobot-v1"),
    "other_shapes": (["train", "ppo", "--env", "CartPole-v1", "--init-from", "runs/bc"],  # preset: 64, 64
                     r"cannot init from runs/bc/best\.pt: its network does not match the agent's "
                     r"\(hidden \(16, 16\) there, \(64, 64\) here"),
    "no_data": (["pretrain", "--data", "data/nope"], r"dataset data/nope does not exist"),
}


@pytest.fixture(scope="module")
def afterwards(workflow):
    """Replay of the cloned policy and the bad inputs, all at once."""
    cwd, _ = workflow
    commands = {
        "replay": [RLPLAY, "replay", "runs/bc", "--episodes", "1"],
        "trunk_only": [RLPLAY, "train", "ppo", "--env", "CartPole-v1", "--init-from", "runs/bc",
                       "--init-parts", "trunk", "--hidden", "16", "16", "--num-envs", "2",
                       "--num-steps", "32", "--total-steps", "64", "--eval-every", "0",
                       "--eval-episodes", "1", "--run-name", "trunk", "--no-progress",
                       "--device", "cpu"],
    }
    for name, (args, _) in BAD.items():
        commands[name] = [RLPLAY, *args, "--runs-dir", "bad_runs", "--no-progress"]
    return cwd, run_many(commands, cwd)


def test_replay_plays_the_cloned_policy(afterwards):
    _, results = afterwards
    proc = results["replay"]
    assert proc.returncode == 0, proc.stderr
    assert "mean return over 1 episodes" in proc.stdout


def test_init_parts_trunk_leaves_the_policy_head_at_init(afterwards):
    _, results = afterwards
    proc = results["trunk_only"]
    assert proc.returncode == 0, proc.stderr
    assert "init from runs/bc/best.pt: 4 tensors loaded, 8 left at initialisation" in proc.stdout
    assert "  loaded  actor_trunk.0.2.bias (16,)" in proc.stdout
    assert "  at init policy_head.weight (2, 16)" in proc.stdout


@pytest.mark.parametrize("case", list(BAD))
def test_mismatches_are_one_line_and_exit_2(afterwards, case):
    cwd, results = afterwards
    proc = results[case]
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlplay: error: "), proc.stderr
    assert re.search(BAD[case][1], lines[0]), lines[0]
    assert not (cwd / "bad_runs").exists() or not any((cwd / "bad_runs").iterdir())


@pytest.mark.parametrize("flags, changed", [
    (["--unfreeze-after", "100"], "unfreeze_after"),
    (["--init-from", "runs/bc", "--unfreeze-after", "100"], "unfreeze_after"),
])
def test_resume_keeps_the_freeze_settings(workflow, capsys, monkeypatch, flags, changed):
    from train.cli import main

    cwd, _ = workflow
    monkeypatch.chdir(cwd)
    assert main(["train", "ppo", "--resume", "runs/ppo", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rlplay: error: --resume keeps the run's {changed}; drop those flags or start "
                   "a new run"]
