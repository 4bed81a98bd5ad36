"""``train.py ckpt_path=<checkpoint>`` that cannot continue that run is refused in one line, before Lightning restores it.

On the old code each of these ended in a raw traceback from deep inside Lightning or torch
(``Error(s) in loading state_dict``, ``KeyError: 'lr_lambdas'``, "Tried to step N times",
``MisconfigurationException``, ``KeyError: 101`` for a text file) or, with other class names of
the same count, trained on silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import TINY_MODEL, run_script

# 200 training images, 10% held out for validation: 180 / batch 32 = 6 optimizer steps per epoch
COMMON = [*TINY_MODEL, "logger=none", "test=false", "+trainer.limit_val_batches=1", "trainer.max_epochs=2"]


@pytest.fixture(scope="module")
def trained(fake_cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """last.ckpt of a 2-epoch run: small_cnn (width=8), SGD, cosine schedule, CIFAR-10's classes."""
    run_dir = tmp_path_factory.mktemp("trained")
    run_script("train.py", *COMMON, f"dataset.data_dir={fake_cifar_root}", f"hydra.run.dir={run_dir}")
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def other_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("other_classes")
    write_fake_cifar(root, n_train_per_class=20, n_test_per_class=2, class_names=[f"kind{i}" for i in range(10)])
    return root


def _refusal(
    trained: Path,
    data_dir: Path,
    tmp_path: Path,
    *overrides: str,
    ckpt: Path | None = None,
    before_restore: bool = True,
) -> str:
    """The one line a refused resume prints (asserting it is one line and no traceback; ``before_restore``:
    refused before Lightning restored anything, else before the first training step: no checkpoint written)."""
    ckpt = ckpt or trained
    proc = run_script(
        "train.py",
        *COMMON,
        f"dataset.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"ckpt_path={ckpt}",
        *overrides,
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if before_restore:
        assert "Restored all states" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert not list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))  # nothing trained, nothing saved
    return lines[-1]


def test_another_architecture(trained: Path, fake_cifar_root: Path, tmp_path: Path) -> None:
    line = _refusal(trained, fake_cifar_root, tmp_path, "model.backbone.width=16")
    assert line == (
        f"ConfigError: ckpt_path={trained} cannot be resumed by this run: it holds a small_cnn (width=8) model, the "
        f"config asks for small_cnn (width=16) (model=...). A resume continues the same run; to start a new run from "
        f"these weights instead, use model.backbone.weights={trained} (without ckpt_path)"
    )


def test_another_dataset(trained: Path, other_classes: Path, tmp_path: Path) -> None:
    line = _refusal(trained, other_classes, tmp_path)
    assert line.startswith(
        f"ConfigError: ckpt_path={trained} cannot be resumed by this run: it was trained on other "
        "classes than CIFAR10DataModule's (class names unknown to the model: ['kind0', 'kind1', "
    )
    assert "the checkpoint has ['airplane', 'automobile', " in line and f"model.backbone.weights={trained}" in line


def test_another_schedule(trained: Path, fake_cifar_root: Path, tmp_path: Path) -> None:
    """Optimizer, scheduler and a max_epochs below the epochs done: every difference in the one line."""
    line = _refusal(trained, fake_cifar_root, tmp_path, "optimizer=adamw", "scheduler=onecycle", "trainer.max_epochs=1")
    assert line.startswith(f"ConfigError: ckpt_path={trained} cannot be resumed by this run: optimizer: SGD (")
    assert ") in the checkpoint, AdamW (" in line and ") in the config (optimizer=...)" in line
    assert "scheduler: warmup_cosine in the checkpoint, one_cycle in the config (scheduler=...)" in line
    assert "it has trained 2 epochs, the config's trainer.max_epochs=1 is fewer" in line
    assert line.endswith(f"use model.backbone.weights={trained} (without ckpt_path)")


