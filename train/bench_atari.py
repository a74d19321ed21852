"""`rlplay bench dqn-atari`: env steps/s of our Atari DQN loop against CleanRL's `dqn_atari.py`
design, run side by side in one process with the same game, schedule and network sizes.

CleanRL's design keeps the data in NumPy on the host: Stable-Baselines3's Atari wrappers (RGB
frames resized and grayed every frame), its replay buffer (whole 4-frame stacks,
`optimize_memory_usage`); each step copies the observation, as float32, to the network's device
and the action back, and each update copies its sampled batch over. Ours uses Gymnasium's
`AtariPreprocessing` and copies each step's uint8 frames to the device once (observation and
final observation); its buffer and batches stay there.

The CleanRL side is our rendering of its Gymnasium-era loop (2023 on: `terminations` and
`truncations`, `tau`), read for its structure. What differs, and why:
- Gymnasium 1.x: same-step autoreset, whose `final_obs` stands in for 0.29's
  `final_observation`; `GrayscaleObservation` and `FrameStackObservation` for the old names.
- Updates start at step `learning_starts` (CleanRL: after it), so both loops make the same
  number of updates and target copies; the target copy is a `load_state_dict` (its τ = 1).
- Its logging is kept to what costs time on a GPU, the two host syncs every 100 steps; the
  TensorBoard writes and prints are left out.
It needs the `bench` extra (Stable-Baselines3's wrappers and buffer).
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from envs import UnknownEnvError, check_env_id, pixel_family
from train.bench import INSTALL_SB3, interrupted, run_preset
from train.common import StopFlag
from train.config import resolve_device
from train.errors import UserError


@dataclass
class AtariLoopBench:
    """Options of `rlplay bench dqn-atari`; the rest is the Atari DQN preset (CleanRL's)."""

    env: str = "BreakoutNoFrameskip-v4"
    """Atari game (a NoFrameskip-v4 id: CleanRL's wrappers skip frames themselves)"""
    total_steps: int = 8_000
    """env steps per run"""
    learning_starts: int = 4_000
    """updates (one per 4 env steps, batch 32) start here; the table times both phases"""
    buffer_size: int = 100_000
    """replay capacity for both (the preset's 1M would make SB3's buffer reserve 28 GB)"""
    epsilon: float = 0.01
    """ε held for the whole run: the presets reach 0.01 after 1M of their 10M steps, so this is
    the loop of 90% of a run (ours runs the network every step, CleanRL's on greedy steps)"""
    seeds: tuple[int, ...] = (1,)
    """seeds to run; each runs both loops, which take turns at going first"""
    threads: int = 1
    """torch CPU threads, for both (0: torch's default)"""
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    """device of both networks (and of our env tensors and buffer)"""
    cleanrl: bool = True
    """also run CleanRL's design (--no-cleanrl: ours only)"""


class Laps(NamedTuple):
    """Seconds of the two phases of one run: ε-greedy steps only, then steps with updates."""

    collect_seconds: float  # steps [0, learning_starts): act, env step, buffer add
    update_seconds: float  # steps [learning_starts, total_steps - 1): the same plus the updates


class LapFlag(StopFlag):
    """Never asks our loop to stop; notes the clock at its checks (one per env step, before the
    step), so the phases are timed from inside the loop: without its set-up, and without the
    evaluation and checkpoint that follow its last step (hence one step fewer in the second).
    `sync` waits for queued device work before each reading."""

    def __init__(self, learning_starts: int, total_steps: int, sync=lambda: None):
        super().__init__()
        self.marks = (0, learning_starts, total_steps - 1)
        self.times: dict[int, float] = {}
        self.checks, self.sync = 0, sync

    @property
    def requested(self) -> bool:
        if self.checks in self.marks:
            self.sync()
            self.times[self.checks] = time.perf_counter()
        self.checks += 1
        return False

    def laps(self) -> Laps:
        start, lap, end = (self.times[m] for m in self.marks)
        return Laps(lap - start, end - lap)


def run_ours(opts: AtariLoopBench, seed: int) -> Laps:
    """Our loop with the Atari DQN preset on `opts.env` (one env: a check is one env step)."""
    sync = device_sync(resolve_device(opts.device))
    flag = LapFlag(opts.learning_starts, opts.total_steps, sync=sync)
    run_preset(
        "dqn", opts.env, seed=seed, total_steps=opts.total_steps, eval_every=0, eval_episodes=1,
        log_every=opts.total_steps, device=opts.device, threads=opts.threads, stop=flag,
        agent_settings=dict(
            learning_starts=opts.learning_starts, buffer_size=opts.buffer_size,
            start_epsilon=opts.epsilon, end_epsilon=opts.epsilon,
        ),
    )
    return flag.laps()


class NatureQNetwork(nn.Module):
    """CleanRL's QNetwork: the Nature CNN in NCHW, scaling uint8 frames by 1/255."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, num_actions),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x / 255.0)


def cleanrl_env(env_id: str, seed: int) -> gym.vector.VectorEnv:
    """CleanRL's `make_env` (SB3's Atari wrappers, then Gymnasium's resize, grayscale and
    4-frame stack) in a one-env SyncVectorEnv, with same-step autoreset as Gymnasium 0.29 had."""
    from stable_baselines3.common.atari_wrappers import (
        ClipRewardEnv, EpisodicLifeEnv, FireResetEnv, MaxAndSkipEnv, NoopResetEnv,
    )

    check_env_id(env_id)  # registers ALE's ids

    def thunk() -> gym.Env:
        env = gym.wrappers.RecordEpisodeStatistics(gym.make(env_id))
        env = EpisodicLifeEnv(MaxAndSkipEnv(NoopResetEnv(env, noop_max=30), skip=4))
        if "FIRE" in env.unwrapped.get_action_meanings():
            env = FireResetEnv(env)
        env = gym.wrappers.ResizeObservation(ClipRewardEnv(env), (84, 84))
        env = gym.wrappers.FrameStackObservation(gym.wrappers.GrayscaleObservation(env), 4)
        env.action_space.seed(seed)
        return env

    return gym.vector.SyncVectorEnv(
        [thunk], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def device_sync(device: torch.device):
    """What waits for the device's queued work before a clock reading."""
    return torch.cuda.synchronize if device.type == "cuda" else lambda: None


