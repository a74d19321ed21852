"""`rlplay` run as a user runs it: a subprocess, its exit code, what it prints, what it writes.

Each subprocess spends ~2 s of CPU importing torch and friends, so the one-shot commands are
started together (`wave`, then `replays`) and each test reads its command's result.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from train.checkpoint import BEST, LATEST, load_checkpoint
from train.cli import main
from train_testlib import ENV, RLPLAY, WIDTH, run_many

# The tiny run of train_testlib as flags; CartPole's preset supplies everything else.
TINY_FLAGS = [
    "--env", "CartPole-v1", "--num-envs", "2", "--total-steps", "600", "--eval-every", "300",
    "--eval-episodes", "2", "--log-every", "100", "--no-progress", "--device", "cpu",
    "--hidden", "16", "16", "--learning-starts", "100", "--buffer-size", "1000",
    "--batch-size", "16", "--train-frequency", "4", "--gradient-steps", "1",
    "--target-update-interval", "20", "--exploration-steps", "300",
]


BAD = {  # name: (arguments after `rlplay`, the one-line error it must give)
    "unknown_env": (["train", "dqn", *TINY_FLAGS, "--env", "CartPol-v1"],
                    r"unknown environment 'CartPol-v1'; did you mean CartPole-v1\b"),
    "continuous": (["train", "dqn", *TINY_FLAGS, "--env", "Pendulum-v1"],
                   r"DQN needs a discrete action space; Pendulum-v1 has Box"),
    "cuda": (["train", "dqn", *TINY_FLAGS, "--device", "cuda"],
             r"--device cuda requested but CUDA is not available"),
    "replay_missing": (["replay", "nope"], r"checkpoint or run folder nope does not exist"),
    "replay_truncated": (["replay", "truncated.pt"], r"truncated\.pt is truncated or corrupt"),
    "replay_foreign": (["replay", "foreign.pt"], r"foreign\.pt is not an rlplay checkpoint"),
    "resume_missing": (["train", "dqn", "--resume", "nope"],
                       r"checkpoint or run folder nope does not exist"),
    "minibatches": (["train", "ppo", "--env", "CartPole-v1", "--num-envs", "2", "--num-steps", "8",
                     "--num-minibatches", "32", "--no-progress", "--device", "cpu"],
                    r"--num-minibatches 32 exceeds the 16 steps of a rollout \(2 envs x "
                    r"--num-steps 8\); use at most 16"),
    "minibatches_nproc": (["train", "ppo", "--env", "CartPole-v1", "--num-envs", "4",
                           "--nproc", "2", "--num-steps", "4", "--num-minibatches", "16",
                           "--device", "cpu"],
                          r"--num-minibatches 16 exceeds the 8 steps of a rollout \(--num-envs 4 "
                          r"over 2 processes: 2 each x --num-steps 4\); use at most 8"),
    # These said "--num-minibatches 32 exceeds the 0 steps…" / hid the unknown id behind it.
    "nproc_one_env": (["train", "ppo", "--env", "CartPole-v1", "--nproc", "2", "--num-envs", "1"],
                      r"--num-envs 1 must be a multiple of the 2 processes"),
    "nproc_unknown_env": (["train", "ppo", "--env", "CartPol-v1", "--nproc", "2"],
                          r"unknown environment 'CartPol-v1'; did you mean CartPole-v1\b"),
    "replay_fps": (["replay", "nope", "--video", "x.gif", "--fps", "-5"],  # was an OverflowError
                   r"--fps must be at least 1, got -5"),
}


@pytest.fixture(scope="module")
def wave(tmp_path_factory, tiny_run):
    """The tiny training run, a diverging one, the help texts and the bad inputs, all at once."""
    cwd = tmp_path_factory.mktemp("cli")
    data = (tiny_run / LATEST).read_bytes()
    (cwd / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save(torch.nn.Linear(4, 2).state_dict(), cwd / "foreign.pt")
    train = [RLPLAY, "train", "dqn", *TINY_FLAGS, "--runs-dir", str(cwd / "runs")]
    commands = {
        "train": [*train, "--run-name", "tiny"],
        # lr = 1e30: Adam's step is ~lr whatever the gradient, so the weights jump to ~1e30 and
        # the next forward pass overflows float32 (see test_nan.py). Learning starts after the
        # eval at step 300, so there is a good checkpoint to keep.
        "nan": [*train, "--run-name", "nan", "--learning-rate", "1e30", "--learning-starts", "400"],
        "help": [RLPLAY, "--help"],
        "train_help": [RLPLAY, "train", "dqn", "--help"],
        "module": [sys.executable, "-m", "train", "--help"],
    }
    for name, (args, _) in BAD.items():
        if name == "cuda" and torch.cuda.is_available():
            continue
        if "--resume" not in args and args[0] == "train":
            args = [*args, "--runs-dir", str(cwd / "bad_runs")]
        commands[name] = [RLPLAY, *args]
    return cwd, run_many(commands, cwd, WIDTH)


@pytest.fixture(scope="module")
def cli_run(wave):
    """(completed `rlplay train dqn <tiny flags> --run-name tiny`, runs dir, run dir)."""
    cwd, results = wave
    proc = results["train"]
    assert proc.returncode == 0, proc.stderr
    return proc, cwd / "runs", cwd / "runs" / "tiny"


def _unboxed(help_text: str) -> str:
    """tyro's help without its box drawing, on one line: a flag and its help read in order."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", help_text).split())


