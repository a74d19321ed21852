"""Data-parallel PGAgent (issue 7): two gloo ranks against one process fed both ranks' batches."""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agents.pg import DataParallel, PGAgent, PGConfig, Rollout

WORLD, UPDATES, BATCH, OBS_DIM, NUM_ACTIONS = 2, 4, 48, 3, 4
# Every statistic that crosses ranks is in play: global advantage normalisation, obs
# normalisation, several shuffled minibatches per epoch, clipping of the ratio, value and norm.
CONFIG = dict(
    hidden=(16,), learning_rate=1e-2, update_epochs=3, num_minibatches=4, norm_adv=True,
    norm_obs=True, clip_vloss=True, ent_coef=0.01, max_grad_norm=0.5,
)


def make_agent(data_parallel: DataParallel | None = None, seed: int = 0) -> PGAgent:
    torch.manual_seed(0)  # the same initial weights on every rank and in the reference
    return PGAgent(
        PGConfig(**CONFIG), obs_dim=OBS_DIM, action_dim=NUM_ACTIONS, continuous=False,
        seed=seed, data_parallel=data_parallel,
    )


def rollouts() -> list[list[Rollout]]:
    """rollouts()[u][r]: rank r's batch for update u, acted by the initial policy (so the ratio
    drifts from 1 over the updates and clipping starts to matter)."""
    actor = make_agent()
    out = []
    for u in range(UPDATES):
        per_rank = []
        for r in range(WORLD):
            g = torch.Generator().manual_seed(1_000 * u + r)
            obs_BO = 3.0 * torch.randn(BATCH, OBS_DIM, generator=g) + r  # ranks see other states
            with torch.no_grad():
                action_B, logprob_B = actor.net.sample(obs_BO, g)
                value_B = actor.value(obs_BO)
            advantage_B = torch.randn(BATCH, generator=g) * (1 + r)
            per_rank.append(
                Rollout(obs_BO, action_B, logprob_B, value_B, advantage_B, value_B + advantage_B)
            )
        out.append(per_rank)
    return out


def rank_seed(rank: int) -> int:
    return 7 + rank


def train_rank(rank: int, init_file: str, out_dir: str) -> None:
    """One rank: its own sampling seed, its own batches, gradients averaged over gloo."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
        timeout=timedelta(seconds=60),
    )

    def all_reduce(t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t)
        return t

    agent = make_agent(DataParallel(WORLD, all_reduce), seed=rank_seed(rank))
    metrics = []
    for batches in rollouts():
        metrics.append(agent.update(batches[rank]))
        agent.observe(batches[rank].obs)
    torch.save(
        {"net": agent.net.state_dict(), "optimizer": agent.optimizer.state_dict(),
         "metrics": metrics}, f"{out_dir}/rank{rank}.pt",
    )
    dist.barrier()  # no rank tears gloo down while its peer still talks to it
    dist.destroy_process_group()


def reference_update(agent: PGAgent, batches: list[Rollout], generators) -> None:
    """PGAgent.update on one process, fed the ranks' minibatches concatenated: each epoch every
    rank shuffles its batch with its own generator, and minibatch k is all ranks' k-th slices."""
    size = BATCH // CONFIG["num_minibatches"]
    for _ in range(CONFIG["update_epochs"]):
        orders = [torch.randperm(BATCH, generator=g) for g in generators]
        for start in range(0, BATCH - size + 1, size):
            agent._minibatch_step(Rollout(*(
                torch.cat([field[order[start : start + size]] for field, order in zip(fields, orders)])
                for fields in zip(*batches)
            )))


def test_two_gloo_ranks_stay_identical_and_match_one_process_fed_both_batches(tmp_path):
    mp.spawn(train_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    # Bitwise identical across ranks: weights, obs statistics, Adam's moments and the metrics.
    for key, tensor in ranks[0]["net"].items():
        assert torch.equal(tensor, ranks[1]["net"][key]), key
    for key, state in ranks[0]["optimizer"]["state"].items():
        for name, tensor in state.items():
            assert torch.equal(tensor, ranks[1]["optimizer"]["state"][key][name]), (key, name)
    for m0, m1 in zip(ranks[0]["metrics"], ranks[1]["metrics"], strict=True):
        assert all(torch.equal(m0[k], m1[k]) for k in m0)

    reference = make_agent()
    generators = [torch.Generator().manual_seed(rank_seed(r)) for r in range(WORLD)]
    for batches in rollouts():
        reference_update(reference, batches, generators)
        reference.observe(torch.cat([b.obs for b in batches]))
    start = make_agent().net.state_dict()
    for key, tensor in reference.net.state_dict().items():
        got = ranks[0]["net"][key]
        if key.startswith("obs_norm"):  # the statistics of both ranks' observations together
            torch.testing.assert_close(got, tensor, rtol=1e-12, atol=1e-12, msg=key)
            continue
        assert not torch.equal(tensor, start[key]), f"{key} never changed: the test is vacuous"
        torch.testing.assert_close(got, tensor, rtol=1e-5, atol=1e-6, msg=key)
