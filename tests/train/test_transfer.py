"""--init-from loads exactly the pretrained tensors, --freeze keeps them bit-identical through RL
updates until --unfreeze-after, and every mismatch is refused before a run starts."""

from __future__ import annotations

import copy
import dataclasses

import gymnasium as gym
import pytest
import torch

from agents import DQNAgent, DQNConfig
from agents.pg import PGAgent, PGConfig
from nets import policy_sizes, space_sizes
from train.checkpoint import LATEST, load_checkpoint
from train.collect import CollectArgs, collect
from train.config import RunConfig
from train.dataset import save_dataset
from train.errors import UserError
from train.onpolicy import train_pg
from train.pretrain import PretrainConfig, pretrain
from train.transfer import init_from, prepare
from train_testlib import tiny_configs

ACTOR = ["actor_trunk.0.0.weight", "actor_trunk.0.0.bias", "actor_trunk.0.2.weight",
         "actor_trunk.0.2.bias", "policy_head.weight", "policy_head.bias"]
CRITIC = ["critic_trunk.0.0.weight", "critic_trunk.0.0.bias", "critic_trunk.0.2.weight",
          "critic_trunk.0.2.bias", "value_head.weight", "value_head.bias"]
CARTPOLE = gym.make("CartPole-v1")
SPACES = dict(env_id="CartPole-v1", observation_space=CARTPOLE.observation_space,
              action_space=CARTPOLE.action_space)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """BC runs of a PPO net and of a DQN net (dueling: CartPole's preset), hidden (16, 16)."""
    tmp = tmp_path_factory.mktemp("transfer")
    save_dataset(tmp / "data", collect(CollectArgs("scripted", out="-", env="CartPole-v1",
                                                   episodes=3, device="cpu")))
    runs = {}
    for name, net, kw in (("ppo", "ppo", {}), ("dqn", "dqn", {}), ("ppo_norm", "ppo", {"norm_obs": True})):
        runs[name] = pretrain(PretrainConfig(
            data=str(tmp / "data"), net=net, hidden=(16, 16), max_epochs=3, eval_episodes=1,
            runs_dir=str(tmp / "runs"), run_name=name, progress=False, device="cpu", **kw,
        ), log=lambda _: None).run_dir
    return runs


def _pg_agent(hidden=(16, 16)) -> PGAgent:
    sizes = policy_sizes(CARTPOLE.observation_space, CARTPOLE.action_space)
    return PGAgent(PGConfig(hidden=hidden), **sizes)


def test_pg_agent_gets_exactly_the_actor(pretrained):
    agent = _pg_agent()
    before = copy.deepcopy(agent.net.state_dict())
    transfer = init_from(pretrained["ppo"], agent.net, agent.net_kwargs, **SPACES)
    assert transfer.loaded == ACTOR and transfer.left == CRITIC
    theirs = load_checkpoint(pretrained["ppo"])[0]["state"]
    after = agent.net.state_dict()
    for name in ACTOR:
        assert torch.equal(after[name], theirs[name]) and not torch.equal(after[name], before[name])
    for name in CRITIC:
        assert torch.equal(after[name], before[name])


def test_dqn_gets_trunk_and_advantage_head_in_both_nets(pretrained):
    sizes = space_sizes(CARTPOLE.observation_space, CARTPOLE.action_space)
    agent = DQNAgent(DQNConfig(hidden=(16, 16), dueling=True), **sizes)
    transfer = init_from(pretrained["dqn"], agent.q_net, agent.net_kwargs, **SPACES,
                         copies=(agent.target_net,))
    assert transfer.loaded == ["trunk.0.0.weight", "trunk.0.0.bias", "trunk.0.2.weight",
                               "trunk.0.2.bias", "advantage.weight", "advantage.bias"]
    assert transfer.left == ["value.weight", "value.bias"]
    theirs = load_checkpoint(pretrained["dqn"])[0]["state"]
    for net in (agent.q_net, agent.target_net):
        assert all(torch.equal(net.state_dict()[k], theirs[k]) for k in transfer.loaded)


DQN_TRUNK = ["trunk.0.0.weight", "trunk.0.0.bias", "trunk.0.2.weight", "trunk.0.2.bias"]


