"""`rlplay bench`: our agents against reference libraries, side by side in one process."""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Literal, NamedTuple

import gymnasium as gym
import torch
import tyro

from agents import DQNConfig
from train.common import make_envs
from train.config import RunConfig, resolve_device
from train.errors import UserError
from train.evaluate import eval_seed, evaluate
from train.offpolicy import EvalPoint, train_dqn
from train.presets import apply_preset

try:  # optional extra `bench`; without it the benchmark runs ours only
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError:
    sb3 = None
    BaseCallback = object  # lets the callback class below be defined; it is never instantiated

ENV_ID = "CartPole-v1"
SOLVED = 475.0  # CartPole-v1's reward_threshold in Gymnasium's registry
INSTALL_SB3 = 'pip install -e ".[bench]"'


@dataclass
class DQNCartPoleBench:
    """Our DQN (CartPole-v1 preset) against Stable-Baselines3's DQN with rl-baselines3-zoo's
    CartPole-v1 hyperparameters: env steps and training seconds (evaluation excluded) to a
    greedy mean return of 475, and the final evaluation, per seed."""

    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds to run; each seed runs ours, then SB3"""
    total_steps: int = 50_000
    """env steps per run, for both libraries (rl-zoo's n_timesteps is 50k)"""
    eval_every: int = 2_000
    """env steps between greedy evaluations (10 episodes each), for both libraries"""
    sb3: bool = True
    """also run Stable-Baselines3 (--no-sb3: ours only)"""
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    """device for both libraries' networks (and our env tensors)"""


class RunSummary(NamedTuple):
    """What the table shows for one (library, seed) run."""

    steps_to_solve: int | None  # env steps at the first eval with mean >= SOLVED; None: never
    seconds_to_solve: float | None  # training seconds at that eval (evaluation excluded)
    final_return: float  # mean return of the last evaluation, at the end of the run
    train_seconds: float  # training seconds of the whole run (evaluation excluded)


def summarize(evals: list[EvalPoint]) -> RunSummary:
    """Reduce a run's evaluation curve to the table's numbers."""
    solved = next((e for e in evals if e.mean_return >= SOLVED), None)
    last = evals[-1]
    return RunSummary(
        solved.global_step if solved else None, solved.train_seconds if solved else None,
        last.mean_return, last.train_seconds,
    )


def run_ours(opts: DQNCartPoleBench, seed: int) -> list[EvalPoint]:
    """Our DQN with the CartPole-v1 preset for the whole budget; its run folder is thrown away."""
    (run, cfg), _ = apply_preset("dqn", ENV_ID, RunConfig(env=ENV_ID), DQNConfig())
    with tempfile.TemporaryDirectory(prefix="rlplay-bench-") as runs_dir:
        run = dataclasses.replace(
            run, seed=seed, total_steps=opts.total_steps, eval_every=opts.eval_every,
            device=opts.device, target_return=None, progress=False, runs_dir=runs_dir,
            threads=1,
            # Checkpoints outside evaluations would count as training time; the loop still
            # writes best/latest at each evaluation, outside the clock.
            checkpoint_every=0,
        )
        result = train_dqn(run, cfg)
    if result.stopped_by != "total_steps":  # Ctrl-C/SIGTERM: the loop stopped early and saved
        raise KeyboardInterrupt
    return result.evals


class PausedClockEval(BaseCallback):
    """Every `eval_every` env steps (and at the end) evaluate SB3's greedy policy as our loop
    does, with the training clock stopped meanwhile.

    The clock starts when `learn` starts collecting (model construction excluded, as in ours)
    and reads training wall-clock only: env steps, gradient steps and SB3's own bookkeeping.
    """

    def __init__(self, eval_envs: gym.vector.VectorEnv, *, seed: int, eval_every: int,
                 total_steps: int):
        super().__init__()
        self.eval_envs, self.seed = eval_envs, seed
        self.eval_every, self.total_steps = eval_every or total_steps, total_steps
        self.next_eval = self.eval_every
        self.evals: list[EvalPoint] = []
        self.train_seconds = 0.0
        self.clock_start = 0.0

    def _on_training_start(self) -> None:
        self.clock_start = time.perf_counter()

    def _on_step(self) -> bool:
        # num_timesteps counts env steps over all envs, like our global_step.
        at_end = self.num_timesteps >= self.total_steps
        if self.num_timesteps < self.next_eval and not at_end:
            return True
        self.train_seconds += time.perf_counter() - self.clock_start  # stop the clock
        self.next_eval = self.num_timesteps + self.eval_every
        returns = evaluate(self._greedy, self.eval_envs, seed=eval_seed(self.seed, len(self.evals)))
        self.evals.append(EvalPoint(self.num_timesteps, self.train_seconds, float(returns.mean())))
        self.clock_start = time.perf_counter()  # restart it
        # SB3 only checks total_timesteps between rollouts, so with train_freq=256 it would
        # step on to the next multiple of 256 (50,176) and train once more; stop where ours does.
        return not at_end

    def _greedy(self, obs: torch.Tensor) -> torch.Tensor:
        action, _ = self.model.predict(obs.cpu().numpy(), deterministic=True)
        return torch.as_tensor(action)


def run_sb3(opts: DQNCartPoleBench, seed: int) -> list[EvalPoint]:
    """SB3's DQN with rl-baselines3-zoo's CartPole-v1 hyperparameters (hyperparams/dqn.yml)."""
    model = sb3.DQN(
        "MlpPolicy", gym.make(ENV_ID),
        learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1_000,
        gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
        exploration_fraction=0.16, exploration_final_eps=0.04,
        policy_kwargs=dict(net_arch=[256, 256]), seed=seed,
        device=str(resolve_device(opts.device)), verbose=0,
    )
    # The same eval envs as ours: Gymnasium's CartPole-v1, one episode on each of 10 envs.
    eval_envs = make_envs(RunConfig(env=ENV_ID), torch.device("cpu"), RunConfig.eval_episodes)
    callback = PausedClockEval(
        eval_envs, seed=seed, eval_every=opts.eval_every, total_steps=opts.total_steps
    )
    model.learn(total_timesteps=opts.total_steps, callback=callback)
    eval_envs.close()
    return callback.evals


def bench_dqn_cartpole(opts: DQNCartPoleBench) -> int:
    """Run both libraries seed by seed, then print the comparison table and the verdicts."""
    if not opts.seeds or len(set(opts.seeds)) != len(opts.seeds):
        raise UserError("--seeds needs at least one seed, each once")
    if opts.total_steps <= 0 or opts.eval_every < 0:
        raise UserError("--total-steps must be positive and --eval-every not negative")
    resolve_device(opts.device)  # fail before any run if CUDA was asked for and is missing
    with_sb3 = opts.sb3 and sb3 is not None
    if opts.sb3 and sb3 is None:
        print(f"note: stable-baselines3 is not installed, running ours only "
              f"(install it with {INSTALL_SB3})", file=sys.stderr)
    # One thread for both: small nets run fastest on one, and it keeps the comparison fair.
    torch.set_num_threads(1)
    print(versions_line(with_sb3))

    ours: dict[int, RunSummary] = {}
    theirs: dict[int, RunSummary] = {}
    try:
        for seed in opts.seeds:
            ours[seed] = summarize(run_ours(opts, seed))
            print(f"seed {seed} ours: {describe(ours[seed])}", file=sys.stderr)
            if with_sb3:
                theirs[seed] = summarize(run_sb3(opts, seed))
                print(f"seed {seed} SB3:  {describe(theirs[seed])}", file=sys.stderr)
    except KeyboardInterrupt:
        # A table over some seeds would read as a result; the runs' folders are temporary.
        print("\ninterrupted: no results (ignore any --resume hint above: the run folder "
              "was temporary)", file=sys.stderr)
        return 130

    print()
    when = f"every {opts.eval_every} steps" if opts.eval_every else "at the end only"
    print(f"DQN on {ENV_ID}: {opts.total_steps} env steps, greedy eval of "
          f"{RunConfig.eval_episodes} episodes {when}; "
          f"solved = mean >= {SOLVED:.0f}; seconds exclude evaluation")
    print(table(opts.seeds, ours, theirs if with_sb3 else None))
    print()
    for line in verdicts(opts.seeds, ours, theirs if with_sb3 else None):
        print(line)
    return 0


def versions_line(with_sb3: bool) -> str:
    """Library versions and thread count, which the timings depend on."""
    sb3_version = sb3.__version__ if with_sb3 else "not run"
    return (f"torch {torch.__version__}, gymnasium {gym.__version__}, "
            f"stable-baselines3 {sb3_version}, torch threads {torch.get_num_threads()}")


def describe(s: RunSummary) -> str:
    """One progress line for a finished run."""
    solved = (f"{SOLVED:.0f} at step {s.steps_to_solve} ({s.seconds_to_solve:.1f} s)"
              if s.steps_to_solve is not None else f"never {SOLVED:.0f}")
    return f"{solved}, final eval {s.final_return:.1f}, {s.train_seconds:.1f} s training"


def _median(values: list[float | None]) -> float | None:
    """Median where None ("never") ranks above every number; None if the median is never."""
    m = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(m) else m


def _ratio(sb3_s: RunSummary, ours_s: RunSummary) -> str:
    """SB3 seconds / ours seconds to solve; '>x' bounds it when SB3 never solved."""
    if ours_s.seconds_to_solve is None:
        return "n/a"
    if sb3_s.seconds_to_solve is None:  # SB3's time to solve exceeds its whole run
        return f">{sb3_s.train_seconds / ours_s.seconds_to_solve:.2f}"
    return f"{sb3_s.seconds_to_solve / ours_s.seconds_to_solve:.2f}"


def table(
    seeds: tuple[int, ...], ours: dict[int, RunSummary], theirs: dict[int, RunSummary] | None
) -> str:
    """Rows per seed and a median row; columns per library, then SB3/ours seconds."""
    cols = ["seed", "ours steps", "ours s", "ours final"]
    if theirs is not None:
        cols += ["SB3 steps", "SB3 s", "SB3 final", "SB3 s / ours s"]
    labels = [str(seed) for seed in seeds] + ["median"]
    ours_runs = [ours[seed] for seed in seeds]
    ours_runs.append(_median_summary(ours_runs))
    rows = [[label, *_cells(o)] for label, o in zip(labels, ours_runs)]
    if theirs is not None:
        sb3_runs = [theirs[seed] for seed in seeds]
        sb3_runs.append(_median_summary(sb3_runs))
        for row, o, t in zip(rows, ours_runs, sb3_runs):
            row += [*_cells(t), _ratio(t, o)]

    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = [_join(cols, widths), _join(["-" * w for w in widths], widths)]
    lines += [_join(r, widths) for r in rows]
    lines.append(f"steps, s: env steps and training seconds to the first eval >= {SOLVED:.0f}; "
                 "final: the last eval's mean return; median row: per column, never ranks last")
    return "\n".join(lines)


def _cells(s: RunSummary) -> list[str]:
    """A run's three table cells: steps to solve, seconds to solve, final return."""
    steps = "never" if s.steps_to_solve is None else str(s.steps_to_solve)
    seconds = "never" if s.seconds_to_solve is None else f"{s.seconds_to_solve:.1f}"
    return [steps, seconds, f"{s.final_return:.1f}"]


def _join(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) for c, w in zip(cells, widths))


