"""Which preset an env id gets."""

from agents.dqn import DQNConfig
from agents.pg import PGConfig
from train.config import RunConfig
from train.presets import DQN_PRESETS, PG_PRESETS, apply_preset


def preset_of(algo, env_id):
    config = DQNConfig() if algo == "dqn" else PGConfig()
    return apply_preset(algo, env_id, RunConfig(env=env_id), config)[1]


def test_the_torch_cartpole_shares_cartpoles_presets():
    for algo, presets in [("dqn", DQN_PRESETS), *PG_PRESETS.items()]:
        cartpole = presets["CartPole-v1"]
        assert preset_of(algo, "rlplay/CartPole-v1") == cartpole
        assert preset_of(algo, "envs:rlplay/CartPole-v1") == cartpole  # a module prefix too
        assert preset_of(algo, "CartPole-v1") == cartpole
    assert preset_of("ppo", "Pendulum-v1") != preset_of("ppo", "CartPole-v1")


def test_the_preset_lands_in_the_configs():
    (run, cfg), _ = apply_preset("ppo", "rlplay/CartPole-v1", RunConfig(env="x"), PGConfig())
    assert (run.num_envs, cfg.num_steps, cfg.learning_rate) == (32, 32, 5e-3)
    assert cfg.ent_coef == PG_PRESETS["ppo"]["CartPole-v1"]["ent_coef"]