# --- help -------------------------------------------------------------------------------------


def test_help_lists_the_commands_and_python_m_train_is_rlplay(wave):
    _, results = wave
    top = results["help"]
    assert top.returncode == 0, top.stderr
    for command in ("train", "replay", "bench"):
        assert re.search(rf"^  {command} ", top.stdout, re.M), command
    module = results["module"]
    assert module.returncode == 0 and module.stdout == top.stdout


def test_train_help_lists_flags_with_their_help(wave):
    _, results = wave
    train = results["train_help"]
    assert train.returncode == 0, train.stderr
    text = _unboxed(train.stdout)
    for flag, help_text in [
        ("--learning-rate", "Adam learning rate"), ("--num-envs", "parallel training environments"),
        ("--target-return", "stop once the greedy evaluation's mean return reaches"),
        ("--dueling", "dueling head"), ("--save-buffer", "replay buffer in checkpoints"),
        ("--resume", "continue a run"),
    ]:
        assert re.search(rf"{flag}\b.{{0,40}}{re.escape(help_text)}", text), flag
    # Defaults shown are the preset of --env (CartPole-v1 by default).
    assert re.search(r"--learning-rate FLOAT Adam learning rate [^-]{0,30}\(default: 0\.0023\)", text)


def test_help_shows_the_preset_of_the_env(capsys, monkeypatch):
    # In-process: the console script's own `main`, minus ~2 s of imports.
    monkeypatch.setenv("COLUMNS", WIDTH)
    with pytest.raises(SystemExit) as info:
        main(["train", "dqn", "--env", "Acrobot-v1", "--help"])
    assert info.value.code == 0
    text = _unboxed(capsys.readouterr().out)
    assert "preset for --env (Acrobot-v1)" in text
    assert re.search(r"--learning-rate FLOAT Adam learning rate [^-]{0,30}\(default: 0\.00063\)", text)
    assert re.search(r"--target-update-interval INT gradient steps between target-network updates "
                     r"\(default: 250\)", text)


def test_no_command_prints_usage_and_exits_2(capsys):
    assert main([]) == 2
    assert capsys.readouterr().out.startswith("usage: rlplay COMMAND")


# --- a tiny run and its replay ------------------------------------------------------------------