def run_cleanrl(opts: AtariLoopBench, seed: int) -> Laps:
    """CleanRL's dqn_atari.py loop with the preset's hyperparameters (its own, too)."""
    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # CleanRL's default (--torch-deterministic)
    try:
        return _run_cleanrl(opts, seed)
    finally:
        torch.backends.cudnn.deterministic = deterministic


def _run_cleanrl(opts: AtariLoopBench, seed: int) -> Laps:
    from stable_baselines3.common.buffers import ReplayBuffer

    device = resolve_device(opts.device)
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    envs = cleanrl_env(opts.env, seed)
    q_network = NatureQNetwork(envs.single_action_space.n).to(device)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-4)
    target_network = NatureQNetwork(envs.single_action_space.n).to(device)
    target_network.load_state_dict(q_network.state_dict())
    rb = ReplayBuffer(
        opts.buffer_size, envs.single_observation_space, envs.single_action_space, device,
        optimize_memory_usage=True, handle_timeout_termination=False,
    )
    # NumPy reserves the arrays without touching them; touch them now, as our buffer's are at
    # set-up, so that neither loop's clock pays page faults (a run at ε 0.01 has a full buffer).
    for array in (rb.observations, rb.actions, rb.rewards, rb.dones, rb.timeouts):
        array.fill(0)
    obs, _ = envs.reset(seed=seed)
    start = lap = time.perf_counter()
    for global_step in range(opts.total_steps - 1):  # as ours is timed (LapFlag)
        if global_step == opts.learning_starts:
            device_sync(device)()
            lap = time.perf_counter()
        if random.random() < opts.epsilon:
            actions = np.array([envs.single_action_space.sample() for _ in range(envs.num_envs)])
        else:
            q_values = q_network(torch.Tensor(obs).to(device))  # host -> device, every step
            actions = torch.argmax(q_values, dim=1).cpu().numpy()  # and back
        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        real_next_obs = next_obs.copy()
        for idx, trunc in enumerate(truncations):
            if trunc:
                real_next_obs[idx] = infos["final_obs"][idx]
        rb.add(obs, real_next_obs, actions, rewards, terminations, infos)
        obs = next_obs
        if global_step >= opts.learning_starts:
            if global_step % 4 == 0:
                data = rb.sample(32)  # NumPy gather, then host -> device
                with torch.no_grad():
                    target_max, _ = target_network(data.next_observations).max(dim=1)
                    td_target = data.rewards.flatten() + 0.99 * target_max * (
                        1 - data.dones.flatten())
                old_val = q_network(data.observations).gather(1, data.actions).squeeze()
                loss = F.mse_loss(td_target, old_val)
                if global_step % 100 == 0:  # CleanRL logs the loss and Q-values: 2 syncs
                    loss.item(), old_val.mean().item()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if global_step % 1000 == 0:
                target_network.load_state_dict(q_network.state_dict())
    device_sync(device)()
    end = time.perf_counter()
    envs.close()
    return Laps(lap - start, end - lap)


