"""Replay storage preallocated as torch tensors on the training device."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Transitions(NamedTuple):
    """A batch of transitions; `next_obs` is the true next observation (final obs on episode end)."""

    obs: torch.Tensor  # (B, *obs_shape), the env's dtype
    action: torch.Tensor  # (B, *action_shape)
    reward: torch.Tensor  # (B,) float32
    next_obs: torch.Tensor  # (B, *obs_shape)
    terminated: torch.Tensor  # (B,) bool: true end of the MDP, so no bootstrap


class ReplayBuffer:
    """A ring of the last `capacity` transitions, added N envs at a time, sampled uniformly.

    Each transition stores its own `next_obs` (the env's `final_obs` where an episode ended), so a
    sampled transition never spans an episode boundary, and a truncated one still bootstraps from
    its true last observation. Sampling uses the buffer's own seeded generator on its device.
    """

    def __init__(
        self,
        *,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: torch.dtype,
        action_shape: tuple[int, ...] = (),
        action_dtype: torch.dtype = torch.int64,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype, device=self.device)
        self.next_obs = torch.zeros_like(self.obs)
        self.action = torch.zeros((capacity, *action_shape), dtype=action_dtype, device=self.device)
        self.reward = torch.zeros(capacity, dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=self.device)
        self.pos, self.size = 0, 0  # host ints: known without a device sync
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._storage().values())

    def add(self, obs, action, reward, next_obs, terminated, truncated=None) -> None:
        """Append one step of N envs: every argument has a leading dimension N.

        `truncated` is not needed here (each transition keeps its own next_obs); it is taken so
        that this buffer and FrameReplayBuffer are filled the same way.
        """
        n = obs.shape[0]
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions to a buffer of capacity {self.capacity}")
        values = {
            "obs": obs, "next_obs": next_obs, "action": action, "reward": reward,
            "terminated": terminated,
        }
        # Slice writes (two where the ring wraps) cost a fraction of an index-tensor scatter.
        first = min(n, self.capacity - self.pos)
        for key, storage in self._storage().items():
            value = values[key].to(self.device, storage.dtype)
            storage[self.pos : self.pos + first] = value[:first]
            if first < n:
                storage[: n - first] = value[first:]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def cut_episodes(self) -> None:
        """The next `add` starts new episodes (envs reset on resume): nothing to do here, each
        transition holds its own next_obs."""

    def sample(self, batch_size: int) -> Transitions:
        """`batch_size` transitions drawn uniformly, with replacement, from those stored."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx_B = torch.randint(
            0, self.size, (batch_size,), device=self.device, generator=self.generator
        )
        return Transitions(
            self.obs[idx_B], self.action[idx_B], self.reward[idx_B], self.next_obs[idx_B],
            self.terminated[idx_B],
        )

    def _storage(self) -> dict[str, torch.Tensor]:
        return {
            "obs": self.obs, "next_obs": self.next_obs, "action": self.action,
            "reward": self.reward, "terminated": self.terminated,
        }

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: the stored prefix, pointers and sampler RNG."""
        return {
            "capacity": self.capacity, "pos": self.pos, "size": self.size,
            "generator": self.generator.get_state(),
            **{k: v[: self.size].cpu() for k, v in self._storage().items()},
        }

    def load_state_dict(self, state: dict) -> bool:
        """Load a `state_dict()`; returns False if the sampler RNG was for another device type."""
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"saved buffer has capacity {state['capacity']}, this one {self.capacity}"
            )
        self.pos, self.size = state["pos"], state["size"]
        for key, tensor in self._storage().items():
            tensor[: self.size] = state[key].to(self.device)
        return set_generator_state(self.generator, state["generator"])


def set_generator_state(generator: torch.Generator, state: torch.Tensor) -> bool:
    """Restore a generator if `state` came from one of the same kind; False (untouched) if not.

    CPU and CUDA generators have different state layouts, so a run moved between devices
    continues with freshly seeded streams instead of failing.
    """
    if state.numel() != generator.get_state().numel():
        return False
    generator.set_state(state)
    return True


class RolloutBuffer:
    """One on-policy rollout of T steps of N envs, stored time-first (T, N, …) on the device."""

    def __init__(
        self,
        *,
        num_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: torch.dtype,
        action_shape: tuple[int, ...] = (),
        action_dtype: torch.dtype = torch.int64,
        device: torch.device | str = "cpu",
    ):
        T, N, self.device = num_steps, num_envs, torch.device(device)
        zeros = lambda *shape, dtype=torch.float32: torch.zeros(shape, dtype=dtype, device=self.device)  # noqa: E731
        self.obs = zeros(T, N, *obs_shape, dtype=obs_dtype)
        self.final_obs = zeros(T, N, *obs_shape, dtype=obs_dtype)  # the true next obs of each step
        self.action = zeros(T, N, *action_shape, dtype=action_dtype)
        self.logprob, self.value, self.reward = zeros(T, N), zeros(T, N), zeros(T, N)
        self.terminated = zeros(T, N, dtype=torch.bool)
        self.truncated = zeros(T, N, dtype=torch.bool)

    def store(self, t: int, *, obs, action, reward, terminated, truncated, final_obs):
        """Write step t of every env (`logprob` and `value` are filled once the rollout is
        complete, in one batched forward)."""
        self.obs[t] = obs
        self.action[t] = action
        self.reward[t] = reward.to(torch.float32)
        self.terminated[t] = terminated
        self.truncated[t] = truncated
        self.final_obs[t] = final_obs


class FrameReplayBuffer:
    """A replay ring for frame-stacked observations (S, H, W) that stores each frame once.

    Stacks are rebuilt at sample time from the newest frame of each step's observation, so a
    transition costs H·W bytes plus small per-step fields instead of 2·S·H·W (the DQN replay
    memory of Mnih et al. 2015; 1M Atari transitions ≈ 7.1 GB). Steps are stored time-first
    (rows × N envs) and must arrive in order, one step of all N envs per `add`, as the loop
    steps them; observations stacked the way `FrameStackObservation(padding_type="reset")` does,
    frames before an episode's first observation being that observation's frame.

    - Episode boundaries: each row keeps how many steps its obs is into the episode (capped at
      S − 1), so no stack mixes two episodes. A done transition's next observation is not the
      next row's (that is the reset one): a truncated transition's true last frame is kept in a
      small ring of `final_capacity` frames (it bootstraps from it); a terminated transition's is
      not kept, because no target reads it, and comes back as zeros. `cut_episodes` keeps the
      newest row's the same way when the envs are reset under it (a resume without env state).
    - Rows whose stacks would need frames already overwritten (the oldest S − 1 rows, the first
      S − 1 rows after construction, truncated transitions whose last frame left the small ring)
      are never sampled. Sampling is uniform over the others with the buffer's own generator.
      Which ones can be sampled is kept up to date as rows are added, touching only the S rows
      an add can change and the owners of evicted last frames: recomputing it over the whole
      ring took 11 ms per sample at 1M transitions on one CPU core.
    """

    def __init__(
        self,
        *,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, int, int],
        action_shape: tuple[int, ...] = (),
        action_dtype: torch.dtype = torch.int64,
        device: torch.device | str = "cpu",
        seed: int = 0,
        final_capacity: int | None = None,
    ):
        S, H, W = obs_shape
        rows = capacity // num_envs
        if rows < S + 1:
            raise ValueError(
                f"capacity {capacity} holds fewer than {S + 1} steps of {num_envs} envs"
            )
        self.capacity, self.num_envs, self.stack, self.rows = rows * num_envs, num_envs, S, rows
        self.device = torch.device(device)
        self.final_capacity = final_capacity or max(4 * num_envs, capacity // 256)
        if self.final_capacity < num_envs:  # one step could overwrite its own last frames
            raise ValueError(
                f"final_capacity {self.final_capacity} is below one step of {num_envs} envs"
            )
        def zeros(*shape, dtype):
            return torch.zeros(shape, dtype=dtype, device=self.device)

        C, N = rows, num_envs
        self.frame = zeros(C, N, H, W, dtype=torch.uint8)  # the newest frame of each step's obs
        self.action = zeros(C, N, *action_shape, dtype=action_dtype)
        self.reward = zeros(C, N, dtype=torch.float32)
        self.terminated = zeros(C, N, dtype=torch.bool)
        # The next obs's last frame is in the small ring (truncated, or cut by cut_episodes).
        self.has_final = zeros(C, N, dtype=torch.bool)
        self.ep_step = zeros(C, N, dtype=torch.uint8)  # steps into the episode, capped at S − 1
        self.final_index = zeros(C, N, dtype=torch.int64)  # its slot count in `final`
        self.final = zeros(self.final_capacity + 1, H, W, dtype=torch.uint8)  # + a discard slot
        self.final_count = zeros(dtype=torch.int64)  # last frames written to the ring so far
        # Derived from the above (rebuilt on load, not saved): the row·N + env whose last frame
        # each ring slot holds, and valid() as 0/1 kept up to date by every add.
        self.final_owner = zeros(self.final_capacity + 1, dtype=torch.int64)
        self.sampleable = zeros(C, N, dtype=torch.uint8)
        self.next_frame = zeros(N, H, W, dtype=torch.uint8)  # the newest row's next frame
        # The history of the first observation is unknown: treat it as S − 1 steps deep.
        self.ep_step_N = torch.full((N,), S - 1, dtype=torch.uint8, device=self.device)
        self.pos, self.filled = 0, 0  # host ints: the next row, rows written
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return self.filled * self.num_envs

    @property
    def nbytes(self) -> int:
        """Bytes of every tensor the buffer holds on its device."""
        return sum(t.nbytes for t in self.tensors())

    def tensors(self) -> list[torch.Tensor]:
        return [
            *self._storage().values(), self.final_count, self.ep_step_N, self.final_owner,
            self.sampleable,
        ]

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Append one step of the N envs: obs and next_obs (N, S, H, W), the rest (N, …).

        `next_obs` is the true next observation (the final one where an episode ended).
        """
        t, S = self.pos, self.stack
        terminated = terminated.to(self.device, torch.bool)
        truncated = truncated.to(self.device, torch.bool)
        self.frame[t] = obs[:, -1]
        self.action[t] = action.to(self.device, self.action.dtype)
        self.reward[t] = reward.to(self.device, torch.float32)
        self.terminated[t] = terminated
        self.ep_step[t] = self.ep_step_N
        last_frame = next_obs[:, -1].to(self.device)
        self.next_frame.copy_(last_frame)
        self.has_final[t] = False
        self._keep_final(t, truncated & ~terminated, last_frame)
        done = terminated | truncated
        self.ep_step_N = torch.where(
            done, torch.zeros_like(self.ep_step_N), (self.ep_step_N + 1).clamp_max(S - 1)
        )
        self.pos = (t + 1) % self.rows
        self.filled = min(self.filled + 1, self.rows)
        # Only row t and the S − 1 after it (the oldest, which just lost a frame of history
        # once the ring is full) can change; evictions from the small ring were handled above.
        rows_S = (t + torch.arange(S, device=self.device)) % self.rows
        self.sampleable[rows_S] = self._validity(rows_S).to(torch.uint8)

    def _keep_final(self, t: int, keep_N: torch.Tensor, last_frame_NHW: torch.Tensor) -> None:
        """Put row t's next-obs last frames in the small ring where `keep_N`; the other envs
        write to its discard slot, so no host sync is needed to pick them. The transitions whose
        last frames they overwrite can no longer be sampled."""
        count = self.final_count + torch.cumsum(keep_N.long(), 0) - 1
        slot = torch.where(keep_N, count % self.final_capacity, self.final_capacity)
        owner_N = self.final_owner[slot]
        evicted_N = (
            keep_N & self.has_final.view(-1)[owner_N]
            & (self.final_index.view(-1)[owner_N] == count - self.final_capacity)
        )
        # A minimum, so that envs that evict nothing (the discard slot's, stale owners) leave
        # the flag as it is whatever the order of duplicate owners.
        self.sampleable.view(-1).scatter_reduce_(
            0, owner_N, (~evicted_N).to(torch.uint8), reduce="amin"
        )
        self.final.index_copy_(0, slot, last_frame_NHW)
        self.final_owner.index_copy_(
            0, slot, t * self.num_envs + torch.arange(self.num_envs, device=self.device)
        )
        self.final_index[t] = torch.where(keep_N, count, self.final_index[t])
        self.has_final[t] |= keep_N
        self.final_count += keep_N.sum()

    def cut_episodes(self) -> None:
        """The next `add` starts new episodes in every env (they were reset under the buffer, as
        on a resume without env state): the newest row keeps its true next frame in the small
        ring, since the next row will not hold it."""
        if self.filled:
            t = (self.pos - 1) % self.rows
            self._keep_final(t, self.ep_step_N != 0, self.next_frame)  # 0: it ended there
        self.ep_step_N.zero_()

    def valid(self) -> torch.Tensor:
        """(rows, N) bool: the transitions whose stacks can be rebuilt exactly."""
        return self.sampleable.bool()

    def _validity(self, rows_R: torch.Tensor) -> torch.Tensor:
        """(R, N) bool: whether these rows' transitions can be rebuilt exactly, from scratch."""
        age = (self.pos - 1 - rows_R) % self.rows
        older = (self.filled - 1 - age).unsqueeze(1)  # rows stored before each row
        written = (age < self.filled).unsqueeze(1)
        history = self.ep_step[rows_R].long() <= older
        final_kept = self.final_index[rows_R] >= self.final_count - self.final_capacity
        return written & history & (final_kept | ~self.has_final[rows_R])

    def sample(self, batch_size: int) -> Transitions:
        """`batch_size` transitions drawn uniformly, with replacement, from the valid ones."""
        if self.filled < self.stack:
            raise ValueError(f"cannot sample before {self.stack} steps were added")
        weights = self.sampleable.flatten().float()
        idx_B = torch.multinomial(weights, batch_size, replacement=True, generator=self.generator)
        return self.get(idx_B)

    def get(self, idx_B: torch.Tensor) -> Transitions:
        """The transitions at flat indices row·N + env, their stacks rebuilt."""
        S, N = self.stack, self.num_envs
        t_B, n_B = idx_B // N, idx_B % N
        back_S = torch.arange(S - 1, -1, -1, device=self.device)  # S − 1 steps back … 0
        back_BS = torch.minimum(back_S, self.ep_step[t_B, n_B].long().unsqueeze(1))
        rows_BS = (t_B.unsqueeze(1) - back_BS) % self.rows
        obs_BSHW = self.frame[rows_BS, n_B.unsqueeze(1)]
        # The next obs's newest frame: the next row's (the pending one for the newest row), the
        # kept last frame of a truncated episode, zeros after a termination.
        newest_B = t_B == (self.pos - 1) % self.rows
        following_BHW = torch.where(
            newest_B[:, None, None], self.next_frame[n_B], self.frame[(t_B + 1) % self.rows, n_B]
        )
        terminated_B, has_final_B = self.terminated[t_B, n_B], self.has_final[t_B, n_B]
        final_BHW = self.final[self.final_index[t_B, n_B] % self.final_capacity]
        last_BHW = torch.where(has_final_B[:, None, None], final_BHW, following_BHW)
        last_BHW = last_BHW * ~terminated_B[:, None, None]
        next_obs_BSHW = torch.cat([obs_BSHW[:, 1:], last_BHW.unsqueeze(1)], dim=1)
        return Transitions(
            obs_BSHW, self.action[t_B, n_B], self.reward[t_B, n_B], next_obs_BSHW, terminated_B
        )

    def _storage(self) -> dict[str, torch.Tensor]:
        return {
            "frame": self.frame, "action": self.action, "reward": self.reward,
            "terminated": self.terminated, "has_final": self.has_final, "ep_step": self.ep_step,
            "final_index": self.final_index, "final": self.final, "next_frame": self.next_frame,
        }

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: the stored rows, pointers and sampler RNG."""
        rows = self._storage()
        return {
            "capacity": self.capacity, "num_envs": self.num_envs, "pos": self.pos,
            "filled": self.filled, "generator": self.generator.get_state(),
            "final_count": self.final_count.cpu(), "ep_step_N": self.ep_step_N.cpu(),
            **{k: (v if k in ("final", "next_frame") else v[: self.filled]).cpu()
               for k, v in rows.items()},
        }

    def load_state_dict(self, state: dict) -> bool:
        """Load a `state_dict()`; returns False if the sampler RNG was for another device type."""
        if (state["capacity"], state["num_envs"]) != (self.capacity, self.num_envs):
            raise ValueError(
                f"saved buffer holds {state['capacity']} transitions of {state['num_envs']} envs, "
                f"this one {self.capacity} of {self.num_envs}"
            )
        self.pos, self.filled = state["pos"], state["filled"]
        for key, tensor in self._storage().items():
            tensor[: len(state[key])] = state[key].to(self.device)
        self.final_count.copy_(state["final_count"])
        self.ep_step_N = state["ep_step_N"].to(self.device)
        # The derived fields: each kept last frame's owner, then what can be sampled.
        all_rows = torch.arange(self.rows, device=self.device)
        kept = self.has_final & (self.final_index >= self.final_count - self.final_capacity)
        kept[self.filled :] = False  # rows not in the state: stale if this buffer was used
        (owner_K,) = kept.view(-1).nonzero(as_tuple=True)
        self.final_owner.index_copy_(
            0, self.final_index.view(-1)[owner_K] % self.final_capacity, owner_K
        )
        self.sampleable.copy_(self._validity(all_rows))
        return set_generator_state(self.generator, state["generator"])
