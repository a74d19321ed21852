"""Fixtures of the train/ tests: one shared tiny run."""

from __future__ import annotations

import pytest

from train.offpolicy import train_dqn
from train_testlib import tiny_configs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished tiny run (600 steps, evals at 300 and 600); tests must not modify it."""
    run, cfg = tiny_configs(tmp_path_factory.mktemp("runs"), run_name="tiny")
    result = train_dqn(run, cfg)
    assert result.global_step == 600 and result.stopped_by == "total_steps"
    return result.run_dir
