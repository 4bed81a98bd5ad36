"""model=timm: a timm backbone from config (the README's example), and the same mechanism without timm."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tests.helpers.run_helpers import REPO_ROOT, read_metrics, run_script

# the README line: python train.py model=timm model.backbone.model_name=resnet18
README_OVERRIDES = ["model=timm", "model.backbone.model_name=resnet18"]


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["paths.root_dir=/tmp", "paths.output_dir=/tmp/out", *overrides])


def _timm_imports() -> bool:
    if importlib.util.find_spec("timm") is None:
        return False
    try:
        import timm  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _timm_imports(), reason="timm is not installed (or does not import) here")
def test_readme_timm_example_builds_a_classifier_with_the_datasets_classes() -> None:
    model = instantiate(_compose(*README_OVERRIDES).model, num_classes=7)
    model.eval()
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    assert model.hparams.backbone["model_name"] == "resnet18"


def test_timm_config_with_a_factory_of_timms_signature() -> None:
    """model_name/pretrained come from the config, num_classes from the classifier."""
    cfg = _compose(
        "model=timm",
        "model.backbone._target_=tests.helpers.timm_like.create_model",
        "model.backbone.model_name=small_cnn",
        "+model.backbone.width=8",
    )
    model = instantiate(cfg.model, num_classes=7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert model.hparams.backbone == {
        "_target_": "tests.helpers.timm_like.create_model",
        "_partial_": True,
        "model_name": "small_cnn",
        "pretrained": False,
        "width": 8,
    }


def test_train_py_with_the_timm_option_and_such_a_factory(fake_cifar_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_script(
        "train.py",
        "model=timm",
        "model.backbone._target_=tests.helpers.timm_like.create_model",
        "model.backbone.model_name=small_cnn",
        "+model.backbone.width=8",
        "debug=fdr",
        "logger=csv",
        "dataset.num_workers=0",
        "dataset.batch_size=32",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={run_dir}",
    )
    assert "test/acc_top1" in read_metrics(run_dir)
