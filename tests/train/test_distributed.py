"""Data-parallel training (issue 7): two gloo ranks spawned by the test run the real loop.

One spawn runs everything the ranks must do together (starting two interpreters costs ~5 s on
2 cores): a run that solves CartPole-v1, and a run stopped by a signal on rank 0 alone and
resumed on both ranks, against the same run never stopped. The parent checks the files.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_testlib import StopAfter, event_files, read_events, scalar_steps, scalar_values

from agents.pg import PGConfig
from envs import make as make_envs
from train import distributed, onpolicy
from train.checkpoint import load_checkpoint
from train.cli import main
from train.config import RunConfig
from train.evaluate import evaluate
from train.onpolicy import pg_from_checkpoint, train_pg
from train.presets import PG_PRESETS, apply_preset

WORLD = 2
SOLVED = 475.0
# Short runs of 8 envs (rollouts of 256 steps), so that a stop lands mid-run.
SHORT = dict(total_steps=2_048, eval_every=768, log_every=256, eval_episodes=2, num_envs=8)


def preset_run(
    tmp_path: Path, name: str, normalize: bool = True, **overrides
) -> tuple[RunConfig, PGConfig]:
    """PPO's CartPole-v1 preset (32 envs, 16 per rank, unless overridden) in a folder of its
    own; `normalize` adds obs and reward normalisation, whose statistics must resume exactly
    too."""
    (run, cfg), _ = apply_preset("ppo", "CartPole-v1", RunConfig(env="CartPole-v1"), PGConfig())
    run.seed, run.device, run.progress = 1, "cpu", False
    run.runs_dir, run.run_name = str(tmp_path), name
    for k, v in overrides.items():
        setattr(run, k, v)
    cfg.norm_obs = cfg.norm_reward = normalize
    return run, cfg


def rank_main(rank: int, port: int, out: str) -> None:
    """One rank: join the group as torchrun's children do (env vars) and run the scenarios."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
    )
    out_dir = Path(out)
    agents = []
    build = onpolicy.build_pg
    onpolicy.build_pg = lambda *a, **kw: agents.append(build(*a, **kw)) or agents[-1]
    with distributed.process_group("cpu", timeout_s=60):
        results = {}
        # Until every evaluation episode lasts 500 steps: a policy that passed 475 once, on 10
        # episodes, can still fall short on fresh ones.
        run, cfg = preset_run(
            out_dir, "solve", normalize=False, target_return=500.0, eval_every=2_048
        )
        results["solve"] = train_pg(run, cfg)

        run, cfg = preset_run(out_dir, "whole", **SHORT)
        results["whole"] = train_pg(run, cfg)
        run, cfg = preset_run(out_dir, "stopped", **SHORT)
        # Only rank 0 is signalled: rank 1 must learn it and stop at the same step.
        results["stopped"] = train_pg(run, cfg, stop=StopAfter(3) if rank == 0 else None)
        ckpt, file = load_checkpoint(results["stopped"].run_dir)
        ckpt["run_dir"] = str(file.parent)
        results["resumed"] = train_pg(run, cfg, resume=ckpt)
    torch.save(
        {"results": {  # the clock (train_seconds) is each rank's own
            k: (r.global_step, r.stopped_by, r.best_return,
                [(e.global_step, e.mean_return) for e in r.evals])
            for k, r in results.items()},
         "nets": [a.net.state_dict() for a in agents]},
        out_dir / f"rank{rank}.pt",
    )


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """(runs dir, [rank 0's record, rank 1's record]) after the spawned job."""
    out = tmp_path_factory.mktemp("dist")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(rank_main, args=(port, str(out)), nprocs=WORLD)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_the_ranks_agree_on_every_run_and_hold_identical_parameters(ranks):
    _, (rank0, rank1) = ranks
    assert rank0["results"] == rank1["results"]  # steps, stop reason, every evaluation
    assert len(rank0["nets"]) == 4
    for net0, net1 in zip(rank0["nets"], rank1["nets"], strict=True):
        for key, tensor in net0.items():
            assert torch.equal(tensor, net1[key]), key


