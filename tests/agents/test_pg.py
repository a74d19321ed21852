"""Policy gradients: GAE, PPO and value losses by hand; PGConfig validation; PGAgent.update."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from agents.pg import (
    METRICS,
    PGAgent,
    PGConfig,
    RewardScaler,
    Rollout,
    compute_gae,
    explained_variance,
    ppo_loss,
    value_loss,
)

F64 = torch.float64


def naive_gae(reward, value, next_value, terminated, done, gamma, lam) -> torch.Tensor:
    """A_t = Σ_k (γλ)^(k−t) δ_k summed forward over the rest of t's episode, one env at a time."""
    T, N = reward.shape
    advantage = torch.zeros(T, N, dtype=F64)
    for n in range(N):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                bootstrap = 0.0 if terminated[k, n] else gamma * float(next_value[k, n])
                total += weight * (float(reward[k, n]) + bootstrap - float(value[k, n]))
                if done[k, n]:
                    break  # the episode ended at step k: later steps belong to the next one
                weight *= gamma * lam
            advantage[t, n] = total
    return advantage


# ---- compute_gae ---------------------------------------------------------------------------


def test_gae_hand_computed_with_a_termination_and_a_truncation():
    gamma, lam = 0.9, 0.8  # γλ = 0.72
    # Env 0: terminates at t=1; a new episode runs t=2..3 and is cut by the rollout end.
    # Env 1: truncated (time limit) at t=2; a new episode starts at t=3.
    reward = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.5, 3.0], [-1.0, 2.0]], dtype=F64)
    value = torch.tensor([[0.5, 1.0], [1.0, -0.5], [2.0, 0.25], [1.5, 2.0]], dtype=F64)
    # next_value[t] = V(true next obs of step t): V(s_{t+1}) inside an episode; V(final_obs) where
    # it ended (env 0 t=1: 7.0, must be ignored: terminated; env 1 t=2: 4.0, must be used:
    # truncated); at t=3, V of the obs after the rollout (3.0 and -1.0), the bootstrap.
    next_value = torch.tensor([[1.0, -0.5], [7.0, 0.25], [1.5, 4.0], [3.0, -1.0]], dtype=F64)
    terminated = torch.tensor([[False, False], [True, False], [False, False], [False, False]])
    truncated = torch.tensor([[False, False], [False, False], [False, True], [False, False]])
    done = terminated | truncated
    # Env 0:
    #   δ3 = −1 + 0.9·3.0 − 1.5 = 0.2                  A3 = 0.2
    #   δ2 = 0.5 + 0.9·1.5 − 2.0 = −0.15               A2 = −0.15 + 0.72·0.2 = −0.006
    #   δ1 = 2 − 1.0 = 1.0  (terminated: no 0.9·7.0)   A1 = 1.0  (trace cut: no A2 term)
    #   δ0 = 1 + 0.9·1.0 − 0.5 = 1.4                   A0 = 1.4 + 0.72·1.0 = 2.12
    # Env 1:
    #   δ3 = 2 + 0.9·(−1.0) − 2.0 = −0.9               A3 = −0.9
    #   δ2 = 3 + 0.9·4.0 − 0.25 = 6.35  (truncated)    A2 = 6.35  (trace cut: no A3 term)
    #   δ1 = 1 + 0.9·0.25 + 0.5 = 1.725                A1 = 1.725 + 0.72·6.35 = 6.297
    #   δ0 = 0 + 0.9·(−0.5) − 1.0 = −1.45              A0 = −1.45 + 0.72·6.297 = 3.08384
    expected = torch.tensor(
        [[2.12, 3.08384], [1.0, 6.297], [-0.006, 6.35], [0.2, -0.9]], dtype=F64
    )
    advantage = compute_gae(reward, value, next_value, terminated, done, gamma, lam)
    assert advantage.shape == (4, 2) and advantage.dtype == F64
    torch.testing.assert_close(advantage, expected)
    torch.testing.assert_close(
        naive_gae(reward, value, next_value, terminated, done, gamma, lam), expected
    )


