"""Gradient clipping and accumulation (Lightning Trainer options in conf/trainer/default.yaml):
they take effect, and compose with each other, Mixup/CutMix, EMA and the LR schedule."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import nn

from litvision.callbacks.ema import EMA
from litvision.lightning_modules.classifier import ImageClassifier
from litvision.lightning_modules.training.mixing import BatchMixer
from litvision.lightning_modules.training.schedulers import warmup_cosine

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def linear_backbone(num_classes: int) -> nn.Module:
    # no BatchNorm: a batch of 16 and two accumulated batches of 8 must give the same gradient
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, num_classes))


def data(n: int, batch_size: int, size: int = 8) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=generator)
    targets = torch.randint(0, 6, (n,), generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, targets), batch_size=batch_size)


def fit(loader, callbacks=(), backbone=None, mixing=None, scheduler=None, **trainer_args):
    L.seed_everything(0)
    model = ImageClassifier(
        backbone=backbone or partial(linear_backbone),
        num_classes=6,
        channels_last=False,
        mixing=mixing,
        scheduler=scheduler,
        optimizer=partial(torch.optim.SGD, lr=1.0, momentum=0.0, weight_decay=0.0),
    )
    start = {k: v.clone() for k, v in model.net.state_dict().items()}
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        **trainer_args,
    )
    trainer.fit(model, loader)
    step = torch.cat([(model.net.state_dict()[k] - start[k]).flatten() for k in start])
    return trainer, model, step


def test_gradient_clipping_by_norm_caps_the_step() -> None:
    _, _, free = fit(data(16, 16))
    _, _, clipped = fit(data(16, 16), gradient_clip_val=1e-3, gradient_clip_algorithm="norm")
    assert free.norm() > 0.05  # lr 1: the step is the gradient
    # same direction, total norm exactly the cap
    torch.testing.assert_close(clipped, free * (1e-3 / free.norm()), rtol=1e-4, atol=1e-8)
    _, _, by_value = fit(data(16, 16), gradient_clip_val=1e-4, gradient_clip_algorithm="value")
    assert by_value.abs().max() <= 1e-4 * (1 + 1e-3) and free.abs().max() > 1e-3  # (float32 rounding of w - w0)


def test_accumulating_two_half_batches_equals_one_full_batch() -> None:
    full_trainer, _, full = fit(data(16, 16))
    half_trainer, _, accumulated = fit(data(16, 8), accumulate_grad_batches=2)
    assert full_trainer.global_step == half_trainer.global_step == 1  # one optimizer step either way
    torch.testing.assert_close(accumulated, full, rtol=1e-5, atol=1e-7)
    _, _, two_steps = fit(data(16, 8))  # without accumulation: two steps, another result
    assert not torch.allclose(two_steps, full, atol=1e-4)


def test_clipping_and_accumulation_compose_with_mixing_ema_and_the_schedule() -> None:
    from litvision.lightning_modules.backbones import build_backbone

    ema = EMA(decay=0.5)
    trainer, model, _ = fit(
        data(64, 8, size=32),
        callbacks=[ema],
        backbone=partial(build_backbone, "small_cnn", width=4),
        mixing=BatchMixer(mixup_alpha=0.2, cutmix_alpha=1.0),
        scheduler=partial(warmup_cosine, warmup_fraction=0.25),
        accumulate_grad_batches=2,
        gradient_clip_val=0.5,
    )
    assert trainer.global_step == 4  # 8 batches / 2
    assert trainer.estimated_stepping_batches == 4  # what the LR schedule was built for
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 4  # stepped once per optimizer step
    assert ema._latest_update_step == 4 and int(ema._average_model.n_averaged) == 4  # EMA per optimizer step
    assert "train/mixed_acc_top1" in trainer.callback_metrics


def test_trainer_options_are_in_the_config() -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "trainer.gradient_clip_val=0.5",
                "trainer.gradient_clip_algorithm=value",
                "trainer.accumulate_grad_batches=4",
                "paths.output_dir=.",
                "paths.root_dir=.",
            ],
        )
        defaults = compose("train", overrides=["paths.output_dir=.", "paths.root_dir=."])
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert (trainer.gradient_clip_val, trainer.gradient_clip_algorithm, trainer.accumulate_grad_batches) == (
        0.5,
        "value",
        4,
    )
    trainer = instantiate(defaults.trainer, logger=False, enable_checkpointing=False)
    assert trainer.gradient_clip_val is None and trainer.accumulate_grad_batches == 1


@pytest.mark.parametrize("kind", ["gpu", "ddp_sim"])
def test_every_trainer_preset_keeps_the_options(kind: str) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"trainer={kind}", "trainer.accumulate_grad_batches=2"])
    assert cfg.trainer.accumulate_grad_batches == 2 and "gradient_clip_val" in cfg.trainer
