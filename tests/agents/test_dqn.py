"""DQN: schedule and TD math against hand computations; the agent's act/update/target/resume."""

from __future__ import annotations

import io

import pytest
import torch

from agents import DQNAgent, DQNConfig, Transitions, linear_schedule, td_target

OBS_DIM, NUM_ACTIONS = 4, 3


def make_agent(seed: int = 0, init_seed: int = 0, **overrides) -> DQNAgent:
    """A tiny agent; `init_seed` fixes the net's initial weights (drawn from torch's global RNG)."""
    overrides.setdefault("hidden", (8,))
    overrides.setdefault("learning_rate", 1e-2)
    torch.manual_seed(init_seed)
    return DQNAgent(DQNConfig(**overrides), obs_dim=OBS_DIM, num_actions=NUM_ACTIONS, seed=seed)


def random_batch(seed: int, batch_size: int = 16) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    return Transitions(
        obs=torch.randn(batch_size, OBS_DIM, generator=g),
        action=torch.randint(0, NUM_ACTIONS, (batch_size,), generator=g),
        reward=torch.randn(batch_size, generator=g),
        next_obs=torch.randn(batch_size, OBS_DIM, generator=g),
        terminated=torch.rand(batch_size, generator=g) < 0.3,
    )


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def all_equal(xs, ys) -> bool:
    return all(torch.equal(x, y) for x, y in zip(xs, ys, strict=True))


@pytest.mark.parametrize(
    "step, expected",
    [(0, 1.0), (25, 0.7625), (50, 0.525), (100, 0.05), (101, 0.05), (10_000, 0.05)],
)
def test_linear_schedule(step, expected):
    assert linear_schedule(1.0, 0.05, 100, step) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("step", [0, 1, 500])
def test_linear_schedule_with_zero_duration_is_the_end_value(step):
    assert linear_schedule(1.0, 0.1, 0, step) == 0.1


def test_linear_schedule_can_increase():
    assert linear_schedule(0.0, 2.0, 4, 1) == pytest.approx(0.5)


def test_td_target_hand_computed():
    reward_B = torch.tensor([1.0, 2.0, -1.0, 0.5, 0.0])
    next_q_B = torch.tensor([10.0, 3.0, 4.0, -2.0, 7.0])
    terminated_B = torch.tensor([False, True, False, True, False])
    # Not terminated: r + 0.9 q'. Terminated: r alone.
    expected_B = torch.tensor([1.0 + 9.0, 2.0, -1.0 + 3.6, 0.5, 0.0 + 6.3])
    torch.testing.assert_close(td_target(reward_B, next_q_B, terminated_B, 0.9), expected_B)


def test_td_target_bootstraps_truncated_transitions():
    # A time-limit truncation is not a termination: the flag handed in is `terminated` alone,
    # so the truncated transition keeps its bootstrap term.
    terminated_B = torch.tensor([False])  # truncated=True, terminated=False
    target = td_target(torch.tensor([1.0]), torch.tensor([5.0]), terminated_B, 0.5)
    torch.testing.assert_close(target, torch.tensor([3.5]))


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99])
def test_td_target_fixed_point_with_reward_one_is_one_over_one_minus_gamma(gamma):
    # SB3's check: an episode that is only ever truncated has value sum_k γ^k = 1 / (1 - γ).
    value = torch.zeros(1, dtype=torch.float64)
    never_terminated = torch.tensor([False])
    for _ in range(5000):
        value = td_target(torch.ones(1, dtype=torch.float64), value, never_terminated, gamma)
    torch.testing.assert_close(value, torch.tensor([1.0 / (1.0 - gamma)], dtype=torch.float64))
    # Whereas terminating every step leaves just the reward.
    value = td_target(torch.ones(1), torch.tensor([123.0]), torch.tensor([True]), gamma)
    torch.testing.assert_close(value, torch.tensor([1.0]))


