"""Every config option composes, and the composed objects have the documented meaning."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from litvision.loggers.wandb_logger import resolve_wandb_mode
from litvision.tasks.build import check_accelerator, instantiate_group
from litvision.utils.errors import ConfigError, UserError

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = [
    "dataset",
    "augmentation",
    "model",
    "optimizer",
    "scheduler",
    "loss",
    "sampler",
    "mixing",
    "finetune",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "debug",
]
# packages a config may target without litvision depending on them (model=timm)
OPTIONAL_PACKAGES = {"timm"}
# our targets that import one of them when called
NEEDS_OPTIONAL = {"litvision.lightning_modules.backbones.timm_models.create_model": "timm"}


def options(group: str) -> list[str]:
    """The selectable options of a group (``_name.yaml`` files are shared bases, not options)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def compose_train(*overrides: str, config_name: str = "train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name, overrides=["paths.root_dir=/tmp", "paths.output_dir=/tmp/out", *overrides])


def targets(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``(config path, _target_)`` in a resolved config."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            found.append((path, node["_target_"]))
        for key, value in node.items():
            found += targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += targets(value, f"{path}[{i}]")
    return found


def installed(target: str) -> bool:
    return importlib.util.find_spec(target.split(".")[0]) is not None


def optional_and_missing(target: str) -> bool:
    package = NEEDS_OPTIONAL.get(target, target.split(".")[0])
    return package in OPTIONAL_PACKAGES and not installed(package)


def check_option(group: str, option: str, *overrides: str) -> None:
    """Compose ``group=option``, resolve it, import every target and build the group's objects.

    "Builds" means what a run does with the node: a DataModule/Trainer/logger/callback is
    constructed, a factory (optimizer, scheduler, loss, sampler, backbone) is called the
    way the classifier or DataModule calls it and returns the right kind of object.
    """
    cfg = compose_train(f"{group}={option}", *overrides)
    missing = OmegaConf.missing_keys(cfg)  # required values (e.g. dataset.data_dir=???): any path
    if missing:
        cfg = compose_train(
            f"{group}={option}", *overrides, *(f"{key}=/tmp/litvision-missing" for key in sorted(missing))
        )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for path, target in targets(resolved):
        if target.split(".")[0] in OPTIONAL_PACKAGES and not installed(target):
            continue  # our own targets that need one import without it
        assert get_object(target) is not None, (path, target)  # raises if it does not import
    builders = {
        "dataset": _build_dataset,
        "augmentation": _build_augmentation,
        "model": _build_model,
        "optimizer": _build_optimizer,
        "scheduler": _build_scheduler,
        "loss": _build_loss,
        "sampler": _build_sampler,
        "mixing": _build_mixing,
        "finetune": _build_finetune,
        "trainer": _build_trainer,
        "logger": _build_loggers,
        "callbacks": _build_callbacks,
    }
    # presets (experiment, debug) change several groups: build what they touch
    for name in [group] if group in builders else ["dataset", "model", "optimizer", "scheduler", "loss", "trainer"]:
        builders[name](cfg, bool(missing))


def _build_dataset(cfg, has_fake_paths: bool) -> None:
    try:
        assert isinstance(instantiate(cfg.dataset), L.LightningDataModule)
    except UserError:
        if not has_fake_paths:  # only a made-up data path may be refused at construction
            raise


def _build_augmentation(cfg, _: bool) -> None:
    for split in ("train", "eval"):
        pipeline = instantiate(cfg.augmentation.get(split))
        assert pipeline is None or callable(pipeline), split
    assert set(cfg.augmentation.normalize) >= {"mean", "std"}


def _build_model(cfg, _: bool) -> None:
    if optional_and_missing(cfg.model.backbone._target_):
        return
    model = instantiate(cfg.model, num_classes=10)
    size = 64 if cfg.model.backbone.get("name") in ("resnet18", "resnet50") else 32
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 10)


def _build_optimizer(cfg, _: bool) -> torch.optim.Optimizer:
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(3))])
    assert isinstance(optimizer, torch.optim.Optimizer)
    return optimizer


def _build_scheduler(cfg, _: bool) -> None:
    if cfg.get("scheduler"):
        scheduler = instantiate(cfg.scheduler)(_build_optimizer(cfg, _), total_steps=50)
        assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)


def _build_loss(cfg, _: bool) -> None:
    loss = instantiate(cfg.loss)(class_counts=[50, 20, 10, 5])
    value = loss(torch.randn(8, 4), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    assert value.ndim == 0 and torch.isfinite(value)


def _build_sampler(cfg, _: bool) -> None:
    if cfg.get("sampler"):
        sampler = instantiate(cfg.sampler)(targets=[0, 0, 0, 1, 1, 2], num_replicas=1, rank=0, seed=0)
        assert all(0 <= i < 6 for i in sampler)


def _build_mixing(cfg, _: bool) -> None:
    if cfg.get("mixing"):
        mixed = instantiate(cfg.mixing)(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]), 4)
        assert mixed.images.shape == (4, 3, 8, 8)


