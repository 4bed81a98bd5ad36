"""seed=null: a seed is drawn on rank 0, inherited by the ranks Lightning starts, logged and recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from litvision.tasks.seed import SEED_ENV, draw_or_inherit_seed, seed_run
from litvision.utils.errors import ConfigError


def test_rank_zero_draws_a_fresh_seed_even_if_a_previous_job_left_one() -> None:
    """In a sweep, the previous job's PL_GLOBAL_SEED is still in the environment: not reused."""
    draws = {draw_or_inherit_seed(0, {SEED_ENV: "123"}) for _ in range(5)}
    assert len(draws) > 1 and all(0 <= d < 2**31 for d in draws)


def test_other_ranks_take_rank_zeros_seed() -> None:
    assert draw_or_inherit_seed(1, {SEED_ENV: "123", "LOCAL_RANK": "1"}) == 123


@pytest.mark.parametrize(
    ("rank", "environ"),
    [(1, {}), (0, {"WORLD_SIZE": "4"}), (0, {"SLURM_NTASKS": "2"}), (3, {"SLURM_NTASKS": "8"})],
)
def test_ranks_started_by_slurm_or_torchrun_refuse_a_drawn_seed(rank: int, environ: dict) -> None:
    with pytest.raises(ConfigError, match="pass seed=<int>"):
        draw_or_inherit_seed(rank, environ)


def test_drawn_seed_goes_into_the_config_and_the_saved_config(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(SEED_ENV, raising=False)
    saved = tmp_path / ".hydra" / "config.yaml"
    saved.parent.mkdir()
    cfg = OmegaConf.create({"seed": None, "dataset": {"seed": "${seed}"}, "optimizer": {"lr": 0.1}})
    saved.write_text(OmegaConf.to_yaml(cfg))
    seed = seed_run(cfg, saved_config=saved)
    assert cfg.seed == seed and cfg.dataset.seed == seed  # interpolations see it
    recorded = OmegaConf.load(saved)
    assert recorded.seed == seed and recorded.optimizer.lr == 0.1
    assert os.environ[SEED_ENV] == str(seed)  # what the ranks Lightning starts inherit


def test_a_given_seed_is_used_as_is(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"seed": 7})
    assert seed_run(cfg) == 7 and os.environ[SEED_ENV] == "7"