@pytest.mark.parametrize("gamma, lam", [(0.99, 0.95), (0.9, 0.0), (0.8, 1.0), (1.0, 0.5)])
def test_gae_matches_the_naive_loop_on_random_rollouts(gamma, lam):
    g = torch.Generator().manual_seed(int(100 * gamma + 10 * lam))
    T, N = 9, 6
    reward = torch.randn(T, N, generator=g, dtype=F64)
    value = torch.randn(T, N, generator=g, dtype=F64)
    next_value = torch.randn(T, N, generator=g, dtype=F64)
    terminated = torch.rand(T, N, generator=g) < 0.15
    truncated = (torch.rand(T, N, generator=g) < 0.15) & ~terminated
    done = terminated | truncated
    assert terminated.any() and truncated.any()
    expected = naive_gae(reward, value, next_value, terminated, done, gamma, lam)
    torch.testing.assert_close(
        compute_gae(reward, value, next_value, terminated, done, gamma, lam), expected
    )
    if lam == 0.0:  # one-step TD errors
        delta = reward + gamma * next_value * (~terminated) - value
        torch.testing.assert_close(
            compute_gae(reward, value, next_value, terminated, done, gamma, lam), delta
        )


def test_gae_with_lambda_one_and_no_critic_is_the_reward_to_go():
    gamma = 0.5
    # Env 0: terminates at t=1, then a new episode runs to the rollout end (not bootstrapped).
    # Env 1: truncated at t=2 with V(final_obs) = 8; a new episode runs to the end.
    reward = torch.tensor(
        [[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0], [5.0, 1.0]], dtype=F64
    )
    value = torch.zeros(5, 2, dtype=F64)
    next_value = torch.zeros(5, 2, dtype=F64)
    next_value[1, 0] = 99.0  # V(final_obs) of a termination: never used
    next_value[2, 1] = 8.0  # V(final_obs) of the truncation: bootstrapped
    terminated = torch.zeros(5, 2, dtype=torch.bool)
    terminated[1, 0] = True
    done = terminated.clone()
    done[2, 1] = True
    # Env 0: G4 = 5, G3 = 4 + 0.5·5 = 6.5, G2 = 3 + 0.5·6.5 = 6.25 | G1 = 2, G0 = 1 + 0.5·2 = 2.
    # Env 1: G4 = 1, G3 = 1 + 0.5·1 = 1.5 | G2 = 1 + 0.5·8 = 5, G1 = 1 + 0.5·5 = 3.5,
    #        G0 = 1 + 0.5·3.5 = 2.75.
    expected = torch.tensor(
        [[2.0, 2.75], [2.0, 3.5], [6.25, 5.0], [6.5, 1.5], [5.0, 1.0]], dtype=F64
    )
    torch.testing.assert_close(
        compute_gae(reward, value, next_value, terminated, done, gamma, 1.0), expected
    )


def test_gae_with_lambda_one_plus_value_is_the_bootstrapped_return_whatever_the_critic():
    # λ = 1: A + V telescopes to the discounted return bootstrapped only at cut points.
    g = torch.Generator().manual_seed(0)
    T, N, gamma = 6, 3, 0.9
    reward = torch.randn(T, N, generator=g, dtype=F64)
    value_TN = torch.randn(T + 1, N, generator=g, dtype=F64)  # V(s_0..s_T), s_T after the rollout
    terminated = torch.zeros(T, N, dtype=torch.bool)
    terminated[2, 0] = True
    done = terminated.clone()
    next_value = value_TN[1:].clone()
    final_value = torch.tensor(3.0, dtype=F64)  # V(final_obs) of env 1's truncation at t=3
    next_value[3, 1] = final_value
    done[3, 1] = True
    advantage = compute_gae(reward, value_TN[:-1], next_value, terminated, done, gamma, 1.0)
    # The return G_t = r_t + γ·G_{t+1}, where G after the last step is what the episode left:
    # 0 after a termination, V(final_obs) after a truncation, V(s_T) at the rollout's end.
    ret = torch.zeros(T, N, dtype=F64)
    after_N = value_TN[-1].clone()
    for t in reversed(range(T)):
        after_N[done[t]] = 0.0
        if t == 3:
            after_N[1] = final_value
        after_N = reward[t] + gamma * after_N
        ret[t] = after_N
    torch.testing.assert_close(advantage + value_TN[:-1], ret)


