"""Shared fixtures: generated CIFAR-format data, the real shared data, Hydra configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_SILENT", "true")
# Tests must never reach W&B servers, whatever credentials the machine has.
os.environ["WANDB_MODE"] = "offline"

from litvision.launch.resolvers import register_resolvers

register_resolvers()  # conf/ uses ${lv.*} arithmetic; train.py/eval.py register them at import

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset"
IMAGENET_SAMPLES = SHARED_DATA / "imagenet-samples"


@pytest.fixture(scope="session", autouse=True)
def _no_writes_to_the_user_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """File indices go to the user cache by default (~/.cache/litvision/index): in tests, a temp one."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))


@pytest.fixture
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh user cache for this test (also for the scripts it runs): the index folder in it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg_cache"))
    return tmp_path / "xdg_cache" / "litvision" / "index"


@pytest.fixture(scope="session")
def fake_cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CIFAR-10 tree in the official pickle format: 20 train / 7 test images per class."""
    from tests.helpers.fake_cifar import write_fake_cifar

    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar(root, n_train_per_class=20, n_test_per_class=7, seed=0)
    return root


@pytest.fixture
def cifar_subset_root() -> Path:
    if not (CIFAR_SUBSET / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR_SUBSET} (shared/ is not beside the checkout)")
    return CIFAR_SUBSET