def check_game(env_id: str) -> None:
    """Both loops need an Atari id whose emulator does not skip frames: CleanRL's wrappers skip
    4 themselves (on `ALE/…-v5`, which skips 4 already, it would skip 16)."""
    if importlib.util.find_spec("ale_py") is None:
        raise UserError('the Atari benchmark needs ale-py: pip install -e ".[atari]"')
    try:
        name = check_env_id(env_id)  # registers ALE's ids, as our loop does
    except UnknownEnvError:
        raise UserError(f"unknown env id '{env_id}'; try BreakoutNoFrameskip-v4") from None
    if pixel_family(name) != "atari" or gym.spec(name).kwargs.get("frameskip") != 1:
        raise UserError(f"--env {env_id}: needs an Atari game without frame skip, such as "
                        f"BreakoutNoFrameskip-v4 (CleanRL's wrappers skip 4 frames themselves)")


def warm_up(device: torch.device) -> None:
    """One forward and backward of the Nature CNN, so that whichever loop runs first does not
    pay the device libraries' start-up (cuBLAS, cuDNN) inside its clock."""
    net = NatureQNetwork(4).to(device)
    net(torch.zeros(32, 4, 84, 84, device=device)).sum().backward()
    device_sync(device)()


def rates(opts: AtariLoopBench, laps: Laps) -> tuple[float, float]:
    """(env steps/s before updates, env steps/s with updates)."""
    return (opts.learning_starts / laps.collect_seconds,
            (opts.total_steps - 1 - opts.learning_starts) / laps.update_seconds)


def table(opts: AtariLoopBench, ours: dict[int, Laps], theirs: dict[int, Laps]) -> list[str]:
    """Per seed: both loops' env steps/s in each phase and ours over CleanRL's."""
    lines = [f"{'seed':>4}  {'phase':<15} {'ours':>12} {'CleanRL design':>15} {'ratio':>6}"]
    for seed in opts.seeds:
        mine = rates(opts, ours[seed])
        other = rates(opts, theirs[seed]) if seed in theirs else (None, None)
        for phase, a, b in zip(("before updates", "with updates"), mine, other):
            cells = (f"{b:>11.1f}/s", f"{a / b:>6.2f}") if b else (f"{'-':>13}", f"{'-':>6}")
            lines.append(f"{seed:>4}  {phase:<15} {a:>10.1f}/s {cells[0]:>15} {cells[1]}")
    if theirs:
        for i, phase in enumerate(("before updates", "with updates")):
            ratio = statistics.median(rates(opts, ours[s])[i] / rates(opts, theirs[s])[i]
                                      for s in opts.seeds)
            lines.append(f"median ratio (ours / CleanRL's design), {phase}: {ratio:.2f}")
    return lines


def atari_loop_command(argv: list[str]) -> int:
    import tyro

    opts = tyro.cli(AtariLoopBench, args=argv, prog="rlplay bench dqn-atari",
                    description=__doc__.split("\n\n")[0])
    if not 0 < opts.learning_starts < opts.total_steps - 1:
        raise UserError("--learning-starts must be positive and below --total-steps - 1")
    if not opts.seeds or len(set(opts.seeds)) != len(opts.seeds):
        raise UserError("--seeds needs at least one seed, each once")
    if opts.threads < 0:
        raise UserError("--threads must be 0 (torch's default) or more")
    check_game(opts.env)
    device = resolve_device(opts.device)
    with_cleanrl = opts.cleanrl
    if with_cleanrl:
        try:
            import stable_baselines3  # noqa: F401  (CleanRL's wrappers and replay buffer)
        except ImportError:
            print(f"note: stable-baselines3 is not installed, running ours only "
                  f"({INSTALL_SB3} adds it)")
            with_cleanrl = False
    print(f"{opts.env}: {opts.total_steps:,} env steps, updates from {opts.learning_starts:,} "
          f"(batch 32, one per 4 steps), ε {opts.epsilon}, buffer {opts.buffer_size:,}, "
          f"{opts.threads} thread(s), torch {torch.__version__} on {device}", flush=True)
    warm_up(device)
    ours, theirs = {}, {}
    try:
        for i, seed in enumerate(opts.seeds):
            runs = [(ours, run_ours), (theirs, run_cleanrl)] if with_cleanrl else [(ours, run_ours)]
            for results, run in runs[:: 1 if i % 2 == 0 else -1]:  # each first every other seed
                results[seed] = run(opts, seed)
            print(f"seed {seed} done", flush=True)
    except KeyboardInterrupt:
        return interrupted()
    print("\n".join(table(opts, ours, theirs)))
    return 0