def test_train_prints_where_everything_is(cli_run):
    proc, runs, run_dir = cli_run
    out = proc.stdout
    assert "preset dqn/CartPole-v1: num_envs=4, total_steps=50000" in out
    assert re.search(r"^overridden by flags: num_envs=2, total_steps=600, .*hidden=\(16, 16\)",
                     out, re.M)
    assert "finished (total_steps) at step 600" in out
    assert f"run folder:  {run_dir}\n" in out
    assert f"checkpoint:  {run_dir / BEST} (latest: {run_dir / LATEST})" in out
    assert f"tensorboard: tensorboard --logdir {runs}\n" in out
    assert f"replay:      rlplay replay {run_dir}\n" in out
    assert "step 300: eval return" in proc.stderr and "step 600: eval return" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_writes_the_run_folder(cli_run):
    _, _, run_dir = cli_run
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", LATEST, BEST} <= names
    assert len([n for n in names if n.startswith("events.out.tfevents.")]) == 1
    assert not [n for n in names if n.endswith(".tmp")]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["num_envs"] == 2 and config["dqn"]["hidden"] == [16, 16]  # flags
    assert config["dqn"]["learning_rate"] == 0.0023 and config["dqn"]["end_epsilon"] == 0.04  # preset
    ckpt, _ = load_checkpoint(run_dir)
    assert ckpt["counters"]["global_step"] == 600


@pytest.fixture(scope="module")
def replays(cli_run, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("replay")
    run_dir = str(cli_run[2])
    return cwd, run_many({
        "gif": [RLPLAY, "replay", run_dir, "--video", "out.gif", "--episodes", "1"],
        "three": [RLPLAY, "replay", run_dir, "--episodes", "3"],
    }, cwd, WIDTH)


def test_replay_writes_a_gif(replays):
    import imageio.v3 as iio

    cwd, results = replays
    proc = results["gif"]
    assert proc.returncode == 0, proc.stderr
    (episode_return,) = [float(r) for r in re.findall(r"^episode 1: return (\S+)$", proc.stdout, re.M)]
    assert "video: out.gif" in proc.stdout
    frames = iio.imread(cwd / "out.gif", index=None)  # (F, H, W, 3)
    # One frame per step but the last; the GIF writer merges frames that render identically
    # (a first step can move the cart by less than a pixel).
    assert 2 <= len(frames) <= episode_return
    assert frames.shape[1:] == (400, 600, 3)
    colours = frames.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)  # (F, H, W)
    assert all(len(np.unique(c)) > 2 for c in colours)  # background, cart, pole, track...
    assert len({f.tobytes() for f in frames}) == len(frames)  # the cart and pole move


def test_replay_prints_returns_and_their_mean(replays, cli_run):
    from train.play import ReplayArgs, replay

    _, results = replays
    proc = results["three"]
    assert proc.returncode == 0, proc.stderr
    returns = [float(r) for r in re.findall(r"^episode \d: return (\S+)$", proc.stdout, re.M)]
    assert len(returns) == 3 and all(r >= 8 for r in returns)
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 3)
    assert f"mean return over 3 episodes: {mean:.1f} ± {std:.1f}" in proc.stdout
    # Seeded: the same three episodes again, here in-process.
    assert replay(ReplayArgs(str(cli_run[2]), episodes=3)) == (returns, [False] * 3)


