"""conf/audit.yaml composes like train.yaml: the same groups and presets, plus the audit options."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_audit(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("audit", overrides=["paths.root_dir=/tmp", "paths.output_dir=/tmp/out", *overrides])


def test_audit_has_every_group_train_has() -> None:
    train = OmegaConf.load(CONF / "train.yaml").defaults
    audit = OmegaConf.load(CONF / "audit.yaml").defaults
    groups = lambda defaults: {next(iter(d)) for d in defaults if not isinstance(d, str)}  # noqa: E731
    assert groups(train) - {"hparams_search"} <= groups(audit)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_into_the_audit_like_into_train(experiment: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        train = compose(
            "train", overrides=["paths.root_dir=/tmp", "paths.output_dir=/tmp/out", f"experiment={experiment}"]
        )
        audit = compose(
            "audit", overrides=["paths.root_dir=/tmp", "paths.output_dir=/tmp/out", f"experiment={experiment}"]
        )
    for key in ("dataset", "model", "optimizer", "scheduler", "loss", "trainer", "augmentation", "callbacks"):
        assert OmegaConf.to_container(audit[key]) == OmegaConf.to_container(train[key]), key


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "audit").glob("*.yaml")))
def test_audit_options_resolve(option: str) -> None:
    cfg = compose_audit(f"audit={option}", "dataset=imagenet")
    OmegaConf.resolve(cfg)
    assert set(cfg.audit.sections) == {"balance", "health", "duplicates", "label_errors"}
    assert cfg.audit.folds_dir == "/tmp/out/audit/folds"
    assert cfg.predict_data.split == "source_train"


def test_thorough_trains_longer_folds() -> None:
    cfg = compose_audit("audit=thorough", "experiment=cifar10_cpu")
    assert cfg.audit.label_errors.folds == 5 and cfg.audit.label_errors.epochs is None
    assert cfg.audit.label_errors.num_issues == "mixture"  # the rest from default.yaml