# A net with known Q-values: trunk = identity then ReLU (inputs are one-hot, so h = obs),
# head weight W, so Q(obs) = W @ obs. Column 0 of W is Q(s), column 1 is Q(s').
S, S_NEXT = [1.0, 0.0], [0.0, 1.0]
W_ONLINE = [[0.5, 2.0], [-1.0, 1.0]]  # Q(s) = [0.5, -1], Q(s') = [2, 1]: online argmax at s' is 0
W_TARGET = [[0.0, 3.0], [0.0, 5.0]]  # Q'(s') = [3, 5]: the target net's own argmax is 1


def set_known_weights(net: torch.nn.Module, head_weight: list[list[float]]) -> None:
    with torch.no_grad():
        linear = net.trunk[0][0]
        linear.weight.copy_(torch.eye(2))
        linear.bias.zero_()
        net.head.weight.copy_(torch.tensor(head_weight))
        net.head.bias.zero_()


def known_agent(double_dqn: bool, loss: str = "huber") -> DQNAgent:
    cfg = DQNConfig(hidden=(2,), gamma=0.5, double_dqn=double_dqn, max_grad_norm=1e6, loss=loss)
    agent = DQNAgent(cfg, obs_dim=2, num_actions=2)
    set_known_weights(agent.q_net, W_ONLINE)
    set_known_weights(agent.target_net, W_TARGET)
    return agent


KNOWN_BATCH = Transitions(
    obs=torch.tensor([S, S]),
    action=torch.tensor([0, 1]),
    reward=torch.tensor([1.0, 0.25]),
    next_obs=torch.tensor([S_NEXT, S_NEXT]),
    terminated=torch.tensor([False, True]),
)


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1.0 else abs(x) - 0.5


@pytest.mark.parametrize(
    "double_dqn, next_value",
    [
        (True, 3.0),  # a' = argmax of the online net (0), valued by the target net: Q'(s', 0) = 3
        (False, 5.0),  # max of the target net: Q'(s', 1) = 5
    ],
)
def test_update_regresses_on_the_double_or_plain_dqn_target(double_dqn, next_value):
    agent = known_agent(double_dqn)
    metrics = agent.update(KNOWN_BATCH)
    # Row 0: Q(s, 0) = 0.5, target 1 + 0.5 * next_value. Row 1: Q(s, 1) = -1, terminated: 0.25.
    expected_loss = (huber(0.5 - (1.0 + 0.5 * next_value)) + huber(-1.0 - 0.25)) / 2
    torch.testing.assert_close(metrics["td_loss"], torch.tensor(expected_loss))
    torch.testing.assert_close(metrics["q_values"], torch.tensor((0.5 - 1.0) / 2))


def test_mse_loss_is_the_mean_squared_td_error():
    # Both rows' errors exceed 1, where Huber is linear: the two losses differ.
    metrics = known_agent(double_dqn=True, loss="mse").update(KNOWN_BATCH)
    expected_loss = ((0.5 - (1.0 + 0.5 * 3.0)) ** 2 + (-1.0 - 0.25) ** 2) / 2
    torch.testing.assert_close(metrics["td_loss"], torch.tensor(expected_loss))


@pytest.mark.parametrize("step, lr", [(0, 1e-3), (500, 5.5e-4), (1_000, 1e-4), (5_000, 1e-4)])
def test_learning_rate_decays_linearly_to_its_final_value(step, lr):
    agent = make_agent(learning_rate=1e-3, final_learning_rate=1e-4, lr_decay_steps=1_000)
    assert agent.learning_rate(step) == pytest.approx(lr)
    assert make_agent(learning_rate=1e-3).learning_rate(step) == 1e-3  # no final: constant


def test_update_grad_norm_is_the_unclipped_norm_of_the_loss_gradient():
    agent = known_agent(double_dqn=True)
    reference = known_agent(double_dqn=True).q_net
    q_B = reference(KNOWN_BATCH.obs).gather(1, KNOWN_BATCH.action[:, None]).squeeze(1)
    target_B = torch.tensor([1.0 + 0.5 * 3.0, 0.25])
    torch.nn.functional.smooth_l1_loss(q_B, target_B).backward()
    grad_norms = torch.stack([p.grad.norm() for p in reference.parameters()])
    expected = torch.linalg.vector_norm(grad_norms)
    torch.testing.assert_close(agent.update(KNOWN_BATCH)["grad_norm"], expected)