# ---- ppo_loss, value_loss, explained_variance ----------------------------------------------

# Ratios below, inside and above [0.8, 1.2], with advantages of both signs.
RATIO = [0.5, 0.5, 0.9, 1.0, 1.1, 1.5, 1.5, 1.15]
ADV = [1.0, -1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 2.0]
OLD_LOGPROB = [-0.3, -1.2, -2.0, -0.7, -0.1, -1.6, -0.9, -0.05]


def ppo_inputs(requires_grad: bool = False):
    old = torch.tensor(OLD_LOGPROB, dtype=F64)
    new = (old + torch.tensor(RATIO, dtype=F64).log()).requires_grad_(requires_grad)
    return new, old, torch.tensor(ADV, dtype=F64)


def test_ppo_loss_clipped_hand_computed():
    new, old, adv = ppo_inputs(requires_grad=True)
    loss, approx_kl, clip_fraction = ppo_loss(new, old, adv, 0.2)
    # ρA        = [0.5, −0.5, −1.8, 0.5, 3.3, −1.5, 3.0, 2.3]
    # clip(ρ)A  = [0.8, −0.8, −1.8, 0.5, 3.3, −1.2, 2.4, 2.3]
    # min       = [0.5, −0.8, −1.8, 0.5, 3.3, −1.5, 2.4, 2.3], sum 4.9, mean 0.6125
    torch.testing.assert_close(loss, torch.tensor(-0.6125, dtype=F64))
    # Direct computation, too.
    ratio = torch.tensor(RATIO, dtype=F64)
    direct = -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean()
    torch.testing.assert_close(loss, direct)
    # |ρ − 1| > 0.2 at ρ = 0.5, 0.5, 1.5, 1.5: 4 of 8.
    torch.testing.assert_close(clip_fraction, torch.tensor(0.5))
    expected_kl = sum((r - 1) - math.log(r) for r in RATIO) / len(RATIO)
    torch.testing.assert_close(approx_kl, torch.tensor(expected_kl, dtype=F64))
    assert loss.dim() == approx_kl.dim() == clip_fraction.dim() == 0
    assert not approx_kl.requires_grad and not clip_fraction.requires_grad
    # Gradient w.r.t. log π: d(−ρA/B)/d log π = −ρA/B where the unclipped term is the min,
    # zero where the clipped (constant) term is: indices 1 (ρ=0.5, A<0) and 6 (ρ=1.5, A>0).
    loss.backward()
    unclipped = torch.tensor([1, 0, 1, 1, 1, 1, 0, 1], dtype=F64)
    torch.testing.assert_close(new.grad, -unclipped * ratio * adv / 8)


def test_ppo_loss_unclipped_is_the_plain_surrogate():
    new, old, adv = ppo_inputs()
    loss, approx_kl, clip_fraction = ppo_loss(new, old, adv, None)
    # −mean(ρA) = −(0.5 − 0.5 − 1.8 + 0.5 + 3.3 − 1.5 + 3.0 + 2.3) / 8 = −5.8 / 8
    torch.testing.assert_close(loss, torch.tensor(-0.725, dtype=F64))
    torch.testing.assert_close(clip_fraction, torch.zeros((), dtype=F64))
    expected_kl = sum((r - 1) - math.log(r) for r in RATIO) / len(RATIO)
    torch.testing.assert_close(approx_kl, torch.tensor(expected_kl, dtype=F64))


@pytest.mark.parametrize("clip_coef", [None, 0.2])
def test_ppo_loss_gradient_at_ratio_one_is_the_policy_gradient(clip_coef):
    # At ρ = 1 (the first minibatch of an update), ∇ρA = ρ·A·∇log π = A·∇log π: REINFORCE/A2C.
    old = torch.tensor(OLD_LOGPROB, dtype=F64)
    adv = torch.tensor(ADV, dtype=F64)
    new = old.clone().requires_grad_(True)
    loss, approx_kl, clip_fraction = ppo_loss(new, old, adv, clip_coef)
    loss.backward()
    reference = old.clone().requires_grad_(True)
    (-(reference * adv).mean()).backward()
    torch.testing.assert_close(new.grad, reference.grad)
    torch.testing.assert_close(loss, -adv.mean())
    assert float(approx_kl) == 0.0 and float(clip_fraction) == 0.0


