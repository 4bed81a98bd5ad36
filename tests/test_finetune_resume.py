"""A resume from last.ckpt in the middle of each fine-tuning phase restores the phase (frozen or not),
every parameter group's LR and BatchNorm's mode: the resumed run is the uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from litvision.lightning_modules.checkpoints import load_classifier
from litvision.lightning_modules.classifier import FINETUNE_KEY
from litvision.utils.checkpoint_io import load_checkpoint
from tests.helpers.stop_after_epoch import StopAfterEpoch
from tests.test_finetune import WARMUP_COSINE, classifier, fit

EPOCHS = 4


def run(tmp_path: Path, strategy: str, bn: str | None, stop_after: int | None, resume: bool = False):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True, save_top_k=0)
    callbacks = [checkpoints] + ([StopAfterEpoch(stop_after)] if stop_after is not None else [])
    torch.manual_seed(0)  # the same initial weights in both runs
    model = classifier(strategy, bn, scheduler=WARMUP_COSINE)
    ckpt = str(tmp_path / "checkpoints" / "last.ckpt") if resume else None
    _, recorder = fit(model, EPOCHS, callbacks=callbacks, enable_checkpointing=True, ckpt_path=ckpt)
    return model, recorder.epochs


@pytest.mark.parametrize(
    ("strategy", "bn", "stop_after"),
    [
        ("freeze_unfreeze", None, 0),  # resumed in the frozen phase (unfreeze_at_epoch=2)
        ("freeze_unfreeze", None, 2),  # resumed after the unfreeze
        ("freeze_unfreeze", "freeze", 1),  # resumed right before the unfreeze, BatchNorm fixed
        ("linear_probe", None, 1),
        ("layer_decay", "freeze_stats", 1),
        ("full", None, 1),
    ],
)
def test_resume_restores_the_phase_the_lrs_and_batchnorm(tmp_path: Path, strategy, bn, stop_after) -> None:
    whole, whole_epochs = run(tmp_path / "whole", strategy, bn, None)
    run(tmp_path / "cut", strategy, bn, stop_after)
    saved = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")
    assert saved[FINETUNE_KEY]["frozen"] is whole_epochs[stop_after]["frozen"]
    resumed, resumed_epochs = run(tmp_path / "cut", strategy, bn, None, resume=True)
    assert sorted(resumed_epochs) == list(range(stop_after + 1, EPOCHS))
    for epoch, record in resumed_epochs.items():
        assert record == whole_epochs[epoch], epoch  # phase, per-group LRs, BatchNorm mode, trainable count
    for key, value in whole.net.state_dict().items():
        assert torch.allclose(resumed.net.state_dict()[key].float(), value.float(), atol=1e-6), key


def test_the_phase_is_in_the_checkpoint_and_a_model_loaded_from_it_evaluates(tmp_path: Path) -> None:
    run(tmp_path, "freeze_unfreeze", None, 0)
    path = tmp_path / "checkpoints" / "last.ckpt"
    assert load_checkpoint(path)[FINETUNE_KEY] == {"name": "freeze_unfreeze", "frozen": True}
    model = load_classifier(path, "cpu")
    assert model.finetune_strategy.name == "freeze_unfreeze"
    assert model.eval()(torch.zeros(2, 3, 16, 16)).shape == (2, 3)
