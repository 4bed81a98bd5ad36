"""Every config option composes, and the composed objects have the documented meaning."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from litvision.loggers.wandb_logger import resolve_wandb_mode

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ["dataset", "augmentation", "model", "optimizer", "scheduler", "loss", "sampler", "trainer", "logger", "experiment", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=["paths.root_dir=/tmp", "paths.output_dir=/tmp/out", *overrides])


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_resolves(group: str, option: str) -> None:
    cfg = compose_train(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_model_options_build_a_working_classifier() -> None:
    import torch

    for option in options("model"):
        cfg = compose_train(f"model={option}")
        model = instantiate(cfg.model, num_classes=10)
        size = 64 if option in ("resnet18", "resnet50") else 32
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 10), option


def test_cifar_augmentation_config_is_pad_crop_flip() -> None:
    import albumentations as A

    cfg = compose_train("augmentation=cifar_standard")
    pipeline = instantiate(cfg.augmentation.train)
    assert [type(t) for t in pipeline.transforms] == [A.PadIfNeeded, A.RandomCrop, A.HorizontalFlip, A.Erasing]
    assert pipeline.transforms[-1].p == 0.0  # random erasing is an option (augmentation.random_erasing), off
    assert cfg.augmentation.eval is None


@pytest.mark.parametrize(
    ("config_mode", "env", "has_key", "expected"),
    [
        ("auto", {}, False, "offline"),
        ("auto", {}, True, "online"),
        ("auto", {"WANDB_MODE": "offline"}, True, "offline"),
        ("auto", {"WANDB_MODE": "online"}, False, "online"),
        ("auto", {"WANDB_MODE": "dryrun"}, True, "offline"),
        ("offline", {"WANDB_MODE": "online"}, True, "offline"),
        ("online", {"WANDB_MODE": "offline"}, False, "online"),
    ],
)
def test_wandb_mode_resolution(monkeypatch, tmp_path, config_mode, env, has_key, expected) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if has_key:
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode(config_mode) == expected


def test_wandb_login_netrc_counts_as_credentials(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert resolve_wandb_mode("auto") == "online"


def test_invalid_wandb_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="logger.wandb.mode"):
        resolve_wandb_mode("sometimes")