def test_value_loss_hand_computed():
    new = torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=F64)
    old = torch.tensor([0.5, 2.5, 0.0, 0.4], dtype=F64)
    ret = torch.tensor([2.0, 0.0, 1.0, 0.3], dtype=F64)
    # Unclipped: (V − R)² = [1, 4, 4, 0.04], mean 2.26, halved 1.13.
    torch.testing.assert_close(value_loss(new, old, ret, None), torch.tensor(1.13, dtype=F64))
    # Clipped values old + clamp(new − old, ±0.2) = [0.7, 2.3, −0.2, 0.5],
    # squared errors [1.69, 5.29, 1.44, 0.04]; the max with the unclipped [1.69, 5.29, 4, 0.04],
    # mean 11.02 / 4 = 2.755, halved 1.3775.
    torch.testing.assert_close(value_loss(new, old, ret, 0.2), torch.tensor(1.3775, dtype=F64))
    # A wide clip changes nothing.
    torch.testing.assert_close(value_loss(new, old, ret, 10.0), torch.tensor(1.13, dtype=F64))


def test_explained_variance():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(100, generator=g)
    torch.testing.assert_close(explained_variance(target, target), torch.tensor(1.0))
    mean_pred = torch.full_like(target, float(target.mean()))
    torch.testing.assert_close(
        explained_variance(mean_pred, target), torch.tensor(0.0), atol=1e-6, rtol=0
    )
    # A noisy prediction: 1 − Var[noise] / Var[target], about 0 for unit noise on a unit target.
    noisy = target + torch.randn(100, generator=g)
    ev = explained_variance(noisy, target)
    assert -0.5 < float(ev) < 0.5
    torch.testing.assert_close(ev, 1 - (target - noisy).var() / target.var())
    constant = torch.full((10,), 3.0)
    torch.testing.assert_close(
        explained_variance(torch.randn(10, generator=g), constant), torch.tensor(0.0)
    )
    assert explained_variance(target, target).dim() == 0


# ---- PGConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, match", [
    ({"num_steps": 0}, "num_steps"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"update_epochs": 0}, "update_epochs"),
    ({"num_minibatches": 0}, "num_minibatches"),
    ({"max_grad_norm": 0.0}, "max_grad_norm"),
    ({"gamma": 1.5}, "gamma"),
    ({"gamma": -0.1}, "gamma"),
    ({"gae_lambda": 1.01}, "gae_lambda"),
    ({"clip_coef": 0.0}, "clip_coef"),
    ({"clip_coef": -0.2}, "clip_coef"),
    ({"hidden": ()}, "hidden"),
    ({"hidden": (64, 0)}, "hidden"),
    ({"ent_coef": -0.01}, "ent_coef must be >= 0"),  # would reward certainty
    ({"vf_coef": -1.0}, "vf_coef must be >= 0"),  # would train the critic away from the returns
])
def test_config_rejects_nonsense(overrides, match):
    with pytest.raises(ValueError, match=match):
        PGConfig(**overrides)


def test_config_accepts_the_edge_cases_of_a2c_and_reinforce():
    PGConfig(clip_coef=None, gamma=1.0, gae_lambda=1.0, update_epochs=1, num_minibatches=1)
    PGConfig(gamma=0.0, gae_lambda=0.0, hidden=(1,))


# ---- PGAgent -------------------------------------------------------------------------------

OBS_DIM, NUM_ACTIONS, BATCH = 3, 2, 64
METRIC_KEYS = {
    "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm",
    "explained_variance",
}


def make_agent(seed: int = 0, init_seed: int = 0, continuous: bool = False, **overrides) -> PGAgent:
    """A tiny agent; `init_seed` fixes the net's initial weights (drawn from torch's global RNG)."""
    overrides.setdefault("hidden", (8,))
    overrides.setdefault("learning_rate", 1e-2)
    overrides.setdefault("update_epochs", 3)
    overrides.setdefault("num_minibatches", 4)
    torch.manual_seed(init_seed)
    return PGAgent(
        PGConfig(**overrides), obs_dim=OBS_DIM, action_dim=NUM_ACTIONS, continuous=continuous,
        seed=seed,
    )


