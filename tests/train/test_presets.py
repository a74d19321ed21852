"""Which preset an env id gets."""

from agents.dqn import DQNConfig
from agents.pg import PGConfig
from train.config import RunConfig
from train.presets import DQN_PRESETS, PG_PRESETS, apply_preset


def preset_of(algo, env_id):
    config = DQNConfig() if algo == "dqn" else PGConfig()
    return apply_preset(algo, env_id, RunConfig(env=env_id), config)[1]


def test_the_torch_cartpole_has_its_own_ppo_preset_and_shares_the_others():
    torch_ppo = PG_PRESETS["ppo"]["rlplay/CartPole-v1"]
    assert preset_of("ppo", "rlplay/CartPole-v1") == torch_ppo
    assert preset_of("ppo", "envs:rlplay/CartPole-v1") == torch_ppo  # a module prefix too
    assert torch_ppo["num_envs"] > PG_PRESETS["ppo"]["CartPole-v1"]["num_envs"]
    # Gymnasium's CartPole keeps its own; where the torch env has none, it gets CartPole-v1's.
    assert preset_of("ppo", "CartPole-v1") == PG_PRESETS["ppo"]["CartPole-v1"]
    assert preset_of("a2c", "rlplay/CartPole-v1") == PG_PRESETS["a2c"]["CartPole-v1"]
    assert preset_of("dqn", "rlplay/CartPole-v1") == DQN_PRESETS["CartPole-v1"]


def test_the_preset_lands_in_the_configs():
    (run, cfg), _ = apply_preset("ppo", "rlplay/CartPole-v1", RunConfig(env="x"), PGConfig())
    assert (run.num_envs, cfg.num_steps, cfg.learning_rate) == (64, 16, 5e-3)
    assert cfg.ent_coef == PG_PRESETS["ppo"]["CartPole-v1"]["ent_coef"]  # inherited