def test_init_parts_trunk_loads_the_trunk_and_leaves_the_head_at_init(pretrained):
    sizes = space_sizes(CARTPOLE.observation_space, CARTPOLE.action_space)
    agent = DQNAgent(DQNConfig(hidden=(16, 16), dueling=True), **sizes)
    before = copy.deepcopy(agent.q_net.state_dict())
    transfer = init_from(pretrained["dqn"], agent.q_net, agent.net_kwargs, **SPACES,
                         copies=(agent.target_net,), parts="trunk")
    assert transfer.loaded == DQN_TRUNK
    assert transfer.left == ["value.weight", "value.bias", "advantage.weight", "advantage.bias"]
    theirs = load_checkpoint(pretrained["dqn"])[0]["state"]
    # The BC run did fit the advantage head, so leaving it is a choice, not a no-op.
    assert not torch.equal(theirs["advantage.weight"], before["advantage.weight"])
    for net in (agent.q_net, agent.target_net):
        state = net.state_dict()
        assert all(torch.equal(state[k], theirs[k]) for k in DQN_TRUNK)
        assert all(torch.equal(state[k], before[k]) for k in transfer.left)
    # The same for the policy-gradient net: its trunk, not its policy head.
    pg = _pg_agent()
    transfer = init_from(pretrained["ppo"], pg.net, pg.net_kwargs, **SPACES, parts="trunk")
    assert transfer.loaded == ACTOR[:4]
    assert transfer.left == CRITIC[:4] + ACTOR[4:] + CRITIC[4:]  # in the state dict's order


def test_dqn_loop_starts_from_the_pretrained_trunk_and_its_own_head(tmp_path, pretrained):
    from train.offpolicy import train_dqn

    def start(name, **kw):  # the nets as the loop starts: fewer env steps than learning_starts
        run, cfg = tiny_configs(tmp_path, total_steps=50, eval_every=0, dueling=True,
                                run_name=name, **kw)
        agent = load_checkpoint(train_dqn(run, cfg).run_dir / LATEST)[0]["agent"]
        return agent["q_net"], agent["target_net"]

    theirs = load_checkpoint(pretrained["dqn"])[0]["state"]
    scratch, _ = start("scratch")
    for net in start("trunk", init_from=str(pretrained["dqn"]), init_parts="trunk"):
        for name in DQN_TRUNK:
            assert torch.equal(net[name], theirs[name])
            assert not torch.equal(net[name], scratch[name])
        for name in ("value.weight", "value.bias", "advantage.weight", "advantage.bias"):
            assert torch.equal(net[name], scratch[name]), name  # the seed's own initialisation


def _tiny_pg_run(tmp_path, pretrained, norm_obs=False, **run_kw):
    run, _ = tiny_configs(tmp_path, total_steps=512, eval_every=256, **run_kw)
    cfg = PGConfig(hidden=(16, 16), num_steps=32, num_minibatches=2, update_epochs=2,
                   norm_obs=norm_obs)
    result = train_pg(run, cfg)
    return load_checkpoint(result.run_dir / LATEST)[0]["agent"]["net"]


def test_freeze_keeps_the_trunk_bit_identical_while_the_rest_learns(tmp_path, pretrained):
    theirs = load_checkpoint(pretrained["ppo"])[0]["state"]
    net = _tiny_pg_run(tmp_path, pretrained, init_from=str(pretrained["ppo"]), freeze="trunk")
    for name in ACTOR[:4]:  # the trunk
        assert torch.equal(net[name], theirs[name]), name
    assert not torch.equal(net["policy_head.weight"], theirs["policy_head.weight"])


def test_unfreeze_after_lets_the_trunk_learn(tmp_path, pretrained):
    theirs = load_checkpoint(pretrained["ppo"])[0]["state"]
    net = _tiny_pg_run(tmp_path, pretrained, init_from=str(pretrained["ppo"]), freeze="trunk",
                       unfreeze_after=256)
    assert not torch.equal(net["actor_trunk.0.0.weight"], theirs["actor_trunk.0.0.weight"])
    # The same run with the unfreezing past its end: the step decides, not the flag's presence.
    net = _tiny_pg_run(tmp_path / "later", pretrained, init_from=str(pretrained["ppo"]),
                       freeze="trunk", unfreeze_after=10_000)
    assert all(torch.equal(net[name], theirs[name]) for name in ACTOR[:4])


def test_freeze_holds_the_pretrained_obs_statistics(tmp_path, pretrained):
    theirs = load_checkpoint(pretrained["ppo_norm"])[0]["state"]
    net = _tiny_pg_run(tmp_path, pretrained, norm_obs=True, init_from=str(pretrained["ppo_norm"]),
                       freeze="trunk")
    for name in ("obs_norm.mean", "obs_norm.var", "obs_norm.count"):
        assert torch.equal(net[name], theirs[name]), name
    assert theirs["obs_norm.count"] > 100  # fitted to the dataset, not the initial 1e-4