def make_rollout(agent: PGAgent, seed: int) -> Rollout:
    """B transitions acted by `agent` (so the stored log-probs are its own), synthetic returns."""
    g = torch.Generator().manual_seed(seed)
    obs_BO = torch.randn(BATCH, OBS_DIM, generator=g)
    with torch.no_grad():
        action, logprob_B = agent.net.sample(obs_BO, g)
        value_B = agent.value(obs_BO)
    advantage_B = torch.randn(BATCH, generator=g)
    return Rollout(obs_BO, action, logprob_B, value_B, advantage_B, value_B + advantage_B)


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def all_equal(xs, ys) -> bool:
    return all(torch.equal(x, y) for x, y in zip(xs, ys, strict=True))


def optimizer_steps(agent: PGAgent) -> int:
    return int(agent.optimizer.state[agent.net.policy_head.weight]["step"])


@pytest.mark.parametrize("continuous", [False, True])
def test_update_returns_0d_metrics_and_changes_every_parameter(continuous):
    agent = make_agent(continuous=continuous)
    rollout = make_rollout(agent, 0)
    before = params(agent.net)
    metrics = agent.update(rollout)
    assert set(metrics) == METRIC_KEYS
    for name, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, name
        assert not value.requires_grad, name
        assert torch.isfinite(value), name
    assert all(not torch.equal(x, y) for x, y in zip(before, params(agent.net), strict=True))
    assert agent.num_updates == 1
    assert optimizer_steps(agent) == 3 * 4  # epochs × minibatches of 16
    assert float(metrics["value_loss"]) > 0 and float(metrics["grad_norm"]) > 0
    assert float(metrics["approx_kl"]) > 0  # the policy moved between minibatches
    torch.testing.assert_close(
        metrics["explained_variance"], explained_variance(rollout.value, rollout.returns)
    )


def test_update_step_matches_the_loss_functions():
    # One epoch, one minibatch: the step sees the whole rollout in the net's current state.
    agent = make_agent(
        update_epochs=1, num_minibatches=1, clip_vloss=True, ent_coef=0.01, vf_coef=0.25,
        max_grad_norm=1e6,  # no clipping, so Adam's first moment shows the raw gradient
    )
    rollout = make_rollout(agent, 1)
    # Stored values away from the net's own, so that clipping the value update matters.
    old_value_B = rollout.value + torch.linspace(-1.0, 1.0, BATCH)
    rollout = rollout._replace(value=old_value_B)
    reference = copy.deepcopy(agent.net)
    logprob_B, entropy_B, value_B = reference.evaluate_actions(rollout.obs, rollout.action)
    adv_B = (rollout.advantage - rollout.advantage.mean()) / (rollout.advantage.std() + 1e-8)
    expected_policy, _, _ = ppo_loss(logprob_B, rollout.logprob, adv_B, 0.2)
    expected_value = value_loss(value_B, rollout.value, rollout.returns, 0.2)
    assert not torch.allclose(expected_value, value_loss(value_B, None, rollout.returns, None))
    (expected_policy - 0.01 * entropy_B.mean() + 0.25 * expected_value).backward()
    metrics = agent.update(rollout)
    torch.testing.assert_close(metrics["policy_loss"], expected_policy.detach())
    torch.testing.assert_close(metrics["value_loss"], expected_value.detach())
    torch.testing.assert_close(metrics["entropy"], entropy_B.mean().detach())
    assert float(metrics["clip_fraction"]) == 0.0  # ρ = 1 before the first step
    assert float(metrics["approx_kl"]) < 1e-6
    # Adam's first step stores exp_avg = (1 − β1)·g: g is the gradient of the combined loss
    # (normalised advantages, entropy bonus, weighted value loss).
    beta1 = agent.optimizer.defaults["betas"][0]
    grads = [p.grad for p in reference.parameters()]
    for p, g in zip(agent.net.parameters(), grads, strict=True):
        exp_avg = agent.optimizer.state[p]["exp_avg"]
        torch.testing.assert_close(exp_avg, (1 - beta1) * g, rtol=1e-4, atol=1e-8)
    grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    torch.testing.assert_close(metrics["grad_norm"], grad_norm)


