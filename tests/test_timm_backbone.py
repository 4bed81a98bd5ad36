"""model=timm: a timm backbone from config (the README's example), and the same mechanism without timm."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from litvision.lightning_modules.backbones.timm_models import install_hint, matching_torchvision
from tests.helpers.run_helpers import REPO_ROOT, read_metrics, run_script
from tests.helpers.run_helpers import run_script as _run_script

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


# ---- when timm cannot be imported: one line with the install that fixes it ----------------------


def test_the_torchvision_for_a_torch_release() -> None:
    # torch 2.13.0 <-> torchvision 0.28.0: the pair of wheels this project's machines carry
    assert matching_torchvision("2.13.0+cpu") == "torchvision==0.28.0"
    assert matching_torchvision("2.4.1") == "torchvision==0.19.1"
    assert matching_torchvision("3.0.0") == "torchvision"


def test_the_docs_give_the_cpu_install_line_the_error_gives() -> None:
    readme = (REPO_ROOT / "docs" / "index.md").read_text()
    line = install_hint("2.13.0+cpu").split(" (")[0]
    assert line == (
        "pip install 'torchvision==0.28.0' --index-url https://download.pytorch.org/whl/cpu && pip install timm"
    )
    assert line in readme


def _one_line(proc) -> str:
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed here")
def test_model_timm_without_timm_is_one_line_naming_the_install(fake_cifar_root: Path, tmp_path: Path) -> None:
    proc = _run_script(
        "train.py",
        "model=timm",
        "debug=fdr",
        "logger=none",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    last = _one_line(proc)
    assert last.startswith("ConfigError: model=timm needs timm, which is not installed: pip install")
    assert ("--index-url https://download.pytorch.org/whl/cpu" in last) == ("+cpu" in torch.__version__)


def test_timm_without_its_torchvision_is_one_line(
    fake_cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pip install timm --no-deps` beside a torch without torchvision: timm imports torchvision when
    imported (timm 1.0.31: timm.layers -> torchvision.ops), so it cannot import. A stand-in timm on
    PYTHONPATH does the same."""
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here")
    site = tmp_path / "site"
    (site / "timm").mkdir(parents=True)
    (site / "timm" / "__init__.py").write_text("import torchvision\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    proc = _run_script(
        "train.py",
        "model=timm",
        "debug=fdr",
        "logger=none",
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    last = _one_line(proc)
    assert last.startswith("ConfigError: model=timm needs torchvision, which is not installed: pip install")
