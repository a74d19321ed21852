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

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        """Append one step of N envs: every argument has a leading dimension N."""
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

    def store(self, t: int, *, obs, action, logprob, value, reward, terminated, truncated, final_obs):
        """Write step t of every env."""
        self.obs[t] = obs
        self.action[t] = action
        self.logprob[t] = logprob
        self.value[t] = value
        self.reward[t] = reward.to(torch.float32)
        self.terminated[t] = terminated
        self.truncated[t] = truncated
        self.final_obs[t] = final_obs
