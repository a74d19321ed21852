"""CNNs for image observations: picked from the space, output shapes, scaling inside the net."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from nets import ActorCritic, QNetwork, policy_sizes, space_sizes
from nets.cnn import ConvEncoder

ATARI = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
MINATAR = gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)


def test_image_spaces_get_shape_and_scale():
    assert space_sizes(ATARI, gym.spaces.Discrete(6)) == {
        "obs_dim": 4 * 84 * 84, "discrete_obs": False, "obs_shape": (4, 84, 84),
        "obs_scale": 1 / 255, "num_actions": 6,
    }
    sizes = policy_sizes(MINATAR, gym.spaces.Discrete(3))
    assert sizes["obs_shape"] == (4, 10, 10) and sizes["obs_scale"] == 1.0
    assert "obs_shape" not in space_sizes(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))


def test_nature_cnn_for_84x84_and_small_cnn_for_10x10():
    nature = ConvEncoder((4, 84, 84))
    convs = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0])
             for m in nature.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(4, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)]  # Mnih et al. 2015
    assert nature.out_dim == 64 * 7 * 7
    small = ConvEncoder((7, 10, 10))
    convs = [(m.in_channels, m.out_channels, m.kernel_size[0]) for m in small.modules()
             if isinstance(m, nn.Conv2d)]
    assert convs == [(7, 16, 3)] and small.out_dim == 16 * 8 * 8  # MinAtar's network


@pytest.mark.parametrize("space, hidden", [(ATARI, (512,)), (MINATAR, (128,))])
@pytest.mark.parametrize("dueling", [False, True])
def test_qnetwork_on_images(space, hidden, dueling):
    net = QNetwork(**space_sizes(space, gym.spaces.Discrete(5)), hidden=hidden, dueling=dueling)
    obs = torch.from_numpy(np.stack([space.sample() for _ in range(3)]))
    q_BA = net(obs)
    assert q_BA.shape == (3, 5) and q_BA.dtype == torch.float32


@pytest.mark.parametrize("space", [ATARI, MINATAR])
@pytest.mark.parametrize("shared", [False, True])
def test_actor_critic_on_images(space, shared):
    net = ActorCritic(**policy_sizes(space, gym.spaces.Discrete(4)), hidden=(64,), shared=shared)
    obs = torch.from_numpy(np.stack([space.sample() for _ in range(3)]))
    action, logprob = net.sample(obs)
    assert action.shape == logprob.shape == net.value(obs).shape == (3,)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == (1 if shared else 2) * (3 if space is ATARI else 1)
    assert not any(isinstance(m, nn.Tanh) for m in net.modules())  # ReLU nets for pixels
    assert net.obs_norm is None


def test_uint8_pixels_are_scaled_inside_the_network():
    net = QNetwork(**space_sizes(ATARI, gym.spaces.Discrete(4)), hidden=(32,))
    pixels = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    unscaled = QNetwork(obs_dim=4 * 84 * 84, num_actions=4, hidden=(32,), obs_shape=(4, 84, 84))
    unscaled.load_state_dict(net.state_dict())
    torch.testing.assert_close(net(pixels), unscaled(pixels.float() / 255))


def test_the_channels_last_nature_stack_computes_what_a_contiguous_one_does():
    """NHWC is a layout only: the same weights in a plain NCHW stack give the same features, in
    the same (C, H, W) order, and the state dict loads into either."""
    torch.manual_seed(0)
    encoder = ConvEncoder((4, 84, 84), scale=1 / 255)
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not all(c.weight.is_contiguous() for c in convs)
    plain = nn.Sequential(*[nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride)
                            for c in convs])
    # Same layers in the same order: the encoder's tensors, copied to the NCHW layout.
    plain.load_state_dict(dict(zip(
        plain.state_dict(), (t.contiguous() for t in encoder.state_dict().values()), strict=True
    )))
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    x = frames.float() / 255
    for conv in plain:
        x = torch.relu(conv(x))
    torch.testing.assert_close(encoder(frames), x.flatten(1), rtol=1e-4, atol=1e-5)
    assert not ConvEncoder((4, 10, 10)).channels_last  # MinAtar's gains nothing from it
