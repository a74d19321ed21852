"""space_sizes, MLP and QNetwork: sizes from spaces, output shapes, one-hot and dueling math."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from nets import MLP, QNetwork, space_sizes
from nets.mlp import encode_obs

Box, Discrete = gym.spaces.Box, gym.spaces.Discrete


@pytest.mark.parametrize(
    "obs_space, action_space, expected",
    [
        (Box(-1, 1, (4,)), Discrete(2), {"obs_dim": 4, "num_actions": 2, "discrete_obs": False}),
        (Box(0, 255, (2, 3, 4), np.float32), Discrete(6),
         {"obs_dim": 24, "num_actions": 6, "discrete_obs": False}),  # flattened (uint8: an image)
        (Discrete(16), Discrete(4), {"obs_dim": 16, "num_actions": 4, "discrete_obs": True}),
    ],
)
def test_space_sizes(obs_space, action_space, expected):
    sizes = space_sizes(obs_space, action_space)
    assert sizes == expected
    assert all(type(v) in (int, bool) for v in sizes.values())  # plain Python, for checkpoints


@pytest.mark.parametrize("env_id, expected", [
    ("CartPole-v1", {"obs_dim": 4, "num_actions": 2, "discrete_obs": False}),
    ("FrozenLake-v1", {"obs_dim": 16, "num_actions": 4, "discrete_obs": True}),
])
def test_space_sizes_of_registered_envs(env_id, expected):
    env = gym.make(env_id)
    assert space_sizes(env.observation_space, env.action_space) == expected
    env.close()


@pytest.mark.parametrize("action_space", [
    Box(-1, 1, (2,)),
    gym.spaces.MultiDiscrete([2, 3]),
    gym.spaces.MultiBinary(3),
])
def test_space_sizes_rejects_non_discrete_actions(action_space):
    with pytest.raises(TypeError, match="not Discrete"):
        space_sizes(Box(-1, 1, (4,)), action_space)


@pytest.mark.parametrize("obs_space", [
    gym.spaces.Tuple((Discrete(2), Discrete(3))),
    gym.spaces.Dict({"x": Box(-1, 1, (2,))}),
    gym.spaces.MultiDiscrete([2, 3]),
    gym.spaces.Text(5),
])
def test_space_sizes_rejects_unsupported_observations(obs_space):
    with pytest.raises(TypeError, match="not supported"):
        space_sizes(obs_space, Discrete(2))


@pytest.mark.parametrize("obs_space, action_space", [
    (Discrete(3, start=1), Discrete(2)),
    (Box(-1, 1, (4,)), Discrete(2, start=5)),
])
def test_space_sizes_rejects_discrete_with_nonzero_start(obs_space, action_space):
    with pytest.raises((TypeError, ValueError)):
        space_sizes(obs_space, action_space)


def linear_sizes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_mlp_layers():
    mlp = MLP(3, 2, (8, 5))
    assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert linear_sizes(mlp) == [(3, 8), (8, 5), (5, 2)]
    assert mlp(torch.zeros(7, 3)).shape == (7, 2)


def test_mlp_without_hidden_layers_is_one_linear():
    mlp = MLP(3, 2, ())
    assert [type(m) for m in mlp] == [nn.Linear]
    assert linear_sizes(mlp) == [(3, 2)]


def test_mlp_output_is_not_rectified():
    mlp = MLP(3, 4, (16,))
    with torch.no_grad():
        mlp[-1].bias.fill_(-100.0)
    assert (mlp(torch.zeros(2, 3)) < 0).all()


@pytest.mark.parametrize("dueling", [False, True])
def test_qnetwork_layer_sizes(dueling):
    net = QNetwork(obs_dim=4, num_actions=3, hidden=(8, 5), dueling=dueling)
    assert linear_sizes(net.trunk) == [(4, 8), (8, 5)]
    assert isinstance(net.trunk[-1], nn.ReLU)  # the last hidden layer is rectified too
    if dueling:
        assert linear_sizes(net.value) == [(5, 1)] and linear_sizes(net.advantage) == [(5, 3)]
        assert not hasattr(net, "head")
    else:
        assert linear_sizes(net.head) == [(5, 3)]
    expected = 4 * 8 + 8 + 8 * 5 + 5 + (5 * 1 + 1 + 5 * 3 + 3 if dueling else 5 * 3 + 3)
    assert sum(p.numel() for p in net.parameters()) == expected


def test_qnetwork_needs_a_hidden_layer():
    with pytest.raises(ValueError, match="hidden"):
        QNetwork(obs_dim=4, num_actions=2, hidden=())


@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("obs_shape, obs_dtype", [
    ((4,), torch.float32),
    ((2, 3), torch.float32),  # multi-dim Box, flattened to 6
    ((2, 3), torch.uint8),  # cast to float
])
def test_qnetwork_box_output_shape(dueling, obs_shape, obs_dtype):
    torch.manual_seed(0)
    obs_dim = int(np.prod(obs_shape))
    net = QNetwork(obs_dim=obs_dim, num_actions=3, hidden=(8,), dueling=dueling)
    obs = torch.randint(0, 5, (5, *obs_shape)).to(obs_dtype)
    q_BA = net(obs)
    assert q_BA.shape == (5, 3) and q_BA.dtype == torch.float32
    # Flattening: the same numbers as a flat float batch.
    torch.testing.assert_close(q_BA, net(obs.reshape(5, obs_dim).float()))


@pytest.mark.parametrize("dueling", [False, True])
def test_qnetwork_discrete_obs_are_one_hot(dueling):
    torch.manual_seed(0)
    net = QNetwork(obs_dim=7, num_actions=3, hidden=(8,), dueling=dueling, discrete_obs=True)
    twin = QNetwork(obs_dim=7, num_actions=3, hidden=(8,), dueling=dueling)
    twin.load_state_dict(net.state_dict())
    obs_B = torch.tensor([0, 6, 3, 3, 1])
    q_BA = net(obs_B)
    assert q_BA.shape == (5, 3)
    torch.testing.assert_close(q_BA, twin(torch.eye(7)[obs_B]))
    torch.testing.assert_close(encode_obs(obs_B, net.obs_dim, net.discrete_obs), torch.eye(7)[obs_B])
    assert torch.equal(q_BA[2], q_BA[3]) and not torch.equal(q_BA[0], q_BA[1])


def test_dueling_identity():
    # Wang et al. 2016 eq. 9: Q = V + A − mean_a A, so mean_a Q = V and Q − mean Q = A − mean A.
    torch.manual_seed(0)
    net = QNetwork(obs_dim=4, num_actions=5, hidden=(16, 8), dueling=True)
    with torch.no_grad():
        net.advantage.bias.add_(3.0)  # a non-centred advantage, so centring matters
    obs_BO = torch.randn(32, 4)
    q_BA = net(obs_BO)
    h_BH = net.trunk(encode_obs(obs_BO, net.obs_dim, net.discrete_obs))
    value_B = net.value(h_BH).squeeze(1)
    advantage_BA = net.advantage(h_BH)
    torch.testing.assert_close(q_BA.mean(dim=1), value_B)
    torch.testing.assert_close(
        q_BA - q_BA.mean(dim=1, keepdim=True),
        advantage_BA - advantage_BA.mean(dim=1, keepdim=True),
    )
    assert not torch.allclose(advantage_BA.mean(dim=1), torch.zeros(32), atol=1.0)
