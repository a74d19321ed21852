"""Actor-critic networks: a categorical or diagonal-Gaussian policy head and a value head."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nets.mlp import encode_obs, make_trunk
from nets.normalize import RunningNorm

LOG_2PI = math.log(2 * math.pi)
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def orthogonal_init(module: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights and constant biases for every Linear and Conv2d in `module` (Engstrom
    et al. 2020, "Implementation Matters in Deep Policy Gradients": one of PPO's code-level
    optimisations)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            # Drawn into a contiguous copy: orthogonal_ views the weight as a matrix, which a
            # channels-last convolution weight (ConvEncoder's Nature stack) cannot be.
            weight = torch.empty_like(layer.weight, memory_format=torch.contiguous_format)
            nn.init.orthogonal_(weight, gain)
            with torch.no_grad():
                layer.weight.copy_(weight)
            nn.init.constant_(layer.bias, bias)
    return module


def categorical_log_prob(logits_BA: torch.Tensor, action_B: torch.Tensor) -> torch.Tensor:
    """log π(a|s) of a categorical policy given its unnormalised logits."""
    return _pick(F.log_softmax(logits_BA, dim=-1), action_B)


def categorical_entropy(logits_BA: torch.Tensor) -> torch.Tensor:
    """H[π(·|s)] = −Σ_a p log p of a categorical policy."""
    return _entropy(F.log_softmax(logits_BA, dim=-1))


def _pick(log_p_BA: torch.Tensor, action_B: torch.Tensor) -> torch.Tensor:
    return log_p_BA.gather(-1, action_B.long().unsqueeze(-1)).squeeze(-1)


def _entropy(log_p_BA: torch.Tensor) -> torch.Tensor:
    return -(log_p_BA.exp() * log_p_BA).sum(-1)


def gaussian_log_prob(mean_BA, log_std_A, action_BA) -> torch.Tensor:
    """log π(a|s) of a diagonal Gaussian, summed over action dimensions."""
    z_BA = (action_BA - mean_BA) * torch.exp(-log_std_A)
    return (-0.5 * z_BA.pow(2) - log_std_A - 0.5 * LOG_2PI).sum(-1)


def gaussian_entropy(log_std_A: torch.Tensor, batch: int) -> torch.Tensor:
    """Entropy of a diagonal Gaussian (independent of the mean), repeated for a batch."""
    return (log_std_A + 0.5 * (1.0 + LOG_2PI)).sum(-1).expand(batch)


class ActorCritic(nn.Module):
    """π(a|s) and V(s) from separate trunks (or one shared trunk): tanh MLPs for flat obs, a
    CNN then a ReLU MLP for images (obs_shape given; as CleanRL's ppo_atari.py).

    Discrete actions: a categorical head over `num_actions` logits. Continuous actions: a
    diagonal Gaussian with a state-independent, learned log-std (as in PPO's MuJoCo setup).
    """

    def __init__(
        self,
        *,
        obs_dim: int,
        action_dim: int,
        continuous: bool,
        hidden: Sequence[int] = (64, 64),
        shared: bool = False,
        activation: str = "tanh",
        discrete_obs: bool = False,
        init_log_std: float = 0.0,
        norm_obs: bool = False,
        obs_shape: Sequence[int] | None = None,
        obs_scale: float = 1.0,
    ):
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one layer size")
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.continuous, self.shared, self.discrete_obs = continuous, shared, discrete_obs
        self.image = obs_shape is not None
        trunk = dict(
            obs_dim=obs_dim, hidden=hidden,
            act=nn.ReLU if self.image else ACTIVATIONS[activation],
            obs_shape=obs_shape, obs_scale=obs_scale,
        )
        self.actor_trunk = make_trunk(**trunk)
        self.critic_trunk = self.actor_trunk if shared else make_trunk(**trunk)
        self.policy_head = nn.Linear(hidden[-1], action_dim)
        self.value_head = nn.Linear(hidden[-1], 1)
        orthogonal_init(self.actor_trunk)
        orthogonal_init(self.critic_trunk)
        # Small policy outputs start near-uniform / near-zero-mean; value head at unit scale.
        orthogonal_init(self.policy_head, gain=0.01)
        orthogonal_init(self.value_head, gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), init_log_std)) if continuous else None
        # Observation statistics live in the module: saved with it, frozen in every forward.
        # Images are scaled by their known range instead.
        self.obs_norm = (
            RunningNorm((obs_dim,)) if norm_obs and not discrete_obs and not self.image else None
        )

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        x = encode_obs(obs, self.obs_dim, self.discrete_obs, self.image)
        return self.obs_norm(x) if self.obs_norm is not None else x

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """The actor trunk's features (B, H): what a pretrained representation transfers."""
        return self.actor_trunk(self.features(obs))

    def policy_params(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits (B, A) for discrete actions, Gaussian means (B, A) for continuous ones."""
        return self.policy_head(self.embed(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s): (B,)."""
        return self.value_head(self.critic_trunk(self.features(obs))).squeeze(-1)

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None):
        """(action, log π(action|s)) sampled from the policy with the given generator."""
        params = self.policy_params(obs)
        action = self._perturb(params, self.noise(params.shape[:-1], generator))
        return action, self._log_prob(params, action)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log π(a|s) alone: the policy's forward, without the critic's."""
        return self._log_prob(self.policy_params(obs), action)

    def _log_prob(self, params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if self.continuous:
            return gaussian_log_prob(params, self.log_std, action)
        return categorical_log_prob(params, action)

    def noise(self, batch_shape: Sequence[int], generator: torch.Generator | None = None):
        """Sampling noise for `batch_shape` actions (…, A): standard normal for the Gaussian,
        Gumbel(0, 1) for the categorical (Gumbel-max). A rollout draws all of its noise at once,
        so that each env step's `draw` costs only the forward pass and two or three ops."""
        shape, device = (*batch_shape, self.action_dim), self.policy_head.weight.device
        if self.continuous:
            return torch.randn(shape, device=device, generator=generator)
        u = torch.rand(shape, device=device, generator=generator)
        return -torch.log(-torch.log(u.clamp_min(1e-20)))

    def draw(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Actions sampled with pre-drawn `noise` (from `noise`), without their log-probability
        (the rollout's hot path; `evaluate_actions` gives it later, batched)."""
        return self._perturb(self.policy_params(obs), noise)

    def _perturb(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.continuous:
            return params + noise * self.log_std.exp()
        return (params + noise).argmax(-1)  # Gumbel-max: a sample of softmax(params)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The most likely action: argmax logits, or the Gaussian mean (for evaluation)."""
        params = self.policy_params(obs)
        return params if self.continuous else params.argmax(-1)

    def evaluate_actions(self, obs: torch.Tensor, action: torch.Tensor):
        """(log π(a|s), entropy, V(s)) for stored actions: what PPO/A2C losses need."""
        # The input features (and a shared trunk) once for both heads: a CNN on pixels.
        x = self.features(obs)
        hidden = self.actor_trunk(x)
        params = self.policy_head(hidden)
        value_hidden = hidden if self.shared else self.critic_trunk(x)
        if self.continuous:
            logprob = gaussian_log_prob(params, self.log_std, action)
            entropy = gaussian_entropy(self.log_std, params.shape[0])
        else:
            log_p = F.log_softmax(params, dim=-1)  # once for both (the update's hot path)
            logprob, entropy = _pick(log_p, action), _entropy(log_p)
        return logprob, entropy, self.value_head(value_hidden).squeeze(-1)