def test_update_returns_0d_metric_tensors_and_changes_only_the_online_net():
    agent = make_agent(target_update_interval=100)
    online, target = params(agent.q_net), params(agent.target_net)
    metrics = agent.update(random_batch(0))
    assert set(metrics) == {"td_loss", "q_values", "grad_norm"}
    for name, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, name
        assert not value.requires_grad, name
        assert torch.isfinite(value), name
    after = params(agent.q_net)
    assert all(not torch.equal(x, y) for x, y in zip(online, after))  # every tensor moved
    assert all_equal(target, params(agent.target_net))
    assert agent.num_updates == 1


@pytest.mark.parametrize("max_grad_norm", [1e-3, 1e6])
def test_update_clips_the_gradient_to_max_grad_norm(max_grad_norm):
    agent = make_agent(max_grad_norm=max_grad_norm)
    reference = make_agent(max_grad_norm=max_grad_norm)  # same initial weights
    batch = random_batch(1)
    grad_norm = agent.update(batch)["grad_norm"]
    # The unclipped gradient, computed independently.
    with torch.no_grad():
        next_q_BA = reference.target_net(batch.next_obs)
        next_a_B = reference.q_net(batch.next_obs).argmax(1, keepdim=True)
        target_B = td_target(batch.reward, next_q_BA.gather(1, next_a_B).squeeze(1),
                             batch.terminated, reference.config.gamma)
    q_B = reference.q_net(batch.obs).gather(1, batch.action[:, None]).squeeze(1)
    torch.nn.functional.smooth_l1_loss(q_B, target_B).backward()
    grads = [p.grad for p in reference.q_net.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    torch.testing.assert_close(grad_norm, norm)  # the pre-clip norm, as clip_grad_norm_ returns
    # Adam's first step stores exp_avg = (1 - β1) · g for the gradient g it was given, so the
    # first moment shows whether g was clipped: g = g_raw · min(1, max_norm / ‖g_raw‖).
    assert norm > 1e-2  # the small max_grad_norm really clips
    scale = min(1.0, max_grad_norm / (float(norm) + 1e-6))
    beta1 = agent.optimizer.defaults["betas"][0]
    for p, g in zip(agent.q_net.parameters(), grads):
        exp_avg = agent.optimizer.state[p]["exp_avg"]
        torch.testing.assert_close(exp_avg, (1 - beta1) * scale * g, rtol=1e-4, atol=1e-9)


def test_hard_target_update_every_interval():
    agent = make_agent(target_update_interval=3, tau=1.0)
    assert all_equal(params(agent.q_net), params(agent.target_net))  # starts as a copy
    assert not any(p.requires_grad for p in agent.target_net.parameters())
    initial = params(agent.target_net)
    for i in range(1, 8):
        agent.update(random_batch(i))
        online, target = params(agent.q_net), params(agent.target_net)
        if i % 3 == 0:
            assert all_equal(online, target), i
            synced = online
        else:
            assert not all_equal(online, target), i
            assert all_equal(target, initial if i < 3 else synced), i


@pytest.mark.parametrize("interval", [1, 2])
def test_polyak_target_update_is_an_exact_lerp(interval):
    tau = 0.25
    agent = make_agent(target_update_interval=interval, tau=tau)
    agent.update(random_batch(0))
    before = params(agent.target_net)
    for i in range(1, 4):
        agent.update(random_batch(i))
        online, target = params(agent.q_net), params(agent.target_net)
        if agent.num_updates % interval == 0:
            expected = [torch.lerp(t, o, tau) for t, o in zip(before, online)]  # t + τ(o − t)
            for x, y in zip(target, expected):
                torch.testing.assert_close(x, y, rtol=0, atol=0)
            assert not all_equal(target, online)
        else:
            assert all_equal(target, before)
        before = target


def test_act_with_zero_epsilon_is_the_argmax():
    agent = make_agent()
    obs_NO = torch.randn(256, OBS_DIM, generator=torch.Generator().manual_seed(0))
    action_N = agent.act(obs_NO, epsilon=0.0)
    assert action_N.shape == (256,) and action_N.dtype == torch.int64
    assert torch.equal(action_N, agent.q_net(obs_NO).argmax(dim=1))
    assert len(action_N.unique()) > 1  # the check is not trivially about one action


def test_act_with_epsilon_one_is_uniform():
    agent = make_agent()
    obs_NO = torch.zeros(6000, OBS_DIM)  # one state, so the greedy action is the same everywhere
    counts = torch.bincount(agent.act(obs_NO, epsilon=1.0), minlength=NUM_ACTIONS)
    assert counts.shape == (NUM_ACTIONS,)
    assert ((counts - 2000).abs() < 150).all(), counts  # 2000 ± ~37 (1 sd) each


def test_act_explores_at_rate_epsilon():
    agent = make_agent()
    obs_NO = torch.randn(8000, OBS_DIM, generator=torch.Generator().manual_seed(1))
    greedy_N = agent.act(obs_NO, epsilon=0.0)
    differs = (agent.act(obs_NO, epsilon=0.3) != greedy_N).float().mean()
    # A random action differs from the greedy one with probability (A - 1) / A.
    assert abs(float(differs) - 0.3 * (NUM_ACTIONS - 1) / NUM_ACTIONS) < 0.02


def test_act_is_reproducible_given_the_seed():
    obs_NO = torch.randn(200, OBS_DIM, generator=torch.Generator().manual_seed(2))
    a, b, c = (make_agent(seed=s, init_seed=0) for s in (7, 7, 8))
    runs = [[agent.act(obs_NO, epsilon=0.5) for _ in range(3)] for agent in (a, b, c)]
    assert all_equal(runs[0], runs[1])
    assert not all_equal(runs[0], runs[2])
    assert not torch.equal(runs[0][0], runs[0][1])  # the generator advances


def test_act_on_discrete_observations():
    torch.manual_seed(0)
    agent = DQNAgent(DQNConfig(hidden=(8,)), obs_dim=5, num_actions=2, discrete_obs=True)
    obs_N = torch.tensor([0, 4, 2])
    net = agent.q_net
    q_NA = net.head(net.trunk(torch.eye(5)[obs_N]))  # one-hot encoded by hand
    assert torch.equal(agent.act(obs_N), q_NA.argmax(1))
    assert agent.act(obs_N, epsilon=1.0).shape == (3,)


def assert_agents_continue_identically(a: DQNAgent, b: DQNAgent) -> None:
    for i in range(10, 16):  # crosses a target update (interval 3)
        ma, mb = a.update(random_batch(i)), b.update(random_batch(i))
        for key in ma:
            torch.testing.assert_close(ma[key], mb[key], rtol=0, atol=0, msg=key)
    assert all_equal(params(a.q_net), params(b.q_net))
    assert all_equal(params(a.target_net), params(b.target_net))
    assert a.num_updates == b.num_updates
    obs_NO = torch.randn(64, OBS_DIM)
    assert torch.equal(a.act(obs_NO, epsilon=0.5), b.act(obs_NO, epsilon=0.5))


def trained_agent() -> DQNAgent:
    agent = make_agent(seed=1, init_seed=1, target_update_interval=3)
    for i in range(4):
        agent.update(random_batch(i))
    agent.act(torch.zeros(5, OBS_DIM), epsilon=0.5)  # move the exploration RNG on
    return agent


def test_state_dict_round_trip_through_a_file_gives_identical_updates():
    a = trained_agent()
    saved = io.BytesIO()
    torch.save(a.state_dict(), saved)
    saved.seek(0)
    b = make_agent(seed=2, init_seed=2, target_update_interval=3)
    b.load_state_dict(torch.load(saved, weights_only=True))
    assert_agents_continue_identically(a, b)


def test_state_dict_round_trip_in_process_gives_identical_updates():
    a = trained_agent()
    b = make_agent(seed=2, init_seed=2, target_update_interval=3)
    b.load_state_dict(a.state_dict())
    assert_agents_continue_identically(a, b)