def _build_finetune(cfg, _: bool) -> None:
    """The strategy as the classifier builds it, attached to a small network: groups cover what trains."""
    model = instantiate(cfg.model, num_classes=4, backbone={"name": "small_cnn", "width": 4})
    groups = model._param_groups()
    assert groups and all(group["params"] for group in groups)
    assert {id(p) for group in groups for p in group["params"]} >= {id(p) for p in model.net.fc.parameters()}


def _build_trainer(cfg, _: bool) -> None:
    try:
        check_accelerator(cfg.trainer)
    except ConfigError:
        assert cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available()
        return
    assert isinstance(instantiate(cfg.trainer, logger=False, enable_progress_bar=False), L.Trainer)


def _build_loggers(cfg, _: bool) -> None:
    for logger in instantiate_group(cfg.get("logger")):
        assert isinstance(logger, L.pytorch.loggers.Logger)


def _build_callbacks(cfg, _: bool) -> None:
    callbacks = instantiate_group(cfg.get("callbacks"))
    assert callbacks and all(isinstance(cb, L.Callback) for cb in callbacks)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_resolves(group: str, option: str) -> None:
    check_option(group, option)


@pytest.mark.parametrize(
    ("group", "option", "mutation"),
    [
        ("sampler", "class_aware", "sampler._target_=litvision.datamodules.sampling.samplers.NoSuchSampler"),
        ("scheduler", "onecycle", "+scheduler.pct_starts=0.3"),
        ("model", "small_cnn", "model.backbone.name=no_such_net"),
        ("trainer", "cpu", "trainer.precision=17-true"),
    ],
)
def test_option_check_catches_a_broken_option(group: str, option: str, mutation: str) -> None:
    """Mutation check of the test above: each of these composes and resolves, yet is broken."""
    cfg = compose_train(f"{group}={option}", mutation)
    OmegaConf.to_container(cfg, resolve=True)  # all the old test checked
    with pytest.raises(Exception):  # noqa: B017 - any failure to build counts
        check_option(group, option, mutation)


@pytest.mark.parametrize("option", ["default", "cpu", "ddp_sim"])
def test_trainer_from_the_config_saves_checkpoints_atomically(option: str) -> None:
    from litvision.plugins.atomic_checkpoint import AtomicCheckpointIO

    trainer = instantiate(compose_train(f"trainer={option}").trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_trainer_without_the_plugin_is_detected() -> None:
    """Mutation check of the test above: dropping the plugin from the config is visible."""
    from litvision.plugins.atomic_checkpoint import AtomicCheckpointIO

    trainer = instantiate(compose_train("trainer=cpu", "~trainer.plugins").trainer, logger=False)
    assert not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.mark.parametrize("option", ["gpu", "ddp", "multinode"])
def test_gpu_trainers_name_the_atomic_plugin_too(option: str) -> None:
    plugins = OmegaConf.to_container(compose_train(f"trainer={option}").trainer.plugins)
    assert [p["_target_"] for p in plugins] == ["litvision.plugins.atomic_checkpoint.AtomicCheckpointIO"]


def test_eval_config_composes_only_what_evaluation_needs() -> None:
    cfg = compose_train("ckpt_path=x", config_name="eval")
    assert set(cfg) == {
        "task_name",
        "tags",
        "seed",
        "ckpt_path",
        "trust_checkpoint",
        "trust_checkpoint_targets",
        "groups",
        "robustness",  # robustness=corruptions (docs/corruptions.md)
        "augmentation",
        "model",
        "dataset",
        "trainer",
        "logger",
        "callbacks",
        "paths",
    }
    OmegaConf.to_container(cfg, resolve=True)
    # a dataset that picks its own model and augmentation composes here too
    imagenet = compose_train("ckpt_path=x", "dataset=imagenet", config_name="eval")
    assert imagenet.model.backbone.name == "resnet50"
    OmegaConf.to_container(imagenet, resolve=True)


def test_model_options_share_the_classifier_base() -> None:
    """Every model option composes the same classifier settings from conf/model/_classifier.yaml."""
    base = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "_classifier.yaml"))  # unresolved
    assert base["_recursive_"] is False
    for option in options("model"):
        model = OmegaConf.to_container(compose_train(f"model={option}").model)
        shared = {key: value for key, value in base.items() if key != "backbone"}
        assert {key: model[key] for key in shared} == shared, option
        # every backbone takes model.backbone.weights= (docs/finetune.md), off by default
        assert "backbone" in model and model["backbone"]["weights"] is None, option


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