def test_dqn_freeze_holds_the_trunk_of_both_nets(tmp_path, pretrained):
    from train.offpolicy import train_dqn

    run, cfg = tiny_configs(tmp_path, total_steps=600, eval_every=0, dueling=True,
                            init_from=str(pretrained["dqn"]), freeze="trunk")
    agent = load_checkpoint(train_dqn(run, cfg).run_dir / LATEST)[0]["agent"]
    theirs = load_checkpoint(pretrained["dqn"])[0]["state"]
    for net in (agent["q_net"], agent["target_net"]):
        assert all(torch.equal(net[name], theirs[name]) for name in DQN_TRUNK)
    assert not torch.equal(agent["q_net"]["advantage.weight"], theirs["advantage.weight"])


def test_resume_keeps_the_checkpoint_weights(pretrained):
    agent = _pg_agent()
    before = copy.deepcopy(agent.net.state_dict())
    run = RunConfig(init_from=str(pretrained["ppo"]), freeze="trunk")
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")])
    said = []
    freezer = prepare(run, agent.net, agent.net_kwargs, envs, resume={"resumed": True},
                      report=said.append)
    # The resumed checkpoint holds the weights: reloading the pretrained ones would undo training.
    assert all(torch.equal(v, agent.net.state_dict()[k]) for k, v in before.items())
    assert not any("init from" in line for line in said) and freezer.frozen


def test_mismatched_shapes_are_refused_clearly(pretrained):
    agent = _pg_agent(hidden=(32, 16))
    before = copy.deepcopy(agent.net.state_dict())
    with pytest.raises(UserError, match=(
        r"^cannot init from \S+best\.pt: its network does not match the agent's \(hidden "
        r"\(16, 16\) there, \(32, 16\) here; actor_trunk\.0\.0\.weight is \(16, 4\) there, "
        r"\(32, 4\) here; actor_trunk\.0\.0\.bias is \(16,\) there, \(32,\) here; "
        r"actor_trunk\.0\.2\.weight is \(16, 16\) there, \(16, 32\) here\); pretrain and train "
        r"with the same network settings$")):
        init_from(pretrained["ppo"], agent.net, agent.net_kwargs, **SPACES)
    assert all(torch.equal(v, agent.net.state_dict()[k]) for k, v in before.items())


def test_other_env_network_or_checkpoint_is_refused(pretrained, tiny_run):
    agent = _pg_agent()
    acrobot = gym.make("Acrobot-v1")
    with pytest.raises(UserError, match=r"pretrained on \S+\) comes from CartPole-v1 .*, not from "
                                        r"Acrobot-v1"):
        init_from(pretrained["ppo"], agent.net, agent.net_kwargs, env_id="Acrobot-v1",
                  observation_space=acrobot.observation_space, action_space=acrobot.action_space)
    with pytest.raises(UserError, match=r"was pretrained with --net dqn \(QNetwork\); this "
                                        r"agent's network is a ActorCritic"):
        init_from(pretrained["dqn"], agent.net, agent.net_kwargs, **SPACES)
    with pytest.raises(UserError, match=r"is a dqn training checkpoint; --init-from takes a run "
                                        r"of `rlplay pretrain`"):
        init_from(tiny_run, agent.net, agent.net_kwargs, **SPACES)


def test_freeze_flags_need_what_they_act_on():
    with pytest.raises(ValueError, match="freeze needs init_from"):
        RunConfig(freeze="trunk")
    with pytest.raises(ValueError, match="unfreeze_after needs freeze"):
        RunConfig(init_from="x", unfreeze_after=10)
    assert dataclasses.replace(RunConfig(init_from="x", freeze="trunk"), unfreeze_after=0)
    with pytest.raises(ValueError, match="init_parts needs init_from"):
        RunConfig(init_parts="trunk")


def test_incomplete_pretrained_checkpoint_and_bench_flags_are_refused(pretrained, tmp_path):
    from train.bench_transfer import TransferBench, run_transfer_bench
    from train.checkpoint import save_checkpoint

    ckpt = load_checkpoint(pretrained["ppo"])[0]
    del ckpt["trained"]
    save_checkpoint(tmp_path / "best.pt", ckpt)
    agent = _pg_agent()
    with pytest.raises(UserError, match=r"best\.pt is incomplete or corrupt \(no 'trained'\)"):
        init_from(tmp_path, agent.net, agent.net_kwargs, **SPACES)
    with pytest.raises(UserError, match="--unfreeze-after needs --freeze"):
        run_transfer_bench(TransferBench(env="CartPole-v1", unfreeze_after=10))