# 0.1 lies above this update's approx-KL (< 0.01) but below its entropy, value loss and grad
# norm (~0.5 each): reading any of those instead would stop after one epoch.
@pytest.mark.parametrize("target_kl, epochs", [(None, 3), (1e3, 3), (0.1, 3), (1e-12, 1)])
def test_target_kl_stops_after_the_first_epoch(monkeypatch, target_kl, epochs):
    agent = make_agent(target_kl=target_kl)
    calls = []
    step = agent._minibatch_step
    monkeypatch.setattr(
        agent, "_minibatch_step", lambda mb, **kw: calls.append(len(mb.obs)) or step(mb, **kw)
    )
    metrics = agent.update(make_rollout(agent, 0))
    assert calls == [16] * 4 * epochs
    assert optimizer_steps(agent) == 4 * epochs
    if target_kl is not None and epochs == 1:
        assert float(metrics["approx_kl"]) > target_kl


def test_target_kl_reads_each_epochs_own_kl_not_the_mean_since_the_first(monkeypatch):
    # Epoch 1's KL is ~0 (ρ = 1 at its start): averaged in, it hid epoch 2's 0.03 (mean 0.015)
    # from a 0.02 limit, and the update ran on.
    agent = make_agent(target_kl=0.02)
    kl_by_epoch = iter([0.0] * 4 + [0.03] * 4 + [0.03] * 4)
    metrics = lambda: torch.tensor([next(kl_by_epoch) if m == "approx_kl" else 0.0 for m in METRICS])
    monkeypatch.setattr(agent, "_minibatch_step", lambda mb, **kw: metrics())
    agent.update(make_rollout(agent, 0))
    assert len(list(kl_by_epoch)) == 4  # epoch 3 never ran