def test_replay_cuts_an_episode_at_max_steps_and_says_so(cli_run, capsys):
    # CartPole's episodes last 8 steps or more, so 5 cuts each (reward 1 a step); an env without
    # a time limit would otherwise loop forever under a greedy policy (CliffWalking-v1).
    assert main(["replay", str(cli_run[2]), "--episodes", "2", "--max-steps", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("return 5.0 (cut at 5 steps)") == 2, out


def test_a_missing_checkpoint_file_falls_back_to_the_other_and_says_so(cli_run, tmp_path, capsys):
    # Replay (best.pt by default) played latest.pt without a word where best.pt was missing.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LATEST).write_bytes((cli_run[2] / LATEST).read_bytes())
    assert main(["replay", str(tmp_path / "run"), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert f"note: {tmp_path / 'run' / BEST} does not exist; using {tmp_path / 'run' / LATEST}" in out


def test_render_human_without_a_display_is_one_line(cli_run, capsys, monkeypatch):
    # pygame printed an error, played on without a window and exited 0.
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["replay", str(cli_run[2]), "--render", "human"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlplay: error: --render human needs a display") and "\n" not in err


# --- bad input: exit 2, one line on stderr, no traceback -----------------------------------------


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_2(wave, case):
    _, results = wave
    if case not in results:
        pytest.skip("CUDA is available here")
    proc = results[case]
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlplay: error: "), proc.stderr
    assert re.search(BAD[case][1], lines[0]), lines[0]


def test_bad_input_leaves_no_run_folder(wave):
    cwd, _ = wave
    runs = cwd / "bad_runs"
    assert not runs.exists() or not any(runs.iterdir())


BAD_IN_PROCESS = {
    "resume_changes_fixed": (["--resume", "{run}", "--num-envs", "3", "--hidden", "8"],
                             r"--resume keeps the run's hidden, num_envs; drop those flags"),
    "existing_run": (["{tiny}", "--runs-dir", "{runs}", "--run-name", "tiny"],
                     r"run folder \S+/tiny already exists; .*--resume \S+/tiny$"),
    # A finished run resumed (or one told to stop before where it is) ended at once, silently,
    # and rewrote config.json with the smaller total.
    "resume_finished": (["--resume", "{run}"],
                        r"latest\.pt is already at step 600 of --total-steps 600; pass a larger "
                        r"--total-steps to train on"),
    "unknown_algo": (None, r"unknown algorithm 'ppo2'; available: dqn"),
    "unknown_command": (None, r"unknown command 'frobnicate'; commands: train, replay, collect, pretrain, bench"),
}


@pytest.mark.parametrize("case", list(BAD_IN_PROCESS))
def test_more_bad_input_in_process(cli_run, capsys, case):
    # The same `main` as the console script, called in-process to save ~2 s of imports each.
    _, runs, run_dir = cli_run
    args, pattern = BAD_IN_PROCESS[case]
    if case == "unknown_algo":
        argv = ["train", "ppo2"]
    elif case == "unknown_command":
        argv = ["frobnicate"]
    else:
        subs = {"{run}": str(run_dir), "{runs}": str(runs)}
        argv = ["train", "dqn"]
        for arg in args:
            argv += TINY_FLAGS if arg == "{tiny}" else [subs.get(arg, arg)]
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*")}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rlplay: error: "), err
    assert re.search(pattern, err[0]), err[0]
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("*")} == before  # nothing written


def _cli_train(tmp_path: Path, *flags: str) -> list[str]:
    return ["train", "dqn", *TINY_FLAGS, "--runs-dir", str(tmp_path), "--run-name", "x", *flags]


def _never_update(self, batch):
    raise AssertionError("a gradient step ran: the setting was not rejected up front")


def _main_exit_code(argv: list[str]) -> int:
    """`main`'s exit code, also where tyro rejects a value by raising SystemExit itself."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("flag, value", [
    ("--num-envs", "0"), ("--eval-episodes", "0"), ("--buffer-size", "0"), ("--buffer-size", "1"),
    ("--batch-size", "0"), ("--target-update-interval", "0"), ("--train-frequency", "0"),
    ("--learning-starts", "2000"), ("--total-steps", "0"), ("--gamma", "1.5"),
    ("--seed", "-1"),  # was a NumPy traceback at the first reset
    # These trained silently backwards: a negative clip factor or learning rate ascends the loss.
    ("--max-grad-norm", "-1"), ("--final-learning-rate", "-0.01"),
    ("--target-return", "nan"), ("--batch-size", "2000"),  # the buffer holds 1,000
])
def test_nonsense_numbers_are_rejected_up_front(tmp_path, capsys, monkeypatch, flag, value):
    # Unchecked, these crashed with tracebacks, and --train-frequency 0 looped forever in
    # `while steps_since_train >= train_frequency` (update() is patched to fail, not spin).
    from agents import DQNAgent

    monkeypatch.setattr(DQNAgent, "update", _never_update)
    monkeypatch.setenv("COLUMNS", WIDTH)
    assert _main_exit_code(_cli_train(tmp_path, flag, value)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert flag in err or flag[2:].replace("-", "_") in err, err
    assert not (tmp_path / "x").exists()


def test_a_runs_dir_that_cannot_be_made_is_one_line(tmp_path, capsys):
    # A file where the folder should be was a NotADirectoryError traceback.
    (tmp_path / "afile").write_text("")
    assert _main_exit_code(_cli_train(tmp_path, "--runs-dir", str(tmp_path / "afile"))) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"rlplay: error: cannot create the folder \S+/afile/x: Not a directory; "
                        r"pick another --runs-dir", err), err


def test_a_taken_run_name_stops_nproc_before_any_rank_starts(tmp_path, capsys, monkeypatch):
    # Rank 0 alone found the folder taken; rank 1, waiting for it, died with a gloo traceback.
    from train import distributed

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "events").write_text("")
    monkeypatch.setattr(distributed, "launch", lambda *a: pytest.fail("ranks were launched"))
    argv = ["train", "ppo", "--env", "CartPole-v1", "--nproc", "2", "--runs-dir", str(tmp_path),
            "--run-name", "taken"]
    assert _main_exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"rlplay: error: run folder \S+/taken already exists; .*", err), err


@pytest.mark.parametrize("value", ["0", "abc"])
def test_rejected_flag_values_name_the_flag_and_exit_2(tmp_path, capsys, monkeypatch, value):
    # Flag values are checked by the parser (tyro), which shows its own usage panel naming the
    # field, like argparse's usage errors; our own one-line format is for everything after it.
    monkeypatch.setenv("COLUMNS", WIDTH)
    assert _main_exit_code(_cli_train(tmp_path, "--num-envs", value)) == 2
    err = capsys.readouterr().err
    assert "num_envs" in err or "--num-envs" in err, err
    assert "Traceback" not in err


def test_replay_of_no_episodes_is_a_user_error(cli_run, capsys):
    assert main(["replay", str(cli_run[2]), "--episodes", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rlplay: error: --episodes must be at least 1, got 0"]


def test_resume_of_a_moved_run_prints_its_real_logdir(tmp_path, capsys):
    assert main(_cli_train(tmp_path / "a", "--total-steps", "300")) == 0
    (tmp_path / "b").mkdir()
    moved = (tmp_path / "a" / "x").rename(tmp_path / "b" / "x")
    capsys.readouterr()
    assert main(["train", "dqn", "--resume", str(moved), "--total-steps", "400"]) == 0
    out = capsys.readouterr().out
    assert f"run folder:  {moved}\n" in out and f"replay:      rlplay replay {moved}\n" in out
    assert f"tensorboard: tensorboard --logdir {tmp_path / 'b'}\n" in out


def test_resume_does_not_record_folder_flags_it_ignores(tmp_path, capsys):
    assert main(_cli_train(tmp_path / "a", "--total-steps", "300")) == 0
    argv = ["train", "dqn", "--resume", str(tmp_path / "a" / "x"), "--run-name", "y",
            "--runs-dir", str(tmp_path / "b"), "--total-steps", "400"]
    if main(argv) == 2:
        return  # rejecting the flags is fine too
    config = json.loads((tmp_path / "a" / "x" / "config.json").read_text())
    assert (config["run"]["run_name"], config["run"]["runs_dir"]) == ("x", str(tmp_path / "a"))
    assert f"tensorboard: tensorboard --logdir {tmp_path / 'a'}\n" in capsys.readouterr().out


# --- NaN, signals and resume ----------------------------------------------------------------


def test_nan_loss_exits_3(wave):
    cwd, results = wave
    proc = results["nan"]
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("rlplay: error:")]
    # Updates start at step 402; the first at lr 1e30 makes the next loss inf: caught at 500.
    assert "the loss became NaN or infinite before step 500" in error
    assert f"the last good checkpoint was kept ({cwd / 'runs' / 'nan' / LATEST})" in error
    ckpt, _ = load_checkpoint(cwd / "runs" / "nan")
    assert ckpt["counters"]["global_step"] == 300
    assert all(torch.isfinite(t).all() for t in ckpt["agent"]["q_net"].values())


TOTAL = 4000  # steps of the interrupted runs: a few seconds, stopped after ~200


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Two training runs started together, one stopped by SIGINT, one by SIGTERM, once each has
    written its first checkpoint: {signal: (run dir, exit code, stdout, stderr)}."""
    cwd = tmp_path_factory.mktemp("signals")
    procs = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        name = sig.name.lower()
        flags = [*TINY_FLAGS, "--total-steps", str(TOTAL), "--eval-every", "0",
                 "--checkpoint-every", "200", "--runs-dir", str(cwd / "runs"), "--run-name", name]
        with (cwd / f"{name}.out").open("w") as out, (cwd / f"{name}.err").open("w") as err:
            procs[sig] = subprocess.Popen([RLPLAY, "train", "dqn", *flags], cwd=cwd, env=ENV,
                                          stdout=out, stderr=err)
    results = {}
    try:
        pending, deadline = dict(procs), time.monotonic() + 120
        while pending:  # signal each run as soon as its first checkpoint is on disk
            for sig, proc in list(pending.items()):
                if (cwd / "runs" / sig.name.lower() / LATEST).exists():
                    assert proc.poll() is None, f"{sig.name} run finished first; raise TOTAL"
                    proc.send_signal(sig)
                    del pending[sig]
                else:
                    assert proc.poll() is None, f"{sig.name} run exited before its checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        for sig, proc in procs.items():
            code = proc.wait(timeout=10)  # a clean stop is quick: one checkpoint and exit
            name = sig.name.lower()
            results[sig] = (cwd / "runs" / name, code, (cwd / f"{name}.out").read_text(),
                            (cwd / f"{name}.err").read_text())
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_signal_stops_cleanly_and_says_how_to_continue(interrupted, sig):
    run_dir, code, stdout, stderr = interrupted[sig]
    assert code == 0, stderr
    assert "Traceback" not in stderr
    match = re.search(rf"^{sig.name} at step (\d+): saved (\S+); continue with "
                      rf"rlplay train dqn --resume (\S+)$", stderr, re.M)
    assert match, stderr
    step = int(match[1])
    assert 200 <= step < TOTAL
    assert match[2] == str(run_dir / LATEST) and match[3] == str(run_dir)
    assert f"finished ({sig.name}) at step {step}" in stdout
    ckpt, _ = load_checkpoint(run_dir)
    assert ckpt["counters"]["global_step"] == step


def test_resume_after_sigint_runs_to_the_end(interrupted, tmp_path):
    run_dir, _, _, _ = interrupted[signal.SIGINT]
    at_stop, _ = load_checkpoint(run_dir)
    step = at_stop["counters"]["global_step"]
    resumed = subprocess.run([RLPLAY, "train", "dqn", "--resume", str(run_dir)], cwd=tmp_path,
                             env=ENV, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir} at step {step}" in resumed.stdout
    assert f"finished (total_steps) at step {TOTAL}" in resumed.stdout
    final, _ = load_checkpoint(run_dir)
    assert final["counters"]["global_step"] == TOTAL
    assert final["agent"]["num_updates"] > at_stop["agent"]["num_updates"]


def test_an_env_module_in_the_working_folder_is_found(tmp_path):
    # The console script's sys.path lacks the working folder (`python -m train` has it): the
    # check before launching ranks said "cannot import module" for an env beside the user.
    (tmp_path / "my_cartpole.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyCartPole-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',"
        " max_episode_steps=50)\n"
    )
    proc = subprocess.run(
        [RLPLAY, "train", "ppo", "--env", "my_cartpole:MyCartPole-v0", "--num-envs", "2",
         "--num-steps", "16", "--num-minibatches", "2", "--total-steps", "64", "--eval-every", "0",
         "--no-progress", "--device", "cpu", "--runs-dir", "runs"],
        cwd=tmp_path, text=True, capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "finished (total_steps) at step 64" in proc.stdout
