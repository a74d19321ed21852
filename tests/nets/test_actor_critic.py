"""ActorCritic: log-prob/entropy math against torch.distributions, shapes, sampling, init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from nets import ActorCritic
from nets.actor_critic import (
    categorical_entropy,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_log_prob,
)

# ---- distribution math -------------------------------------------------------------------


@pytest.mark.parametrize("batch_shape, num_actions", [((), 3), ((7,), 2), ((5,), 6), ((3, 4), 5)])
@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: near-deterministic, log-softmax must be stable
def test_categorical_log_prob_and_entropy_match_torch(batch_shape, num_actions, scale):
    g = torch.Generator().manual_seed(len(batch_shape) * 100 + num_actions)
    logits = scale * torch.randn(*batch_shape, num_actions, generator=g)
    action = torch.randint(0, num_actions, batch_shape, generator=g)
    dist = Categorical(logits=logits)
    log_prob = categorical_log_prob(logits, action)
    entropy = categorical_entropy(logits)
    assert log_prob.shape == batch_shape and entropy.shape == batch_shape
    torch.testing.assert_close(log_prob, dist.log_prob(action), rtol=0, atol=1e-5)
    torch.testing.assert_close(entropy, dist.entropy(), rtol=0, atol=1e-5)
    # Stored actions may come back as floats; they are indices all the same.
    torch.testing.assert_close(
        categorical_log_prob(logits, action.float()), log_prob, rtol=0, atol=0
    )


def test_categorical_entropy_of_uniform_logits_is_log_num_actions():
    logits = torch.full((4, 5), 3.7)  # any constant: only differences of logits matter
    torch.testing.assert_close(categorical_entropy(logits), torch.full((4,), math.log(5)))


@pytest.mark.parametrize("batch_shape, action_dim", [((1,), 1), ((8,), 2), ((6,), 5), ((3, 4), 3)])
def test_gaussian_log_prob_matches_torch_summed_over_action_dims(batch_shape, action_dim):
    g = torch.Generator().manual_seed(len(batch_shape) * 100 + action_dim)
    mean = torch.randn(*batch_shape, action_dim, generator=g)
    log_std = torch.randn(action_dim, generator=g)  # state-independent, one per action dim
    action = mean + 2.0 * torch.randn(*batch_shape, action_dim, generator=g)
    expected = Normal(mean, log_std.exp()).log_prob(action).sum(-1)
    log_prob = gaussian_log_prob(mean, log_std, action)
    assert log_prob.shape == batch_shape
    torch.testing.assert_close(log_prob, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch, action_dim", [(1, 1), (8, 2), (6, 5)])
def test_gaussian_entropy_matches_torch_summed_over_action_dims(batch, action_dim):
    g = torch.Generator().manual_seed(batch * 10 + action_dim)
    mean = torch.randn(batch, action_dim, generator=g)  # the entropy does not depend on it
    log_std = torch.randn(action_dim, generator=g)
    expected = Normal(mean, log_std.exp().expand(batch, action_dim)).entropy().sum(-1)
    entropy = gaussian_entropy(log_std, batch)
    assert entropy.shape == (batch,)
    torch.testing.assert_close(entropy, expected, rtol=0, atol=1e-5)


# ---- ActorCritic --------------------------------------------------------------------------


def make_net(*, continuous: bool, seed: int = 0, **kwargs) -> ActorCritic:
    """A small net; `seed` fixes its initial weights (drawn from torch's global RNG)."""
    kwargs.setdefault("obs_dim", 4)
    kwargs.setdefault("action_dim", 3)
    kwargs.setdefault("hidden", (16, 8))
    torch.manual_seed(seed)
    return ActorCritic(continuous=continuous, **kwargs)


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def box_obs(batch: int, obs_dim: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, obs_dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_shapes_with_box_observations(continuous, shared):
    net = make_net(continuous=continuous, shared=shared)
    obs_BO = box_obs(10)
    params_BA = net.policy_params(obs_BO)
    assert params_BA.shape == (10, 3)
    assert net.value(obs_BO).shape == (10,)
    action, logprob_B = net.sample(obs_BO)
    assert action.shape == ((10, 3) if continuous else (10,))
    assert action.dtype == (torch.float32 if continuous else torch.int64)
    assert logprob_B.shape == (10,)
    assert net.mode(obs_BO).shape == action.shape
    logprob_B, entropy_B, value_B = net.evaluate_actions(obs_BO, action)
    assert logprob_B.shape == entropy_B.shape == value_B.shape == (10,)
    assert (net.log_std is not None) == continuous


@pytest.mark.parametrize("continuous", [False, True])
def test_multi_dim_box_observations_are_flattened(continuous):
    net = make_net(continuous=continuous, obs_dim=6)
    obs = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net.policy_params(obs), net.policy_params(obs.reshape(5, 6)))
    torch.testing.assert_close(net.value(obs), net.value(obs.reshape(5, 6)))


@pytest.mark.parametrize("continuous", [False, True])
def test_discrete_observations_are_one_hot(continuous):
    net = make_net(continuous=continuous, obs_dim=7, discrete_obs=True)
    twin = make_net(continuous=continuous, obs_dim=7, seed=1)
    twin.load_state_dict(net.state_dict())
    obs_B = torch.tensor([0, 6, 3, 3, 1])
    one_hot_BO = torch.eye(7)[obs_B]
    assert net.policy_params(obs_B).shape == (5, 3)
    torch.testing.assert_close(net.policy_params(obs_B), twin.policy_params(one_hot_BO))
    torch.testing.assert_close(net.value(obs_B), twin.value(one_hot_BO))
    action = net.mode(obs_B)
    logprob_B, entropy_B, value_B = net.evaluate_actions(obs_B, action)
    assert logprob_B.shape == entropy_B.shape == value_B.shape == (5,)
    torch.testing.assert_close(value_B, twin.value(one_hot_BO))
    assert torch.equal(value_B[2], value_B[3]) and not torch.equal(value_B[0], value_B[1])


TRUNK = 4 * 16 + 16 + 16 * 8 + 8  # parameters of a 4 -> 16 -> 8 trunk


def test_shared_trunk_is_one_module():
    net = make_net(continuous=False, shared=True)
    assert net.critic_trunk is net.actor_trunk
    # 4 -> 16 -> 8 trunk once, policy head 8 -> 3, value head 8 -> 1.
    assert sum(p.numel() for p in net.parameters()) == TRUNK + (8 * 3 + 3) + (8 + 1)
    # The value loss trains the actor's trunk too.
    net.value(box_obs(6)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.actor_trunk.parameters())


def test_separate_trunks_have_their_own_parameters():
    net = make_net(continuous=False, shared=False)
    assert net.critic_trunk is not net.actor_trunk
    actor_ids = {id(p) for p in net.actor_trunk.parameters()}
    assert actor_ids.isdisjoint(id(p) for p in net.critic_trunk.parameters())
    # Initialised independently, not as copies.
    for a, c in zip(net.actor_trunk.parameters(), net.critic_trunk.parameters(), strict=True):
        if a.dim() == 2:
            assert a.shape == c.shape and not torch.equal(a, c)
    assert sum(p.numel() for p in net.parameters()) == 2 * TRUNK + (8 * 3 + 3) + (8 + 1)
    # The value loss leaves the actor alone, and the policy ignores the critic.
    net.value(box_obs(6)).sum().backward()
    assert all(p.grad is None for p in net.actor_trunk.parameters())
    assert all(p.grad is None for p in net.policy_head.parameters())
    net.zero_grad(set_to_none=True)
    net.policy_params(box_obs(6)).sum().backward()
    assert all(p.grad is None for p in net.critic_trunk.parameters())
    assert all(p.grad is None for p in net.value_head.parameters())


def test_needs_a_hidden_layer():
    with pytest.raises(ValueError, match="hidden"):
        ActorCritic(obs_dim=4, action_dim=2, continuous=False, hidden=())


@pytest.mark.parametrize("continuous", [False, True])
def test_sample_logprob_equals_evaluate_actions_logprob(continuous):
    net = make_net(continuous=continuous)
    with torch.no_grad():
        net.policy_head.bias.copy_(torch.tensor([0.5, -1.0, 1.5]))  # non-uniform policy
    obs_BO = box_obs(256)
    action, logprob_B = net.sample(obs_BO, torch.Generator().manual_seed(3))
    if not continuous:
        assert ((action >= 0) & (action < 3)).all()
        assert set(action.tolist()) == {0, 1, 2}  # every action occurs: really sampled
    else:
        assert not torch.equal(action, net.mode(obs_BO))  # noise was added
    torch.testing.assert_close(logprob_B, net.evaluate_actions(obs_BO, action)[0])
    # And it is the log-density under the matching torch distribution.
    params = net.policy_params(obs_BO)
    dist = Normal(params, net.log_std.exp()) if continuous else Categorical(logits=params)
    expected = dist.log_prob(action)
    expected = expected.sum(-1) if continuous else expected
    torch.testing.assert_close(logprob_B, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("continuous", [False, True])
def test_seeded_sample_is_reproducible(continuous):
    net = make_net(continuous=continuous)
    obs_BO = box_obs(64)
    g1, g2, g3 = (torch.Generator().manual_seed(s) for s in (5, 5, 6))
    a1, lp1 = net.sample(obs_BO, g1)
    a2, lp2 = net.sample(obs_BO, g2)
    a3, _ = net.sample(obs_BO, g3)
    assert torch.equal(a1, a2) and torch.equal(lp1, lp2)
    assert not torch.equal(a1, a3)
    assert not torch.equal(a1, net.sample(obs_BO, g1)[0])  # the generator advances


@pytest.mark.parametrize("continuous", [False, True])
def test_draw_perturbs_the_policy_with_the_given_noise(continuous):
    """The rollout draws its noise for T steps at once (`noise`) and acts with `draw`: Gumbel-max
    for the categorical, mean + noise·std for the Gaussian, as `sample` does."""
    net = make_net(continuous=continuous)
    with torch.no_grad():
        net.policy_head.bias.copy_(torch.tensor([0.5, -1.0, 1.5]))
        if continuous:
            net.log_std.copy_(torch.tensor([-1.0, 0.0, 0.5]))
    obs_BO = box_obs(64)
    noise_TBA = net.noise((2, 64), torch.Generator().manual_seed(5))
    assert noise_TBA.shape == (2, 64, 3)
    params_BA = net.policy_params(obs_BO)
    for noise_BA in noise_TBA:
        expected = (
            params_BA + noise_BA * net.log_std.exp() if continuous
            else (params_BA + noise_BA).argmax(-1)
        )
        assert torch.equal(net.draw(obs_BO, noise_BA), expected)
    assert not torch.equal(net.draw(obs_BO, noise_TBA[0]), net.draw(obs_BO, noise_TBA[1]))
    # Zero noise is the mode, which evaluation plays.
    assert torch.equal(net.draw(obs_BO, torch.zeros(64, 3)), net.mode(obs_BO))
    if not continuous:  # standard Gumbel noise: mean Euler's constant, variance π²/6
        g = net.noise((100_000,), torch.Generator().manual_seed(0))
        assert abs(g.mean().item() - 0.5772) < 0.02 and abs(g.var().item() - 1.6449) < 0.05


def test_gumbel_max_frequencies_match_softmax():
    net = make_net(continuous=False, action_dim=4)
    with torch.no_grad():
        net.policy_head.bias.copy_(torch.tensor([1.0, 0.0, -1.0, 0.5]))
    obs_BO = box_obs(1).expand(20_000, 4)  # one state, so one distribution
    action_B, _ = net.sample(obs_BO, torch.Generator().manual_seed(0))
    freq_A = torch.bincount(action_B, minlength=4).float() / 20_000
    probs_A = torch.softmax(net.policy_params(obs_BO[:1])[0], -1).detach()
    assert probs_A.max() - probs_A.min() > 0.3  # far from uniform, so the check has teeth
    assert (freq_A - probs_A).abs().max() < 0.02, (freq_A, probs_A)  # sd ≤ 0.0035


def test_gaussian_samples_have_mean_mode_and_std_exp_log_std():
    net = make_net(continuous=True, action_dim=2)
    with torch.no_grad():
        net.log_std.copy_(torch.tensor([-1.0, 0.7]))
        net.policy_head.bias.copy_(torch.tensor([2.0, -3.0]))
    obs_BO = box_obs(1).expand(20_000, 4)
    action_BA, _ = net.sample(obs_BO, torch.Generator().manual_seed(0))
    mode_A = net.mode(obs_BO[:1])[0].detach()
    std_A = torch.tensor([-1.0, 0.7]).exp()
    # The sample mean's sd is std / sqrt(20k) < 0.015 std.
    assert ((action_BA.mean(0) - mode_A).abs() < 0.05 * std_A).all()
    assert ((action_BA.std(0) / std_A - 1).abs() < 0.03).all()


def test_mode_is_argmax_logits_or_the_mean():
    obs_BO = box_obs(32)
    discrete = make_net(continuous=False)
    with torch.no_grad():
        discrete.policy_head.weight.mul_(300.0)  # make the argmax vary across states
    logits_BA = discrete.policy_params(obs_BO)
    assert torch.equal(discrete.mode(obs_BO), logits_BA.argmax(-1))
    assert len(discrete.mode(obs_BO).unique()) > 1
    continuous = make_net(continuous=True)
    with torch.no_grad():
        continuous.log_std.fill_(1.5)  # the mode does not depend on the spread
    torch.testing.assert_close(continuous.mode(obs_BO), continuous.policy_params(obs_BO))


@pytest.mark.parametrize("shared", [False, True])
def test_orthogonal_init(shared):
    net = make_net(continuous=True, obs_dim=4, hidden=(16, 16, 8), shared=shared, init_log_std=-0.5)

    def assert_orthogonal(weight: torch.Tensor, gain: float) -> None:
        out_dim, in_dim = weight.shape
        # Orthonormal rows if wide or square, orthonormal columns if tall, times the gain.
        gram = weight @ weight.T if out_dim <= in_dim else weight.T @ weight
        identity = torch.eye(min(out_dim, in_dim))
        torch.testing.assert_close(gram, gain**2 * identity, atol=1e-5 * gain**2, rtol=0)

    for trunk in (net.actor_trunk, net.critic_trunk):
        layers = linears(trunk)
        # Tall, square and wide weights.
        assert [tuple(layer.weight.shape) for layer in layers] == [(16, 4), (16, 16), (8, 16)]
        for layer in layers:
            assert_orthogonal(layer.weight.detach(), math.sqrt(2))
            assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    assert_orthogonal(net.policy_head.weight.detach(), 0.01)
    assert net.policy_head.weight.abs().max() <= 0.01  # rows of norm 0.01
    assert_orthogonal(net.value_head.weight.detach(), 1.0)
    for head in (net.policy_head, net.value_head):
        assert torch.equal(head.bias, torch.zeros_like(head.bias))
    torch.testing.assert_close(net.log_std.detach(), torch.full((3,), -0.5))
    # Near-uniform initial policy: logits are tiny for unit-scale inputs.
    assert net.policy_params(box_obs(64)).abs().max() < 0.1


def test_evaluate_actions_on_a_continuous_policy():
    net = make_net(continuous=True, action_dim=2)
    with torch.no_grad():
        net.log_std.copy_(torch.tensor([0.3, -0.2]))
    obs_BO = box_obs(9)
    action_BA = torch.randn(9, 2, generator=torch.Generator().manual_seed(1))
    logprob_B, entropy_B, value_B = net.evaluate_actions(obs_BO, action_BA)
    dist = Normal(net.policy_params(obs_BO), net.log_std.exp())
    torch.testing.assert_close(logprob_B, dist.log_prob(action_BA).sum(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy_B, dist.entropy().sum(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(value_B, net.value(obs_BO))
    assert logprob_B.shape == entropy_B.shape == value_B.shape == (9,)
    # The entropy trains log_std.
    entropy_B.mean().backward()
    torch.testing.assert_close(net.log_std.grad, torch.ones(2))


def test_evaluate_actions_on_a_discrete_policy():
    net = make_net(continuous=False)
    with torch.no_grad():
        net.policy_head.weight.mul_(100.0)
    obs_BO = box_obs(9)
    action_B = torch.randint(0, 3, (9,), generator=torch.Generator().manual_seed(1))
    logprob_B, entropy_B, value_B = net.evaluate_actions(obs_BO, action_B)
    dist = Categorical(logits=net.policy_params(obs_BO))
    torch.testing.assert_close(logprob_B, dist.log_prob(action_B), atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy_B, dist.entropy(), atol=1e-5, rtol=0)
    torch.testing.assert_close(value_B, net.value(obs_BO))
    assert logprob_B.shape == entropy_B.shape == value_B.shape == (9,)
    assert len(entropy_B.unique()) > 1  # state-dependent, unlike the Gaussian's


@pytest.mark.parametrize("activation, expected", [("tanh", torch.tanh), ("relu", torch.relu)])
def test_hidden_activation_is_the_one_asked_for(activation, expected):
    net = ActorCritic(obs_dim=4, action_dim=2, continuous=False, hidden=(5,), activation=activation)
    obs_BO = box_obs(4)
    first = net.actor_trunk[0][0]  # the trunk's only Linear, before its activation
    torch.testing.assert_close(net.actor_trunk(obs_BO), expected(first(obs_BO)))