def test_two_processes_solve_cartpole(ranks):
    runs, (rank0, _) = ranks
    global_step, stopped_by, best, _ = rank0["results"]["solve"]
    assert stopped_by == "target_return" and best >= SOLVED
    assert global_step <= PG_PRESETS["ppo"]["CartPole-v1"]["total_steps"]
    # The best checkpoint's policy, rebuilt in one process, solves fresh episodes too.
    ckpt, _ = load_checkpoint(runs / "solve", prefer="best.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: more threads only contend for the 2 cores
    try:
        returns = evaluate(pg_from_checkpoint(ckpt).act, make_envs("CartPole-v1", 10), seed=777)
    finally:
        torch.set_num_threads(threads)
    assert returns.mean() >= SOLVED, returns


def test_rank_0_alone_writes_and_logs_both_ranks_episodes(ranks):
    runs, _ = ranks
    (events_file,) = event_files(runs / "solve")  # one writer: rank 0's
    events = read_events(events_file)
    lengths = scalar_values(events, "charts/episodic_length")
    last_log = max(scalar_steps(events, "charts/episodic_return"))
    # Rank 0 alone has stepped last_log / 2 env steps; finished episodes longer than that in
    # total can only come from both ranks.
    assert sum(n for step, n in lengths) > last_log / 2
    ckpt, _ = load_checkpoint(runs / "solve")
    assert ckpt["world_size"] == WORLD and ckpt["config"]["world_size"] == WORLD
    g0, g1 = (state["generator"] for state in ckpt["rank_states"])
    assert not torch.equal(g0, g1)  # each rank samples with its own seed


def test_a_signal_on_one_rank_stops_both_and_resume_is_bitwise_exact(ranks):
    runs, (rank0, _) = ranks
    stopped_step, stopped_by, _, _ = rank0["results"]["stopped"]
    assert stopped_by == "SIGINT" and 0 < stopped_step < SHORT["total_steps"]
    assert rank0["results"]["resumed"][0] == rank0["results"]["whole"][0] == SHORT["total_steps"]
    a, _ = load_checkpoint(runs / "whole")
    b, _ = load_checkpoint(runs / "stopped")
    for key, tensor in a["agent"]["net"].items():
        assert torch.equal(tensor, b["agent"]["net"][key]), key
    for rank, (sa, sb) in enumerate(zip(a["rank_states"], b["rank_states"], strict=True)):
        assert torch.equal(sa["generator"], sb["generator"]), rank
        assert torch.equal(sa["obs"], sb["obs"]), rank
        assert torch.equal(sa["reward_scaler"]["returns"], sb["reward_scaler"]["returns"]), rank
    assert [e[::2] for e in a["evals"]] == [e[::2] for e in b["evals"]]  # (step, return)


def test_a_two_process_checkpoint_resumes_on_one_process(ranks, tmp_path, capsys):
    runs, _ = ranks
    ckpt, file = load_checkpoint(runs / "stopped")  # written by 2 processes at the end
    ckpt["run_dir"] = str(file.parent)
    run, cfg = preset_run(runs, "stopped", **{**SHORT, "total_steps": 3_072})
    result = train_pg(run, cfg, resume=ckpt)
    assert result.global_step == 3_072 and result.stopped_by == "total_steps"
    assert "written by 2 process(es), resumed on 1" in capsys.readouterr().out
    after, _ = load_checkpoint(runs / "stopped")
    assert "rank_states" not in after and after["counters"]["global_step"] == 3_072


def test_train_alone_is_the_algorithm(capsys):
    # `torchrun … -m train ppo …` passes `ppo` as the command: it means `train ppo`.
    with pytest.raises(SystemExit) as e:
        main(["ppo", "--help"])
    assert e.value.code == 0
    assert "rlplay train ppo" in capsys.readouterr().out


FAILING_ENV = '''
"""CartPole whose copy on rank 1 raises after a few steps: a rank dying mid-run."""
import os

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


def failing(rank):
    class Fail(CartPoleEnv):
        def step(self, action):
            self.steps = getattr(self, "steps", 0) + 1
            if os.environ.get("RANK") == rank and self.steps > 100:
                raise RuntimeError(f"injected failure on rank {rank}")
            return super().step(action)
    return Fail


gym.register("FailOnRank0-v0", entry_point=failing("0"), max_episode_steps=500)
gym.register("FailOnRank1-v0", entry_point=failing("1"), max_episode_steps=500)
'''


@pytest.mark.parametrize("rank", [0, 1])
def test_a_failing_rank_ends_the_job_with_a_clear_error(tmp_path, rank):
    (tmp_path / "failing_env.py").write_text(FAILING_ENV)
    rlplay = str(Path(sys.executable).with_name("rlplay"))
    proc = subprocess.run(
        [rlplay, "train", "ppo", "--nproc", "2", "--env", f"failing_env:FailOnRank{rank}-v0",
         "--num-envs", "2", "--total-steps", "100000", "--no-progress", "--device", "cpu",
         "--dist-timeout", "60"],
        cwd=tmp_path, text=True, capture_output=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"RuntimeError: injected failure on rank {rank}" in proc.stderr
    # Only the failing rank's traceback: the other rank, whose collective lost its peer, says so
    # in one line (if torchrun has not stopped it first).
    assert proc.stderr.count("Traceback") == 1, proc.stderr[-3000:]
    assert "Connection closed by peer" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"rlplay: error: rank {rank} exited with 1; the other ranks were stopped "
                    "(see its output above)"), proc.stderr[-2000:]
