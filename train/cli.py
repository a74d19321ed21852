"""The `rlplay` command: train, replay and bench."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import field
from pathlib import Path

import tyro

from functools import partial

from agents import DQNConfig
from agents.pg import PGConfig
from train import distributed
from train.checkpoint import LATEST, load_checkpoint
from train.common import check_env, check_run_dir_free
from train.config import RunConfig
from train.errors import TrainingDiverged, UserError
from train.offpolicy import train_dqn
from train.onpolicy import check_minibatches, train_pg
from train.presets import apply_preset

ALGOS = {
    "dqn": (DQNConfig, train_dqn),
    "ppo": (PGConfig, partial(train_pg, algo="ppo")),
    "a2c": (PGConfig, partial(train_pg, algo="a2c")),
    "reinforce": (PGConfig, partial(train_pg, algo="reinforce")),
}
COMMANDS = {
    "train": "train an agent: rlplay train dqn|ppo|a2c|reinforce --env CartPole-v1",
    "replay": "play a saved policy: rlplay replay runs/<run> [--episodes K] [--video out.gif]",
    "collect": "record episodes: rlplay collect runs/<run>|scripted|random --episodes K --out data/x",
    "pretrain": "supervised pretraining: rlplay pretrain --data data/x --task bc|dynamics --net ppo",
    "bench": "benchmarks: rlplay bench dqn-cartpole | ppo-cartpole | cartpole-envs | transfer | "
             "dqn-atari | ppo-scaling",
}
DATA_PARALLEL = ("ppo", "a2c", "reinforce")  # the loops that train with --nproc / torchrun
# Settings a resumed run must keep: the env state, network and buffer are built from them.
FIXED_ON_RESUME = {
    "env", "num_envs", "vectorization", "seed", "hidden", "dueling", "buffer_size",
    "shared_trunk", "num_steps", "activation", "init_from", "init_parts", "freeze",
    "unfreeze_after",
}


def usage() -> str:
    lines = ["usage: rlplay COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, text in COMMANDS.items()]
    lines += ["", "`rlplay COMMAND --help` lists each command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `--env module:EnvId` finds a module in the working folder, as under `python -m train`, but
    # last: a local file never shadows an installed package (or ours).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            return train_command(rest)
        if command in ALGOS:  # `torchrun … -m train ppo …`: the algorithm alone means train
            return train_command(argv)
        if command == "replay":
            from train.play import replay_command

            return replay_command(rest)
        if command == "collect":
            from train.collect import collect_command

            return collect_command(rest)
        if command == "pretrain":
            from train.pretrain import pretrain_command

            return pretrain_command(rest)
        if command == "bench":
            from train.bench import bench_command

            return bench_command(rest)
        raise UserError(f"unknown command '{command}'; commands: {', '.join(COMMANDS)}")
    except (UserError, TrainingDiverged) as e:
        rank = f" (rank {distributed.env_rank()})" if distributed.launched() else ""
        print(f"rlplay: error{rank}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C: the first one's checkpoint may not be written
        print("rlplay: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if not (distributed.launched() and distributed.peer_lost(e)):
            raise
        # Another rank died first and closed the connection: its own error says why; a traceback
        # of this rank's collective would only bury it.
        print(f"rlplay: error (rank {distributed.env_rank()}): lost contact with another rank, "
              "which failed first (see its error)", file=sys.stderr)
        return 1


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of `--flag X` or `--flag=X` in argv, read before tyro parses (for presets)."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def parse_train_args(
    algo: str, argv: list[str]
) -> tuple[RunConfig, object, dict | None, dict]:
    """Defaults ← preset for --env (or the resumed run's config) ← flags; and the preset."""
    config_cls, _ = ALGOS[algo]
    resume_path = _flag_value(argv, "--resume")
    ckpt = None
    if resume_path is not None:
        ckpt, file = load_checkpoint(resume_path, prefer=LATEST)
        if ckpt["algo"] != algo:
            raise UserError(f"{file} is a {ckpt['algo']} checkpoint, not {algo}")
        ckpt["run_dir"] = str(file.parent)
        for flag in ("--run-name", "--runs-dir"):
            if _flag_value(argv, flag) is not None:
                raise UserError(f"--resume continues in {file.parent}; drop {flag}")
        # The run continues where its folder is now, even if it was moved since.
        run0 = RunConfig(**{
            **ckpt["config"]["run"], "runs_dir": str(file.parent.parent),
            "run_name": file.parent.name,
        })
        algo0 = config_cls(**ckpt["config"][algo])
        preset: dict = {}
    else:
        env = _flag_value(argv, "--env") or RunConfig.env
        (run0, algo0), preset = apply_preset(algo, env, RunConfig(env=env), config_cls())

    Args = dataclasses.make_dataclass("Args", [
        ("run", RunConfig, field(default_factory=lambda: run0)),
        ("algo", config_cls, field(default_factory=lambda: algo0)),
    ])

    shown = (f"the resumed run's ({ckpt['run_dir']})" if ckpt is not None
             else f"the preset for --env ({run0.env})" if preset
             else f"the library's (no preset for {algo} on {run0.env})")
    description = f"Train {algo.upper()}. Defaults shown are {shown}; flags override them."
    args = tyro.cli(
        Args, args=argv, prog=f"rlplay train {algo}", description=description,
        config=(tyro.conf.OmitArgPrefixes,),
    )
    run, algo_cfg = args.run, args.algo
    if ckpt is not None:
        before = {**dataclasses.asdict(run0), **dataclasses.asdict(algo0)}
        after = {**dataclasses.asdict(run), **dataclasses.asdict(algo_cfg)}
        changed = sorted(k for k in FIXED_ON_RESUME & before.keys() if before[k] != after[k])
        if changed:
            raise UserError(
                f"--resume keeps the run's {', '.join(changed)}; drop those flags or start a new run"
            )
        step = ckpt["counters"]["global_step"]
        if run.total_steps <= step:
            raise UserError(f"{file} is already at step {step:,} of --total-steps "
                            f"{run.total_steps:,}; pass a larger --total-steps to train on")
        run.resume = resume_path
    return run, algo_cfg, ckpt, preset


def _print_settings(algo, run, algo_cfg, preset, ckpt) -> None:
    values = {**dataclasses.asdict(run), **dataclasses.asdict(algo_cfg)}
    if ckpt is not None:
        print(f"resuming {ckpt['run_dir']} at step {ckpt['counters']['global_step']}")
    elif preset:
        shown = ", ".join(f"{k}={v}" for k, v in preset.items())
        print(f"preset {algo}/{run.env}: {shown}")
        overridden = {k: values[k] for k in preset if values[k] != preset[k]}
        if overridden:
            print("overridden by flags: " + ", ".join(f"{k}={v}" for k, v in overridden.items()))
    else:
        print(f"no preset for {algo}/{run.env}: library defaults (see --help)")


def train_command(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: rlplay train ALGO [OPTIONS]\n\nalgorithms: {', '.join(ALGOS)}\n"
              "`rlplay train ALGO --help` lists the options, with the preset defaults.")
        return 0 if argv else 2
    algo, rest = argv[0], argv[1:]
    if algo not in ALGOS:
        raise UserError(f"unknown algorithm '{algo}'; available: {', '.join(ALGOS)}")
    run, algo_cfg, ckpt, preset = parse_train_args(algo, rest)
    data_parallel = run.nproc > 1 or distributed.launched()
    if data_parallel and algo not in DATA_PARALLEL:
        raise UserError(f"{algo} trains in one process; --nproc and torchrun serve "
                        f"{', '.join(DATA_PARALLEL)}")
    # Checked before any run folder or process exists (each rank would fail on its own).
    check_env(run.env)
    if run.nproc > 1:
        distributed.env_slice(run.num_envs, run.nproc)
    if algo in DATA_PARALLEL:
        check_minibatches(algo_cfg, run.num_envs, run.nproc)
    if run.nproc > 1 and not distributed.launched():  # the ranks parse the same flags again
        if ckpt is None:
            check_run_dir_free(run)
        return distributed.launch(["train", algo, *rest], run.nproc)
    with distributed.process_group(run.device, run.dist_timeout) as dist:
        if dist.is_main:
            _print_settings(algo, run, algo_cfg, preset, ckpt)
        _, train_fn = ALGOS[algo]
        result = train_fn(run, algo_cfg, resume=ckpt)
    if not dist.is_main:
        return 0
    run_dir = result.run_dir
    best = run_dir / "best.pt"
    print(f"\nfinished ({result.stopped_by}) at step {result.global_step}")
    if result.best_return is not None:
        print(f"best eval return: {result.best_return:.1f}")
    print(f"run folder:  {run_dir}")
    print(f"checkpoint:  {best if best.exists() else run_dir / LATEST} (latest: {run_dir / LATEST})")
    print(f"tensorboard: tensorboard --logdir {Path(run.runs_dir)}")
    print(f"replay:      rlplay replay {run_dir}")
    return 0