def test_another_number_of_steps_per_epoch(trained: Path, fake_cifar_root: Path, tmp_path: Path) -> None:
    """Same classes, other batch size: the LR schedule was planned for 6 steps an epoch, not 12."""
    line = _refusal(
        trained, fake_cifar_root, tmp_path, "dataset.batch_size=16", "trainer.max_epochs=3", before_restore=False
    )
    assert line.startswith(
        f"ConfigError: ckpt_path={trained} cannot be resumed by this run: its run took 6 optimizer "
        "steps per epoch, this one takes 12 (another dataset size, dataset.batch_size, "
    )


def test_a_text_file(trained: Path, fake_cifar_root: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.ckpt"
    notes.write_text("epoch: 3\nval/acc_top1: 0.79\n")
    line = _refusal(trained, fake_cifar_root, tmp_path, ckpt=notes)
    assert line == (
        f"DataError: ckpt_path={notes} is not a readable checkpoint (it is a text file, starting "
        "'epoch: 3'; pass the .ckpt file a run wrote)"
    )


def test_the_same_run_still_resumes_longer(trained: Path, fake_cifar_root: Path, tmp_path: Path) -> None:
    """A larger trainer.max_epochs is a continuation (README "Resume"), not another run."""
    proc = run_script(
        "train.py",
        *COMMON,
        f"dataset.data_dir={fake_cifar_root}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"ckpt_path={trained}",
        "trainer.max_epochs=3",
    )
    assert "Restored all states from the checkpoint" in proc.stdout + proc.stderr


def test_what_a_resume_may_change_in_process() -> None:
    """Scheduler settings are re-planned (like a larger max_epochs), its type and the optimizer's settings are not."""
    from types import SimpleNamespace

    from litvision.lightning_modules.resume_check import check_resume_config, check_resume_steps
    from litvision.utils.errors import ConfigError

    cosine = {
        "_target_": "litvision.lightning_modules.training.schedulers.warmup_cosine",
        "_partial_": True,
        "warmup_fraction": 0.05,
    }
    sgd = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}
    hparams = {
        "backbone": {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": "resnet50"},
        "optimizer": sgd,
        "scheduler": cosine,
        "weight_decay_norm_bias": False,
    }
    checkpoint = {"hyper_parameters": hparams, "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 3}}}}}
    trainer = SimpleNamespace(max_epochs=3)
    check_resume_config("x.ckpt", checkpoint, {**hparams, "scheduler": {**cosine, "warmup_fraction": 0.025}}, trainer)
    refusals = {
        "optimizer: SGD (lr=0.1) in the checkpoint, SGD (lr=0.05) in the config": {"optimizer": {**sgd, "lr": 0.05}},
        "scheduler: warmup_cosine in the checkpoint, none in the config": {"scheduler": None},
        "weight_decay_norm_bias: False in the checkpoint, True in the config": {"weight_decay_norm_bias": True},
        "it holds a resnet50 model, the config asks for resnet18": {
            "backbone": {**hparams["backbone"], "name": "resnet18"}
        },
    }
    for message, change in refusals.items():
        with pytest.raises(
            ConfigError, match="^" + re.escape(f"ckpt_path=x.ckpt cannot be resumed by this run: {message}")
        ):
            check_resume_config("x.ckpt", checkpoint, {**hparams, **change}, trainer)
    with pytest.raises(ConfigError, match="it has trained 3 epochs, the config's trainer.max_epochs=2 is fewer"):
        check_resume_config("x.ckpt", checkpoint, hparams, SimpleNamespace(max_epochs=2))
    check_resume_steps("x.ckpt", {"steps_per_epoch": 6}, 6)
    check_resume_steps("x.ckpt", {"steps_per_epoch": 6}, float("inf"))  # an unsized loader: not known, not refused
    check_resume_steps("x.ckpt", None, 12)  # a checkpoint from before the plan was recorded
    with pytest.raises(ConfigError, match="took 6 optimizer steps per epoch, this one takes 12"):
        check_resume_steps("x.ckpt", {"steps_per_epoch": 6}, 12)