def _median_summary(runs: list[RunSummary]) -> RunSummary:
    """Column-wise medians of several runs (the table's median row)."""
    steps = _median([r.steps_to_solve for r in runs])
    return RunSummary(
        None if steps is None else int(steps), _median([r.seconds_to_solve for r in runs]),
        statistics.median(r.final_return for r in runs),
        statistics.median(r.train_seconds for r in runs),
    )


def verdicts(
    seeds: tuple[int, ...], ours: dict[int, RunSummary], theirs: dict[int, RunSummary] | None
) -> list[str]:
    """PASS/FAIL lines for the issue's two goals."""
    speed_goal = "ours reaches 475 in <= 1/3 of SB3's wall-clock on every seed"
    if theirs is None:
        speed = "n/a (SB3 not run)"
    else:
        speed = _pass(all(_three_times_faster(ours[s], theirs[s]) for s in seeds))
    solved = _pass(all(ours[s].final_return >= SOLVED for s in seeds))
    return [f"{speed_goal}: {speed}",
            f"ours is solved (final eval >= 475) at the end on every seed: {solved}"]


def _three_times_faster(o: RunSummary, t: RunSummary) -> bool:
    """Ours solved in <= 1/3 of SB3's time; if SB3 never solved, its whole run is a lower bound
    on its time, so ours must be within 1/3 of that to count (conservative)."""
    if o.seconds_to_solve is None:
        return False
    sb3_seconds = t.seconds_to_solve if t.seconds_to_solve is not None else t.train_seconds
    return 3 * o.seconds_to_solve <= sb3_seconds


def _pass(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# name -> (one line for `rlplay bench --help`, options dataclass, runner)
BENCHMARKS: dict[str, tuple[str, type, Callable[..., int]]] = {
    "dqn-cartpole": (
        "our DQN vs Stable-Baselines3's (rl-zoo hyperparameters) on CartPole-v1: time to 475",
        DQNCartPoleBench, bench_dqn_cartpole,
    ),
}


def bench_command(argv: list[str]) -> int:
    """`rlplay bench NAME [OPTIONS]`: parse the benchmark's options with tyro and run it."""
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["usage: rlplay bench NAME [OPTIONS]", "", "benchmarks:"]
        lines += [f"  {name:<14} {summary}" for name, (summary, _, _) in BENCHMARKS.items()]
        lines += ["", "`rlplay bench NAME --help` lists its options."]
        print("\n".join(lines))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark '{name}'; available: {', '.join(BENCHMARKS)}")
    _, options_cls, bench_fn = BENCHMARKS[name]
    opts = tyro.cli(options_cls, args=rest, prog=f"rlplay bench {name}")
    return bench_fn(opts)
