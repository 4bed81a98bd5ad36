"""seed=null: a seed is drawn on rank 0, inherited by the ranks Lightning starts, logged and recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from litvision.tasks.build import settle_config
from litvision.tasks.seed import SEED_ENV, draw_or_inherit_seed, settled_seed
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


def test_a_drawn_seed_goes_into_the_saved_config(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(SEED_ENV, raising=False)
    saved = tmp_path / ".hydra" / "config.yaml"
    saved.parent.mkdir()
    cfg = OmegaConf.create({"seed": None, "dataset": {"seed": "${seed}"}, "optimizer": {"lr": 0.1}})
    saved.write_text(OmegaConf.to_yaml(cfg))
    seed = settled_seed(cfg.seed, saved_config=saved)
    recorded = OmegaConf.load(saved)
    assert recorded.seed == seed and recorded.optimizer.lr == 0.1


def test_a_given_seed_is_used_as_is(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"seed": 7})
    assert settle_config(cfg).seed == 7 and os.environ[SEED_ENV] == "7"


def test_the_settled_config_holds_the_drawn_seed_and_cannot_be_edited(monkeypatch) -> None:
    """One place fills the config in; interpolations see the drawn seed; the caller's config is untouched."""
    from omegaconf.errors import ReadonlyConfigError

    monkeypatch.delenv(SEED_ENV, raising=False)
    cfg = OmegaConf.create({"seed": None, "dataset": {"seed": "${seed}"}})
    settled = settle_config(cfg)
    assert isinstance(settled.seed, int) and settled.dataset.seed == settled.seed
    assert os.environ[SEED_ENV] == str(settled.seed)  # what the ranks Lightning starts inherit
    assert cfg.seed is None
    with pytest.raises(ReadonlyConfigError):
        settled.dataset.seed = 1


@pytest.mark.slow
def test_seed_null_under_ddp_gives_both_ranks_the_same_stream(fake_cifar_root: Path, tmp_path: Path) -> None:
    """trainer=ddp_sim seed=null: rank 1 uses rank 0's drawn seed, so the two shares of the shuffled
    training set are disjoint and together cover it exactly once (different seeds would overlap)."""
    import numpy as np

    from tests.helpers.run_helpers import TINY_MODEL, run_ddp_sim

    run_dir, labels = tmp_path / "run", tmp_path / "labels"
    run_ddp_sim(
        run_dir,
        "seed=null",
        "trainer.max_epochs=1",
        "test=false",
        "logger=csv",
        f"dataset.data_dir={fake_cifar_root}",
        *TINY_MODEL,
        "dataset.batch_size=16",
        "+callbacks.label_recorder._target_=tests.helpers.label_recorder.LabelRecorder",
        f"+callbacks.label_recorder.out_dir={labels}",
    )
    assert isinstance(OmegaConf.load(run_dir / ".hydra" / "config.yaml").seed, int)
    seen = np.concatenate([np.load(labels / f"labels_epoch0_rank{rank}.npy") for rank in (0, 1)])
    # 20 train-pool images per class, 2 held out for validation: 18 per class, each seen once
    assert np.bincount(seen, minlength=10).tolist() == [18] * 10