@pytest.mark.parametrize("continuous", [False, True])
def test_one_minibatch_update_is_the_shuffled_one_without_the_shuffle(continuous):
    """With a single minibatch, update() skips the per-epoch shuffle and gather and normalises the
    advantages once: the same optimizer steps as feeding each epoch a shuffled copy of the whole
    rollout (up to float summation order), and no draws from the agent's generator."""
    fast = make_agent(continuous=continuous, num_minibatches=1, ent_coef=0.01)
    slow = make_agent(continuous=continuous, num_minibatches=1, ent_coef=0.01)
    rollout = make_rollout(fast, 0)
    rng_before = fast.generator.get_state()
    fast.update(rollout)
    assert torch.equal(fast.generator.get_state(), rng_before)
    g = torch.Generator().manual_seed(1)
    for _ in range(slow.config.update_epochs):
        order = torch.randperm(BATCH, generator=g)
        slow._minibatch_step(Rollout(*(t[order] for t in rollout)))
    for a, b in zip(fast.net.parameters(), slow.net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(fast.net.policy_head.weight, make_agent().net.policy_head.weight)


def test_minibatches_that_do_not_divide_the_rollout_are_as_many_as_asked_and_drop_nothing(
    monkeypatch,
):
    agent = make_agent(num_minibatches=5, update_epochs=2)  # 64 = 13 + 13 + 13 + 13 + 12
    seen, step = [], agent._minibatch_step

    def spy(mb, **kwargs):
        seen.append(mb.obs)
        return step(mb, **kwargs)

    monkeypatch.setattr(agent, "_minibatch_step", spy)
    rollout = make_rollout(agent, 0)
    agent.update(rollout)
    assert [len(obs) for obs in seen] == [13, 13, 13, 13, 12] * 2
    by_first = lambda obs: obs[torch.argsort(obs[:, 0])]  # noqa: E731
    for epoch in (seen[:5], seen[5:]):  # each epoch sees every transition once
        assert torch.equal(by_first(torch.cat(epoch)), by_first(rollout.obs))
    with pytest.raises(ValueError, match="65 minibatches of a 64-step rollout"):
        make_agent(num_minibatches=65).update(rollout)


def test_values_of_a_big_batch_are_computed_a_chunk_at_a_time(monkeypatch):
    import agents.pg

    agent = make_agent()
    obs_BO = torch.randn(10, OBS_DIM, generator=torch.Generator().manual_seed(0))
    whole = agent.value(obs_BO)
    sizes = []
    forward = agent.net.value
    monkeypatch.setattr(agents.pg, "CHUNK", 4)
    monkeypatch.setattr(agent.net, "value", lambda obs: sizes.append(len(obs)) or forward(obs))
    torch.testing.assert_close(agent.value(obs_BO), whole)
    assert sizes == [4, 4, 2]


@pytest.mark.parametrize("continuous", [False, True])
def test_explore_acts_with_the_rollouts_noise_from_the_agents_generator(continuous):
    a, b = make_agent(seed=3, continuous=continuous), make_agent(seed=3, continuous=continuous)
    obs_NO = torch.randn(8, OBS_DIM, generator=torch.Generator().manual_seed(0))
    noise_TNA = a.exploration_noise(4, 8)
    assert noise_TNA.shape == (4, 8, NUM_ACTIONS)
    assert torch.equal(noise_TNA, b.exploration_noise(4, 8))  # seeded: the same rollout noise
    assert not torch.equal(a.exploration_noise(4, 8), noise_TNA)  # the generator advances
    assert torch.equal(a.explore(obs_NO, torch.zeros(8, NUM_ACTIONS)), a.act(obs_NO))
    actions = [a.explore(obs_NO, noise_NA) for noise_NA in noise_TNA]
    assert torch.equal(actions[0], a.net.draw(obs_NO, noise_TNA[0]))
    assert not all(torch.equal(actions[0], x) for x in actions[1:])  # each step its own noise


@pytest.mark.parametrize("continuous", [False, True])
def test_score_gives_the_sampling_logprobs_and_the_values_a_chunk_at_a_time(monkeypatch, continuous):
    """The loop samples actions without their log-probabilities and scores the whole rollout
    after it: the same log-probabilities as sampling computes, the critic's values, chunked."""
    import agents.pg

    agent = make_agent(continuous=continuous)
    obs_BO = torch.randn(10, OBS_DIM, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        action_B, logprob_B = agent.net.sample(obs_BO, torch.Generator().manual_seed(1))
    scored_logprob_B, value_B = agent.score(obs_BO, action_B)
    torch.testing.assert_close(scored_logprob_B, logprob_B)
    torch.testing.assert_close(value_B, agent.value(obs_BO))
    sizes = []
    forward = agent.net.evaluate_actions
    monkeypatch.setattr(agents.pg, "CHUNK", 4)
    monkeypatch.setattr(
        agent.net, "evaluate_actions", lambda obs, a: sizes.append(len(obs)) or forward(obs, a)
    )
    chunked = agent.score(obs_BO, action_B)
    assert sizes == [4, 4, 2]
    torch.testing.assert_close(chunked, (scored_logprob_B, value_B))


def test_the_loss_clips_with_the_agents_current_clip_coef():
    """The loop anneals agent.clip_coef (--anneal-clip): the surrogate must use it, not the
    config's ε; the value clip keeps the config's."""
    rollout = make_rollout(make_agent(), 0)
    fractions = {}
    for eps in (0.2, 1e-4):
        agent = make_agent(num_minibatches=1, update_epochs=4)
        agent.clip_coef = eps
        fractions[eps] = float(agent.update(rollout)["clip_fraction"])
    assert fractions[1e-4] > 0.5 > fractions[0.2]


def test_without_a_critic_the_value_net_is_untouched():
    agent = make_agent(critic=False)
    rollout = make_rollout(agent, 0)
    assert torch.equal(rollout.value, torch.zeros(BATCH))  # agent.value is 0 without a critic
    critic_before = params(agent.net.value_head) + params(agent.net.critic_trunk)
    actor_before = params(agent.net.policy_head) + params(agent.net.actor_trunk)
    metrics = agent.update(rollout)
    assert float(metrics["value_loss"]) == 0.0
    assert all_equal(critic_before, params(agent.net.value_head) + params(agent.net.critic_trunk))
    assert all(
        not torch.equal(x, y)
        for x, y in zip(actor_before, params(agent.net.policy_head) + params(agent.net.actor_trunk))
    )
    assert agent.net.value_head.weight not in agent.optimizer.state  # never stepped
    assert torch.equal(agent.value(rollout.obs), torch.zeros(BATCH))
    assert torch.equal(agent.score(rollout.obs, rollout.action)[1], torch.zeros(BATCH))


def test_seeded_agents_produce_identical_updates():
    a, b, c = make_agent(seed=3), make_agent(seed=3), make_agent(seed=4)  # same initial weights
    rollout = make_rollout(a, 0)
    ma, mb = a.update(rollout), b.update(rollout)
    c.update(rollout)
    for key in METRIC_KEYS:
        torch.testing.assert_close(ma[key], mb[key], rtol=0, atol=0, msg=key)
    assert all_equal(params(a.net), params(b.net))
    # The agent's seed drives the minibatch order, so another seed updates differently.
    assert not all_equal(params(a.net), params(c.net))


def assert_agents_continue_identically(a: PGAgent, b: PGAgent) -> None:
    for i in range(10, 12):
        rollout = make_rollout(a, i)
        ma, mb = a.update(rollout), b.update(rollout)
        for key in METRIC_KEYS:
            torch.testing.assert_close(ma[key], mb[key], rtol=0, atol=0, msg=key)
    assert all_equal(params(a.net), params(b.net))
    assert a.num_updates == b.num_updates == 3
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    obs_NO = torch.randn(32, OBS_DIM)
    assert torch.equal(a.act(obs_NO, deterministic=False), b.act(obs_NO, deterministic=False))


def trained_agent() -> PGAgent:
    agent = make_agent(seed=1, init_seed=1)
    agent.update(make_rollout(agent, 0))
    agent.act(torch.zeros(5, OBS_DIM), deterministic=False)  # move the sampling RNG on
    return agent


def test_state_dict_round_trip_through_a_file_gives_identical_updates():
    a = trained_agent()
    saved = io.BytesIO()
    torch.save(a.state_dict(), saved)
    saved.seek(0)
    b = make_agent(seed=2, init_seed=2)
    assert not all_equal(params(a.net), params(b.net))
    assert b.load_state_dict(torch.load(saved, weights_only=True)) is True
    assert_agents_continue_identically(a, b)


def test_state_dict_round_trip_in_process_gives_identical_updates():
    # The loaded agent must not share optimizer state with the source, or a's steps would move b.
    a = trained_agent()
    b = make_agent(seed=2, init_seed=2)
    b.load_state_dict(a.state_dict())
    assert_agents_continue_identically(a, b)


@pytest.mark.parametrize("clip", [10.0, 1.5])
def test_reward_scaler_divides_by_the_std_of_discounted_returns_so_far(clip):
    # Two envs, γ = 0.9; env 1's episode ends at step 0, env 0's at step 2; a rollout of 3 steps,
    # then one of 2 that carries env 1's running return on.
    reward_TN = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]])
    done_TN = torch.tensor(
        [[False, True], [False, False], [True, False], [False, False], [False, True]]
    )
    returns_TN = torch.tensor([
        [1.0, 2.0], [0.9 * 1 + 3, 4.0], [0.9 * 3.9 + 5, 0.9 * 4 + 6],
        [7.0, 0.9 * 9.6 + 8], [0.9 * 7 + 9, 0.9 * 16.64 + 10],
    ], dtype=F64)
    scaler = RewardScaler(2, gamma=0.9, device="cpu", clip=clip)
    scaled = torch.cat([  # two rollouts: the second carries on from the first's state
        scaler.scale(reward_TN[:3], done_TN[:3]), scaler.scale(reward_TN[3:], done_TN[3:])
    ])
    for t in range(5):
        seen = returns_TN[: t + 1].flatten()  # every return so far, plus the prior's 1e-4 samples
        n = seen.numel() + 1e-4
        var = (seen.pow(2).sum() + 1e-4) / n - (seen.sum() / n) ** 2
        expected = (reward_TN[t].double() / torch.sqrt(var + 1e-8)).clamp(-clip, clip).float()
        torch.testing.assert_close(scaled[t], expected)
    # The running return restarts where an episode ended, and the statistics hold all 10 returns.
    torch.testing.assert_close(scaler.returns_N, returns_TN[-1] * ~done_TN[-1])
    assert scaler.stats.count.item() == pytest.approx(10 + 1e-4)
